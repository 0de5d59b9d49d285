"""ThanoSQL's REST API on the served workspace: what ``thanosql.ThanoSQL`` (the PyPI SDK,
1.0.x) calls.

* ``POST /api/v1/query/`` runs a script (plain SQL and every pixql statement) the way
  ``POST /sql`` does (same engine, same write serialisation, same errors) and answers a
  ``QueryLog`` with the first ``max_results`` rows; ``table_name`` (+ ``schema``,
  ``overwrite``) also saves the result as a table.
* ``GET /api/v1/query/log`` lists this server's recent queries (kept in memory).
* ``GET /api/v1/table/``, ``GET /api/v1/table/{name}``, ``GET .../{name}/records``,
  ``DELETE /api/v1/table/{name}``.
* Everything else under ``/api/v1/`` (query templates, schemas, views, table create/upload)
  answers 404 naming the SDK feature pixql does not offer.

Errors go through :mod:`pixql.server.errors`, which gives bodies under these paths
ThanoSQL's ``{"error": {"code", "message"}}`` shape too (the SDK reads that).
"""

from __future__ import annotations

import collections
import re
import threading
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from pixql.catalog.provenance import is_companion
from pixql.errors import ConflictError, NotFoundError, ProgrammingError
from pixql.server.routes.sql import _encode_column
from pixql.server.statements import run_last
from pixql.server.thanosql_schemas import (
    Column,
    QueryLog,
    QueryLogList,
    QueryRequest,
    Records,
    RecordsOut,
    Table,
    TableList,
    TableOut,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from pixql.execution.result import Result
    from pixql.workspace import Workspace

router = APIRouter(tags=["thanosql"])

#: query logs kept per server (oldest dropped first)
MAX_LOGS = 1000
#: schemas that hold pixql's own bookkeeping, never listed as user tables
HIDDEN_SCHEMAS = ("pixql_catalog", "information_schema", "pg_catalog")
#: ThanoSQL's default schema name; DuckDB calls it ``main``
PUBLIC = "public"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def workspace_of(request: Request) -> Workspace:
    """The server's workspace, or 404 saying how to serve one."""
    ws = request.app.state.workspace
    if ws is None or isinstance(ws, str):
        raise NotFoundError("ThanoSQL's API needs a workspace: start the server with "
                            "pixql -w DIR serve")
    return ws


def db_schema(schema: str | None) -> str:
    """ThanoSQL's schema name → DuckDB's (``public`` and none are ``main``)."""
    if schema in (None, "", PUBLIC):
        return "main"
    return _ident(schema, "schema")


def api_schema(schema: str) -> str:
    return PUBLIC if schema == "main" else schema


def _ident(name: str, what: str) -> str:
    if not _IDENT.match(name):
        raise ProgrammingError(f"invalid {what} name {name!r}: use letters, digits and _ "
                               f"(starting with a letter or _), at most 63 characters")
    return name


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------- query logs
class QueryLogs:
    """The server's recent queries, newest last (thread-safe)."""

    def __init__(self) -> None:
        self._logs: collections.deque[QueryLog] = collections.deque(maxlen=MAX_LOGS)
        self._lock = threading.Lock()

    def add(self, log: QueryLog) -> None:
        with self._lock:
            self._logs.append(log.model_copy(update={"records": None}))

    def list(self, search: str | None, offset: int, limit: int) -> tuple[list[QueryLog], int]:
        with self._lock:
            logs = [g for g in reversed(self._logs)
                    if not search or search.lower() in g.query.lower()]
        return logs[offset:offset + limit], len(logs)


def query_logs(app: Any) -> QueryLogs:
    logs = getattr(app.state, "thanosql_logs", None)
    if logs is None:
        logs = app.state.thanosql_logs = QueryLogs()
    return logs


# ---------------------------------------------------------------------- running queries
def records(table: pa.Table, limit: int | None) -> list[dict[str, Any]]:
    """The first ``limit`` rows as JSON objects (embeddings: base64 float32)."""
    head = table if limit is None else table.slice(0, limit)
    cols = [_encode_column(head.column(i), "base64") for i in range(head.num_columns)]
    names = head.column_names
    return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]


def table_exists(ws: Workspace, schema: str, name: str) -> bool:
    rows = ws.cursor().execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name]).fetchall()
    return bool(rows)


def save_table(ws: Workspace, table: pa.Table, schema: str, name: str, overwrite: bool) -> None:
    """Store ``table`` as ``schema.name`` (replacing it only when ``overwrite``)."""
    cur = ws.cursor()
    view = f"__pixql_result_{uuid.uuid4().hex}"
    cur.register(view, table)
    try:
        if schema != "main":
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
        verb = "CREATE OR REPLACE TABLE" if overwrite else "CREATE TABLE"
        cur.execute(f"{verb} {_q(schema)}.{_q(name)} AS SELECT * FROM {_q(view)}")
    finally:
        cur.unregister(view)


