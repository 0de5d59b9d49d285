"""The AS query of a SEARCH, analysed once per distinct text: whether the fast path can run it
(``SELECT * FROM <base table> [WHERE ...]``), the ``SELECT rowid`` form of its WHERE clause,
and whether that WHERE clause is *deterministic* — its row ids a function of the committed
data alone, so the SEARCH memo (:mod:`pixql.execution.search_hot`) may remember them for one
committed state instead of asking DuckDB on every SEARCH.

A WHERE clause counts as deterministic only when DuckDB says so of every function it calls
(``duckdb_functions().stability = 'CONSISTENT'``, scalar or aggregate, in every overload) and
it has no subquery (a view or a table function could read outside the database), and none of
the SQL keywords that DuckDB parses as column names and binds to the clock or the session
(``current_timestamp``, ``current_user``, ...). ``random()``, ``now()``, ``nextval()``,
``getvariable()``, a macro or a table function: the row ids are read every time.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pixql.execution.vectors import TableRef, resolve_table

if TYPE_CHECKING:
    from pixql.execution.context import ExecContext
    from pixql.sql.nodes import Query


@dataclass(frozen=True)
class QueryPlan:
    """An AS query the fast path can run: ``SELECT * FROM table [WHERE ...]``."""

    table: TableRef
    label: str  # the table as the query names it (how CONVERT recorded it in the catalog)
    rowid_sql: str | None  # SELECT rowid FROM table WHERE ... (None: no WHERE clause)
    # the functions the WHERE clause calls (lower case); None: it is not deterministic
    where_functions: frozenset[str] | None = None


_PLAIN: dict[str, Any] = {
    "modifiers": [], "group_expressions": [], "group_sets": [], "having": None,
    "sample": None, "qualify": None, "aggregate_handling": "STANDARD_HANDLING"}
_STAR_EMPTY = ("exclude_list", "replace_list", "qualified_exclude_list", "rename_list")
_ROWID = {"class": "COLUMN_REF", "type": "COLUMN_REF", "alias": "", "query_location": 0,
          "column_names": ["rowid"]}
#: keywords DuckDB parses as column references and binds to the clock or the session
SESSION_KEYWORDS = frozenset({
    "current_date", "current_time", "current_timestamp", "localtime", "localtimestamp",
    "current_user", "user", "session_user", "current_role", "current_catalog",
    "current_schema", "current_database", "current_query"})

Shape = tuple[str, str, str | None, frozenset[str] | None]


def plan_query(ctx: ExecContext, query: Query) -> QueryPlan | None:
    """A :class:`QueryPlan` when ``query`` is ``SELECT * FROM <base table> [WHERE ...]``
    (no joins, grouping, ordering, limits, CTEs or samples), else None."""
    if query.subqueries:
        return None
    shape = _query_shape(ctx.cur, query.text)
    if shape is None:
        return None
    schema, name, rowid_sql, functions = shape
    table = resolve_table(ctx.cur, schema, name)
    if table is None:
        return None
    label = f"{schema}.{table.name}" if schema else table.name
    return QueryPlan(table=table, label=label, rowid_sql=rowid_sql, where_functions=functions)


#: query text → its shape or None; parsing does not depend on the database
_SHAPES: OrderedDict[str, Shape | None] = OrderedDict()
_SHAPES_MAX = 512
_SHAPES_LOCK = threading.Lock()


def _query_shape(cur: Any, text: str) -> Shape | None:
    """(schema, table, ``SELECT rowid ... WHERE ...`` or None, the WHERE clause's functions
    or None) when ``text`` is a plain ``SELECT * FROM t [WHERE ...]``, else None; parsed by
    DuckDB once per distinct text."""
    with _SHAPES_LOCK:
        if text in _SHAPES:
            _SHAPES.move_to_end(text)
            return _SHAPES[text]
    rows = cur.execute("SELECT json_serialize_sql(?)", [text]).fetchall()
    tree = json.loads(rows[0][0]) if rows else {}
    stmts = tree.get("statements") or []
    shape = None
    if not tree.get("error") and len(stmts) == 1:
        node = stmts[0].get("node") or {}
        src = node.get("from_table") or {}
        if plain_select(node, src):
            rowid_sql: str | None = None
            functions: frozenset[str] | None = frozenset()
            if node.get("where_clause") is not None:
                functions = where_functions(node["where_clause"])
                node["select_list"] = [_ROWID]
                rowid_sql = str(cur.execute("SELECT json_deserialize_sql(?)",
                                            [json.dumps(tree)]).fetchall()[0][0])
            shape = (src.get("schema_name") or "", src.get("table_name") or "", rowid_sql,
                     functions)
    with _SHAPES_LOCK:
        _SHAPES[text] = shape
        while len(_SHAPES) > _SHAPES_MAX:
            _SHAPES.popitem(last=False)
    return shape


def plain_select(node: dict[str, Any], src: dict[str, Any]) -> bool:
    """Whether a parsed SELECT node is ``SELECT * FROM <base table> [WHERE ...]``."""
    if node.get("type") != "SELECT_NODE" or (node.get("cte_map") or {}).get("map"):
        return False
    if any(node.get(k, v) != v for k, v in _PLAIN.items()):
        return False
    if src.get("type") != "BASE_TABLE" or src.get("sample") or src.get("at_clause") \
            or src.get("column_name_alias") or src.get("catalog_name"):
        return False
    select = node.get("select_list") or []
    if len(select) != 1:
        return False
    star = select[0]
    names = {"", src.get("alias") or "", src.get("table_name") or ""}
    return (star.get("class") == "STAR" and not star.get("columns") and star.get("expr") is None
            and not any(star.get(k) for k in _STAR_EMPTY)
            and (star.get("relation_name") or "") in names)


def where_functions(where: Any) -> frozenset[str] | None:
    """The functions a parsed WHERE clause calls; None when it has a subquery, a table
    function or a session keyword (its rows may change while the data does not)."""
    found: set[str] = set()
    stack = [where]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
            continue
        if not isinstance(x, dict):
            continue
        kind = x.get("class")
        if kind == "SUBQUERY" or x.get("type") == "TABLE_FUNCTION":
            return None
        if kind == "FUNCTION":
            found.add(str(x.get("function_name", "")).lower())
        if kind == "COLUMN_REF" and str((x.get("column_names") or [""])[-1]).lower() \
                in SESSION_KEYWORDS:
            return None
        stack.extend(x.values())
    return frozenset(found)


def deterministic(cur: Any, plan: QueryPlan) -> bool:
    """Whether ``plan``'s WHERE clause selects the same rows as long as the committed data and
    DuckDB's catalog are the same (see the module docstring); one catalog query."""
    names = plan.where_functions
    if plan.rowid_sql is None or names is None:
        return False
    if not names:
        return True
    got = cur.execute(
        "SELECT count(DISTINCT lower(function_name)), count(*) FILTER (WHERE stability IS "
        "DISTINCT FROM 'CONSISTENT' OR function_type NOT IN ('scalar', 'aggregate')) "
        "FROM duckdb_functions() WHERE lower(function_name) IN (SELECT unnest(?))",
        [sorted(names)]).fetchall()
    return bool(got and got[0][0] == len(names) and got[0][1] == 0)
