"""The AS query's analysis: which WHERE clauses are deterministic, and a repeated SEARCH
that remembers such a clause's row ids for one committed state — and only then."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import duckdb
import pytest

from pixql.execution import search
from pixql.execution.search_plan import QueryPlan, deterministic, where_functions
from tests.execution.test_search_fast import general
from tests.execution.test_search_fast import search as search_sql
from tests.execution.test_search_fast import vec_ws as vec_ws

if TYPE_CHECKING:
    import numpy as np


def _where(cur: Any, clause: str) -> Any:
    text = f"SELECT * FROM t WHERE {clause}"
    tree = json.loads(cur.execute("SELECT json_serialize_sql(?)", [text]).fetchall()[0][0])
    return tree["statements"][0]["node"]["where_clause"]


@pytest.mark.parametrize(("clause", "functions"), [
    ("grp = 1", set()),
    ("grp % 2 = 0 AND name LIKE 'a%'", {"%", "~~"}),
    ("abs(id - 3) < 10 OR CAST(grp AS VARCHAR) = '1'", {"abs", "-"}),
    ("id IN (SELECT id FROM u)", None),
    ("id IN (SELECT * FROM read_csv('ids.csv'))", None),
    ("ts < current_timestamp", None),
    ("owner = current_user", None),
])
def test_the_functions_a_where_clause_calls(clause: str, functions: set[str] | None) -> None:
    got = where_functions(_where(duckdb.connect(), clause))
    assert got == (None if functions is None else frozenset(functions))


@pytest.mark.parametrize(("clause", "pure"), [
    ("grp = 1", True),
    ("grp % 2 = 0 AND abs(id) > 3", True),
    ("random() < 0.5", False),
    ("ts < now()", False),
    ("id > nextval('s')", False),
    ("grp = getvariable('g')", False),
    ("grp = pick(1)", False),  # a macro: it could expand to anything
    ("grp = no_such_function(1)", False),
    ("ts < current_date", False),
])
def test_deterministic_asks_duckdb_about_every_function(clause: str, pure: bool) -> None:
    cur = duckdb.connect()
    cur.execute("CREATE MACRO pick(x) AS x")
    plan = QueryPlan(table=None, label="t", rowid_sql="SELECT rowid FROM t WHERE ...",  # type: ignore[arg-type]
                     where_functions=where_functions(_where(cur, clause)))
    assert deterministic(cur, plan) is pure


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times SEARCH read a WHERE clause's row ids from DuckDB."""
    calls: list[int] = []
    real = search.where_rowids

    def counted(ctx: Any, plan: Any) -> np.ndarray:
        calls.append(1)
        return real(ctx, plan)

    monkeypatch.setattr(search, "where_rowids", counted)
    return calls


def test_a_deterministic_where_clause_is_read_once_per_committed_state(
        vec_ws: Any, reads: list[int]) -> None:
    where = "WHERE grp IN (1, 3) AND id % 2 = 0"
    expected = general(vec_ws, where, "7")
    answers = [vec_ws.sql(search_sql(where, "7")).table for _ in range(4)]
    assert all(a.equals(expected) for a in answers)
    # the first SEARCH (snapshot path) and the first hot one read it; the others remember
    assert len(reads) == 2
    vec_ws.cursor().execute("UPDATE t SET grp = 1 WHERE id < 40")  # a commit: a new state
    after = [vec_ws.sql(search_sql(where, "7")).table for _ in range(3)]
    assert all(a.equals(general(vec_ws, where, "7")) for a in after)
    assert len(reads) == 4
    assert not after[0].equals(expected)  # the rows the update moved into the filter count


@pytest.mark.parametrize("where", ["WHERE random() < 2", "WHERE id IN (SELECT id FROM t)"])
def test_other_where_clauses_are_read_on_every_search(vec_ws: Any, reads: list[int],
                                                      where: str) -> None:
    for _ in range(4):
        vec_ws.sql(search_sql(where, "5"))
    assert len(reads) == 4