def run_to_table(ws: Workspace, query: str, dest: tuple[str, str] | None,
                 overwrite: bool) -> Result:
    """Run ``query``; with ``dest`` (schema, table) also save its result there. The check
    that ``dest`` is free comes first, so a refused save runs nothing."""
    if dest is None:
        return run_last(ws, query)
    schema, name = dest
    with ws.write_lock:
        if not overwrite and table_exists(ws, schema, name):
            raise ConflictError(f"table {api_schema(schema)}.{name} already exists: pass "
                                f"overwrite=True to replace it")
        result = run_last(ws, query)
        if not result.table.num_columns:
            raise ProgrammingError(f"the query returned no rows to save as table {name!r} "
                                   f"(table_name is for statements that return rows)")
        save_table(ws, result.table, schema, name, overwrite)
    return result


def statement_type(query: str) -> str:
    """``'SEARCH'``, ``'SELECT'``... from the last statement's first words."""
    last = [s for s in query.strip().rstrip(";").split(";") if s.strip()][-1:]
    words = re.findall(r"[A-Za-z_]+", last[0] if last else "")
    if words[:1] and words[0].upper() in ("BUILD", "DELETE", "GET", "PRINT") and len(words) > 1:
        return f"{words[0]} {words[1]}".upper()
    return words[0].upper() if words else "UNKNOWN"


def _refuse_templates(body: QueryRequest) -> str:
    used = [n for n in ("template_id", "template_name", "parameters")
            if getattr(body, n) is not None]
    if used:
        raise NotFoundError(f"query templates ({', '.join(used)}) are a ThanoSQL feature "
                            f"pixql does not offer: send the whole statement as query")
    if not body.query_string or not body.query_string.strip():
        raise ProgrammingError("query is empty: pass query='SELECT ...'")
    return body.query_string


@router.post("/api/v1/query/", response_model=QueryLog, response_model_exclude_none=True)
async def execute_query(
    body: QueryRequest, request: Request,
    schema: str | None = Query(default=None, description="schema of table_name"),
    table_name: str | None = Query(default=None, description="also save the result here"),
    overwrite: bool = Query(default=False, description="replace table_name if it exists"),
    keep_temp_table: bool | None = Query(default=None,
                                         description="accepted; pixql keeps no temp tables"),
    max_results: int = Query(default=100, ge=0, le=100, description="records returned"),
) -> QueryLog:
    """Run a query (ThanoSQL's ``client.query.execute``)."""
    ws = workspace_of(request)
    query = _refuse_templates(body)
    dest = (db_schema(schema), _ident(table_name, "table")) if table_name else None
    started = datetime.now(timezone.utc)
    log = QueryLog(query_id=uuid.uuid4().hex, statement_type=statement_type(query),
                   start_time=started, query=query, state="RUNNING", created_at=started)
    try:
        result = await run_in_threadpool(run_to_table, ws, query, dest, overwrite)
    except Exception as exc:
        query_logs(request.app).add(log.model_copy(update={
            "state": "FAILED", "error_result": str(exc), "end_time": datetime.now(timezone.utc)}))
        raise
    table = result.table
    done = log.model_copy(update={
        "state": "SUCCESS", "end_time": datetime.now(timezone.utc),
        "records": Records(data=records(table, max_results), total=table.num_rows),
        "total_records": table.num_rows,
        "destination_table_name": dest[1] if dest else None,
        "destination_schema": api_schema(dest[0]) if dest else None,
        "error_result": None})
    query_logs(request.app).add(done)
    return done


@router.get("/api/v1/query/log", response_model=QueryLogList,
            response_model_exclude_none=True)
async def list_query_logs(request: Request, search: str | None = None,
                          offset: int = Query(default=0, ge=0),
                          limit: int = Query(default=100, ge=0, le=100)) -> QueryLogList:
    """This server's recent queries, newest first (``client.query.log.list``)."""
    logs, total = query_logs(request.app).list(search, offset, limit)
    return QueryLogList(query_logs=logs, total=total)


# ---------------------------------------------------------------------- tables
def _list_tables(ws: Workspace, schema: str | None) -> list[tuple[str, str]]:
    hidden = ", ".join(f"'{s}'" for s in HIDDEN_SCHEMAS)
    sql = ("SELECT table_schema, table_name FROM information_schema.tables "
           f"WHERE table_schema NOT IN ({hidden}) AND table_type = 'BASE TABLE' "
           "AND table_catalog = current_database()")
    params: list[Any] = []
    if schema is not None:
        sql += " AND table_schema = ?"
        params.append(db_schema(schema))
    rows = ws.cursor().execute(sql + " ORDER BY 1, 2", params).fetchall()
    return [(r[0], r[1]) for r in rows]


