"""Running a SQL script for a server client (``/sql``, ThanoSQL's routes, the PostgreSQL
endpoint): one place, below the routes and the protocol handlers that share it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from pixql.execution.result import Result
    from pixql.workspace import Workspace

#: first keywords of statements whose result is rows (others may answer DuckDB's row count)
ROW_KINDS = frozenset({"SELECT", "WITH", "VALUES", "FROM", "TABLE", "SHOW", "DESCRIBE",
                       "SUMMARIZE", "SEARCH", "CONVERT", "LIST", "PRINT", "EXPLAIN", "PIVOT"})


def run_closed(ws: Workspace, query: str) -> list[Result]:
    """Run the script on this thread's cursor (one Result per statement, at least one); a
    transaction it leaves open (BEGIN without COMMIT) is rolled back, since the next request
    on this thread is someone else's."""
    from pixql.execution.context import in_open_transaction
    from pixql.execution.result import Result

    cur = ws.cursor()
    try:
        results = ws.execute(query) or [Result(message="no statement")]
    finally:
        if in_open_transaction(cur):
            cur.rollback()
            left_open = True
        else:
            left_open = False
    if left_open:
        note = "the script left a transaction open; it was rolled back (end it with COMMIT)"
        last = results[-1]
        last.message = f"{last.message}; {note}" if last.message else note
    return results


def run_last(ws: Workspace, query: str) -> Result:
    """:func:`run_closed`, answering the last statement's result (a one-statement client)."""
    return run_closed(ws, query)[-1]


def is_count_only(sql: str, table: pa.Table) -> bool:
    """Whether ``table`` is DuckDB's row count of a write (not rows to send)."""
    words = sql.split(None, 1)
    return bool(words) and words[0].upper() not in ROW_KINDS and \
        table.column_names == ["Count"]
