"""One PostgreSQL client connection's state, and how its statements run on the workspace.

Statements run through the same engine as ``POST /sql`` (``server.statements``: pixql's
parser, AI statements, the workspace's write serialisation). Around it, what PostgreSQL clients send
that DuckDB does not speak is answered here, from :data:`INTERCEPTS`:

* ``BEGIN`` / ``COMMIT`` / ``ROLLBACK``: accepted, but every statement commits on its own
  (drivers open transactions implicitly; a pixql statement is atomic by itself);
* ``DECLARE name CURSOR FOR query`` / ``FETCH [n] FROM name`` / ``CLOSE name``: server-side
  cursors (SQLAlchemy's ``stream_results``, psycopg's named cursors) over the query's result;
* ``SET ...`` (client settings, ignored), ``SHOW ...`` and ``version()`` (PostgreSQL-looking
  answers: drivers parse the version), ``DISCARD ALL``.

Catalog queries go to DuckDB's own ``pg_catalog`` / ``information_schema`` after the small
rewrites in :data:`REWRITES` (psql's ``\\dt`` and ``\\d``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from buenavista.core import Connection, QueryResult, Session

from pixql.errors import NotFoundError, ProgrammingError
from pixql.server.pg.types import JSON, text_value, type_oid
from pixql.server.statements import ROW_KINDS, is_count_only, run_last
from pixql.version import __version__

if TYPE_CHECKING:
    import pyarrow as pa

    from pixql.workspace import Workspace

SERVER_VERSION = "15.0"
VERSION_TEXT = f"PostgreSQL {SERVER_VERSION} (pixql {__version__}, DuckDB inside)"
PARAMETERS = {
    "server_version": SERVER_VERSION, "server_encoding": "UTF8", "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY", "TimeZone": "UTC", "integer_datetimes": "on",
    "standard_conforming_strings": "on", "IntervalStyle": "postgres",
    "application_name": "", "is_superuser": "off", "session_authorization": "pixql",
}
SHOW = {**{k.lower(): v for k, v in PARAMETERS.items()},
        "transaction isolation level": "read committed", "search_path": '"$user", public',
        "transaction_isolation": "read committed", "max_identifier_length": "63"}
#: temporary macros each connection gets (functions psql's catalog queries call)
MACROS = ("CREATE OR REPLACE TEMP MACRO pg_get_userbyid(x) AS 'pixql'",
          "CREATE OR REPLACE TEMP MACRO to_regtype(x) AS CAST(NULL AS INTEGER)")
#: (pattern, replacement) applied to every statement DuckDB runs
REWRITES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"OPERATOR\(pg_catalog\.([~!<>=*]+)\)"), r"\1"),
    (re.compile(r"\s+COLLATE\s+pg_catalog\.default", re.I), ""),
    (re.compile(r"pg_catalog\.pg_get_userbyid", re.I), "pg_get_userbyid"),
    (re.compile(r"::\s*(?:pg_catalog\.)?(?:regclass|regtype|regproc|oid)\b", re.I), ""),
    # psql's \dt: pixql's bookkeeping schema is not the user's
    (re.compile(r"n\.nspname <> 'information_schema'"),
     "n.nspname NOT IN ('information_schema', 'pixql_catalog')"),
)


class PgResult(QueryResult):
    """A statement's answer: rows (an Arrow table) or none, and its command tag."""

    def __init__(self, table: pa.Table | None = None, tag: str = "") -> None:
        super().__init__()
        self.table = table if table is not None and table.num_columns else None
        self.tag = tag
        self._rows: Iterator[list[str | None]] | None = None

    def has_results(self) -> bool:
        return self.table is not None

    def column_count(self) -> int:
        return self.table.num_columns if self.table is not None else 0

    def columns(self) -> list[tuple[str, int]]:
        """(name, PostgreSQL type OID) of each column."""
        if self.table is None:
            return []
        return [(f.name, type_oid(f.type)) for f in self.table.schema]

    def rows(self) -> Iterator[list[str | None]]:
        """The rows in text format; one iterator per result, so FETCH goes on from where
        the last one stopped."""
        if self._rows is None:
            self._rows = self._encode()
        return self._rows

    def _encode(self) -> Iterator[list[str | None]]:
        if self.table is None:
            return
        import json

        jsons = [oid == JSON for _, oid in self.columns()]
        for batch in self.table.to_batches(max_chunksize=1024):
            cols = [c.to_pylist() for c in batch.columns]
            for row in zip(*cols, strict=True):
                yield [None if v is None else (json.dumps(v, default=str) if j
                                               else text_value(v))
                       for v, j in zip(row, jsons, strict=True)]

    def status(self) -> str:
        return self.tag


