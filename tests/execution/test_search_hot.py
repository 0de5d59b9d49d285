"""SEARCH's hot path: a repeated SEARCH is recognised, and never outlives what it assumed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.execution.test_search_fast import general, search
from tests.execution.test_search_fast import vec_ws as vec_ws


def _memo(ws: Any) -> Any:
    return ws._vector_cache.search_memo


def _hot(ws: Any, **kw: str) -> Any:
    """The SEARCH run twice; the second answer (asserting the memo recognised it)."""
    ws.sql(search(**kw))
    hits = _memo(ws).hits
    out = ws.sql(search(**kw)).table
    assert _memo(ws).hits == hits + 1
    return out


@pytest.mark.parametrize("where", ["", "WHERE grp IN (1, 3)"])
def test_repeated_search_is_recognised_and_answers_the_same(vec_ws: Any, where: str) -> None:
    got = _hot(vec_ws, where=where, top_k="7")
    assert got.equals(general(vec_ws, where, "7"))


def test_open_transaction_is_never_answered_from_the_memo(vec_ws: Any) -> None:
    _hot(vec_ws, top_k="5")
    best = vec_ws.sql(search(top_k="1")).table.column("id")[0].as_py()
    cur = vec_ws.cursor()
    cur.execute("BEGIN TRANSACTION")
    try:
        cur.execute(f"DELETE FROM t WHERE id = {best}")  # uncommitted: only this cursor sees it
        hits = _memo(vec_ws).hits
        inside = vec_ws.sql(search(top_k="5")).table
        assert _memo(vec_ws).hits == hits
        assert best not in inside.column("id").to_pylist()
    finally:
        cur.execute("ROLLBACK")
    after = vec_ws.sql(search(top_k="5")).table
    assert after.column("id")[0].as_py() == best


def test_another_cursor_in_a_transaction_does_not_use_this_cursors_memo(vec_ws: Any) -> None:
    import threading

    _hot(vec_ws, top_k="3")
    best = vec_ws.sql(search(top_k="1")).table.column("id")[0].as_py()
    seen: list[Any] = []

    def other() -> None:  # a new thread: its own cursor
        cur = vec_ws.cursor()
        cur.execute("BEGIN TRANSACTION")
        cur.execute(f"DELETE FROM t WHERE id = {best}")
        seen.append(vec_ws.sql(search(top_k="3")).table.column("id").to_pylist())
        cur.execute("ROLLBACK")

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert best not in seen[0]


def test_temporary_view_shadowing_the_table_is_noticed(vec_ws: Any) -> None:
    _hot(vec_ws, top_k="3")
    vec_ws.sql("CREATE TEMP TABLE two AS SELECT * FROM t WHERE grp = 2")
    vec_ws.sql("CREATE TEMP VIEW t AS SELECT * FROM two")
    got = vec_ws.sql(search(top_k="3")).table
    assert set(got.column("grp").to_pylist()) == {2}


@pytest.mark.parametrize("change", [
    "DELETE FROM t WHERE grp = 1",
    "UPDATE t SET e = (SELECT e FROM t WHERE id = 398) WHERE id < 100",
    "ALTER TABLE t ADD COLUMN extra INTEGER DEFAULT 1",
])
def test_writes_end_the_memo(vec_ws: Any, change: str) -> None:
    _hot(vec_ws, top_k="9")
    vec_ws.cursor().cursor().execute(change)  # another cursor, committed
    hits = _memo(vec_ws).hits
    got = vec_ws.sql(search(top_k="9")).table
    assert _memo(vec_ws).hits == hits
    assert got.equals(general(vec_ws, top_k="9"))