def _columns(ws: Workspace, schema: str, name: str) -> list[Column]:
    rows = ws.cursor().execute(
        "SELECT ordinal_position, column_name, data_type, column_default, is_nullable "
        "FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position", [schema, name]).fetchall()
    return [Column(id=r[0], name=r[1], type=r[2], default=r[3], is_nullable=r[4] == "YES")
            for r in rows if not is_companion(r[1])]  # pixql's provenance columns: internal


def _table(ws: Workspace, name: str, schema: str | None, verbose: bool = True) -> Table:
    db = db_schema(schema)
    if not table_exists(ws, db, _ident(name, "table")):
        raise NotFoundError(f"table {api_schema(db)}.{name} does not exist")
    cols = _columns(ws, db, name) if verbose else None
    return Table(name=name, schema=api_schema(db), columns=cols)


@router.get("/api/v1/table/", response_model=TableList, response_model_by_alias=True)
async def list_tables(request: Request, schema: str | None = None, verbose: bool = False,
                      offset: int = Query(default=0, ge=0),
                      limit: int = Query(default=100, ge=0, le=100)) -> TableList:
    """The workspace's tables (``client.table.list``)."""
    ws = workspace_of(request)

    def work() -> TableList:
        names = _list_tables(ws, schema)
        page = names[offset:offset + limit]
        tables = [Table(name=n, schema=api_schema(s),
                        columns=_columns(ws, s, n) if verbose else None) for s, n in page]
        return TableList(tables=tables, total=len(names))

    return await run_in_threadpool(work)


@router.get("/api/v1/table/{name}", response_model=TableOut, response_model_by_alias=True)
async def get_table(name: str, request: Request, schema: str | None = None) -> TableOut:
    """One table with its columns (``client.table.get``)."""
    ws = workspace_of(request)
    return TableOut(table=await run_in_threadpool(_table, ws, name, schema))


@router.get("/api/v1/table/{name}/records", response_model=RecordsOut)
async def table_records(name: str, request: Request, schema: str | None = None,
                        offset: int = Query(default=0, ge=0),
                        limit: int = Query(default=100, ge=0, le=100)) -> RecordsOut:
    """A page of a table's rows (``Table.get_records``); embeddings as base64 float32."""
    ws = workspace_of(request)

    def work() -> RecordsOut:
        from pixql.execution.context import to_arrow

        t = _table(ws, name, schema, verbose=False)
        ref = f"{_q(db_schema(t.table_schema))}.{_q(name)}"
        cur = ws.cursor()
        total = cur.execute(f"SELECT count(*) FROM {ref}").fetchall()[0][0]
        page = to_arrow(cur.sql(f"SELECT * FROM {ref} LIMIT {limit} OFFSET {offset}"))
        page = page.drop_columns([c for c in page.column_names if is_companion(c)])
        return RecordsOut(records=records(page, None), total=total)

    return await run_in_threadpool(work)


@router.delete("/api/v1/table/{name}")
async def delete_table(name: str, request: Request, schema: str | None = None) -> dict[str, str]:
    """Drop a table (``client.table.delete``)."""
    ws = workspace_of(request)

    def work() -> None:
        t = _table(ws, name, schema, verbose=False)
        run_last(ws, f"DROP TABLE {_q(db_schema(t.table_schema))}.{_q(name)}")

    await run_in_threadpool(work)
    return {"message": f"table {name} was deleted"}


# ---------------------------------------------------------------------- not offered
#: SDK features pixql does not offer, by path prefix (after /api/v1/)
NOT_OFFERED = {
    "query/template": "query templates (client.query.template)",
    "table/template": "table templates (client.table.template)",
    "schema": "schemas (client.schema)",
    "view": "views (client.view)",
    "table": "creating, updating, uploading to or inserting into tables (client.table."
             "create/update/upload, Table.insert, Table.get_records_as_csv); use SQL "
             "(CREATE TABLE, COPY, INSERT) through client.query.execute",
}


@router.api_route("/api/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                  include_in_schema=False)
async def not_offered(rest: str, request: Request) -> None:
    """Any other ThanoSQL route: 404 naming the feature."""
    what = next((v for k, v in NOT_OFFERED.items() if rest.strip("/").startswith(k)),
                f"the ThanoSQL route /api/v1/{rest}")
    raise NotFoundError(
        f"{request.method} /api/v1/{rest}: {what} is not offered by pixql. pixql serves "
        f"query.execute, query.log.list, table.list/get/delete, Table.get_records and "
        f"file.get/create/delete.")