def _declare(s: PgSession, m: re.Match[str]) -> PgResult:
    name = _unquote(m["name"])
    s.cursors[name] = s.run(m["query"])
    return PgResult(tag="DECLARE CURSOR")


def _fetch(s: PgSession, m: re.Match[str]) -> PgResult:
    name = _unquote(m["name"])
    result = s.cursors.get(name)
    if result is None:
        raise NotFoundError(f'cursor "{name}" does not exist')
    count = m["count"]
    limit = None if count is None or count.upper() == "ALL" else int(count)
    rows = []
    it = result.rows()
    for row in it:
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    out = _Fetched(result, rows)
    out.tag = f"FETCH {len(rows)}"
    return out


def _close(s: PgSession, m: re.Match[str]) -> PgResult:
    name = _unquote(m["name"])
    if name.upper() == "ALL":
        s.cursors.clear()
    elif s.cursors.pop(name, None) is None:
        raise NotFoundError(f'cursor "{name}" does not exist')
    return PgResult(tag="CLOSE CURSOR")


def _show(s: PgSession, m: re.Match[str]) -> PgResult:
    import pyarrow as pa

    what = " ".join(m["what"].lower().replace('"', "").split())
    if what not in SHOW:
        raise ProgrammingError(f"unrecognized configuration parameter {what!r}; pixql "
                               f"answers SHOW for: {', '.join(sorted(SHOW))}")
    return PgResult(pa.table({what.replace(" ", "_"): [SHOW[what]]}), "SHOW")


def _version(s: PgSession, m: re.Match[str]) -> PgResult:
    import pyarrow as pa

    return PgResult(pa.table({"version": [VERSION_TEXT]}), "SELECT 1")


def _txn(tag: str, state: bool) -> Callable[[PgSession, re.Match[str]], PgResult]:
    def run(s: PgSession, m: re.Match[str]) -> PgResult:
        s.in_txn = state
        return PgResult(tag=tag)

    return run


_NAME = r'(?P<name>"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
#: statements answered by the session itself (matched against the whole statement)
INTERCEPTS: tuple[tuple[re.Pattern[str], Callable[[PgSession, re.Match[str]], PgResult]],
                  ...] = tuple((re.compile(p, re.I | re.S), f) for p, f in (
    (r"(?:BEGIN|START\s+TRANSACTION)\b.*", _txn("BEGIN", True)),
    (r"(?:COMMIT|END)(?:\s+(?:WORK|TRANSACTION))?", _txn("COMMIT", False)),
    (r"(?:ROLLBACK|ABORT)(?:\s+(?:WORK|TRANSACTION))?", _txn("ROLLBACK", False)),
    (r"SAVEPOINT\s+.*", lambda s, m: PgResult(tag="SAVEPOINT")),
    (r"RELEASE\s+.*", lambda s, m: PgResult(tag="RELEASE")),
    (r"ROLLBACK\s+(?:WORK\s+|TRANSACTION\s+)?TO\s+.*", lambda s, m: PgResult(tag="ROLLBACK")),
    (r"SET\s+.*", lambda s, m: PgResult(tag="SET")),
    (r"RESET\s+.*", lambda s, m: PgResult(tag="RESET")),
    (r"DISCARD\s+ALL", lambda s, m: PgResult(tag="DISCARD ALL")),
    (r"SHOW\s+(?P<what>[\w\s\"]+)", _show),
    (r"SELECT\s+(?:pg_catalog\.)?version\(\)", _version),
    (rf"DECLARE\s+{_NAME}\s+(?:BINARY\s+)?(?:(?:ASENSITIVE|INSENSITIVE)\s+)?"
     r"(?:(?:NO\s+)?SCROLL\s+)?CURSOR\s+(?:(?:WITH|WITHOUT)\s+HOLD\s+)?FOR\s+(?P<query>.+)",
     _declare),
    (r"FETCH\s+(?:(?:NEXT|FORWARD)\s+)?(?P<count>\d+|ALL)?\s*(?:FROM|IN)\s+" + _NAME,
     _fetch),
    (r"FETCH\s+(?:NEXT|FORWARD)\s+" + _NAME, _fetch),
    (r"CLOSE\s+" + _NAME, _close),
))


class _Fetched(PgResult):
    """A FETCH's rows: a slice of its cursor's result (same columns)."""

    def __init__(self, cursor: PgResult, rows: list[list[str | None]]) -> None:
        super().__init__(cursor.table, "")
        self._rows = iter(rows)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


#: statements whose rows are their answer (a "Count" column from them is data)




def _tag(sql: str, result: Any) -> str:
    """PostgreSQL's command tag for ``sql`` and its pixql ``result``."""
    words = sql.split(None, 2)
    kind = words[0].upper() if words else ""
    table = result.table
    if kind not in ROW_KINDS and table.column_names == ["Count"]:
        n = table.column(0)[0].as_py() if table.num_rows else 0
        return {"INSERT": f"INSERT 0 {n}", "UPDATE": f"UPDATE {n}",
                "DELETE": f"DELETE {n}"}.get(kind, f"SELECT {n}")  # CREATE TABLE AS: SELECT n
    if table.num_columns:
        return f"SELECT {table.num_rows}"
    if kind in ("CREATE", "DROP", "ALTER") and len(words) > 1:
        return f"{kind} {words[1].upper()}"
    return kind or "OK"


class PgSession(Session):
    """A client connection: its cursors and transaction flag; runs statements."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__()
        self.ws = ws
        self.in_txn = False
        self.cursors: dict[str, PgResult] = {}
        self.notices: list[str] = []  # pixql's messages, sent as NoticeResponse
        self._ready = False

    def cursor(self) -> Any:
        return self.ws.cursor()

    def close(self) -> None:
        self.cursors.clear()

    def in_transaction(self) -> bool:
        return self.in_txn

    def execute_sql(self, sql: str, params: list[Any] | None = None) -> PgResult:
        text = sql.strip().rstrip(";").strip()
        for pattern, handler in INTERCEPTS:
            m = pattern.fullmatch(text)
            if m:
                return handler(self, m)
        return self.run(text, params)

    def run(self, sql: str, params: list[Any] | None = None) -> PgResult:
        """Run one statement on the workspace (parameters: plain SQL only)."""
        self._prepare()
        for pattern, repl in REWRITES:
            sql = pattern.sub(repl, sql)
        if params:
            return self._run_params(sql, params)
        if not sql.strip():
            return PgResult(tag="")
        result = run_last(self.ws, sql)
        if result.table.num_columns == 0 and result.message and result.message != "Success":
            self.notices.append(result.message)
        rows = None if is_count_only(sql, result.table) else result.table
        return PgResult(rows, _tag(sql, result))

    def _prepare(self) -> None:
        if not self._ready:
            cur = self.ws.cursor()
            for macro in MACROS:
                cur.execute(macro)
            self._ready = True

    def _run_params(self, sql: str, params: list[Any]) -> PgResult:
        from pixql.execution.context import to_arrow
        from pixql.sql import parse_script
        from pixql.sql.nodes import Passthrough

        nodes = parse_script(sql)
        if len(nodes) != 1 or not isinstance(nodes[0], Passthrough):
            raise ProgrammingError("query parameters ($1, %s) are supported in plain SQL "
                                   "only; write the values into AI statements")
        import pyarrow as pa

        from pixql.execution.result import Result

        with self.ws.write_lock:
            rel = self.ws.cursor().sql(sql, params=params)
            table = to_arrow(rel) if rel is not None else pa.table({})
        result = Result(table=table)
        return PgResult(None if is_count_only(sql, table) else table, _tag(sql, result))


class PgConnection(Connection):
    """buenavista's connection: hands out :class:`PgSession` s on one workspace."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__()
        self.ws = ws

    def new_session(self) -> Session:
        return PgSession(self.ws)

    def parameters(self) -> dict[str, str]:
        return dict(PARAMETERS)
