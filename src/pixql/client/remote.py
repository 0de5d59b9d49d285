"""``RemoteWorkspace``: a workspace served by ``pixql serve``, used like a local one.

``pixql.connect(DIR)`` returns one when ``DIR`` is being served (see
:mod:`pixql.client.record`), and ``pixql.connect("http://host:port")`` always does. It
offers the :class:`~pixql.workspace.Workspace` methods clients use — ``sql``, ``execute``,
``close``, ``root``, ``resolve``, the context manager — and runs every statement on the
server through ``POST /sql`` as Arrow streams (exact types: embeddings stay float32). Results
are the same :class:`~pixql.execution.result.Result` objects (``.df()``, ``.arrow()``,
``.fetchall()``, PRINT IMAGE's ``images``), and errors the same exception types with the
same line and column.

A write-write conflict (HTTP 409: another client changed the same rows at the same time)
is retried with back-off while the server's ``Retry-After`` is short, up to
``retry_budget_s`` seconds in all; only then does it surface. Scripts of several statements
are not retried (an earlier statement may already have committed).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from pixql.client.errors import rebuild
from pixql.client.http import Client, ClientError
from pixql.client.tables import ARROW_STREAM
from pixql.execution.result import Result

if TYPE_CHECKING:
    import os

    import pyarrow as pa

    from pixql.client.record import ServerRecord

#: longest Retry-After (seconds) the client waits out instead of surfacing a 409
MAX_RETRY_AFTER_S = 5.0
#: total seconds spent waiting on 409s for one script before giving up
RETRY_BUDGET_S = 30.0
#: first back-off (seconds) when the server gives no Retry-After
FIRST_BACKOFF_S = 0.05
#: how long one statement may run on the server (BUILD MODEL can take a while): no limit
STATEMENT_TIMEOUT = httpx.Timeout(30.0, read=None)


class RemoteWorkspace:
    """A workspace reached through a pixql server.

    Args:
        url: the server's base URL.
        api_key: its API key (default ``$PIXQL_API_KEY``).
        root: the workspace folder when it is known here (``pixql.connect(DIR)``); else it
            is asked of the server on first use.
        record: the server's record, when the connection came from one.
        retry_budget_s: total seconds a script may wait on write-write conflicts (409).
        transport: an httpx transport (tests, proxies).
    """

    def __init__(self, url: str, api_key: str | None = None, *,
                 root: str | os.PathLike[str] | None = None,
                 record: ServerRecord | None = None, retry_budget_s: float = RETRY_BUDGET_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.client = Client(url, api_key, transport=transport)
        self.url = self.client.url
        self.record = record
        self.retry_budget_s = retry_budget_s
        self._root = Path(root) if root is not None else None
        self.closed = False

    @property
    def server(self) -> str:
        """``'http://127.0.0.1:9001 (pid 42)'`` (the pid when the record gave it)."""
        return self.record.describe() if self.record is not None else self.url

    def __repr__(self) -> str:
        return f"RemoteWorkspace({self.server})"

    # -- the folder -------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The workspace folder (as the server sees it)."""
        if self._root is None:  # the folder of the server's database file
            value = self._post("SELECT path FROM duckdb_databases() "
                               "WHERE database_name = current_database()", False)
            self._root = Path(str(value[0].table.column(0)[0].as_py())).parent
        return self._root

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """A path as stored in a table: relative paths are relative to the workspace."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.root / p

    # -- life -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool (the server and its workspace stay up)."""
        self.client.close()
        self.closed = True

    def __enter__(self) -> RemoteWorkspace:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- SQL --------------------------------------------------------------------------------
    def execute(self, script: str) -> list[Result]:
        """Run the script on the server; one Result per statement (as ``Workspace.execute``)."""
        if not script.strip():
            return []
        results = self._post(script, _single_statement(script))
        if len(results) == 1 and _no_statement(results[0]):  # only comments: as locally
            return []
        return results

    def sql(self, script: str) -> Result:
        """Run a script of ``;``-separated statements; return the last statement's result."""
        results = self.execute(script)
        return results[-1] if results else Result(message="no statement")

    def _post(self, script: str, retry: bool) -> list[Result]:
        payload = {"query": script, "results": "all"}
        waited, attempt = 0.0, 0
        while True:
            try:
                response = self.client.request(
                    "POST", "/sql", json=payload, headers={"Accept": ARROW_STREAM},
                    timeout=STATEMENT_TIMEOUT)
                break
            except ClientError as e:
                pause = self._retry_pause(e, attempt, waited) if retry else None
                if pause is None:
                    raise rebuild(e, self.server) from None
            time.sleep(pause)
            waited += pause
            attempt += 1
        return [self._result(t) for t in read_streams(response.content)]

    def _retry_pause(self, error: ClientError, attempt: int, waited: float) -> float | None:
        """Seconds to wait before retrying ``error``, or None to give up on it."""
        # a transient write-write conflict carries Retry-After; a name conflict (BUILD
        # without overwrite, also 409) does not, and is not retried
        hint = error.retry_after
        if error.status_code != 409 or hint is None or hint > MAX_RETRY_AFTER_S:
            return None
        backoff = FIRST_BACKOFF_S * 2 ** attempt * random.uniform(0.5, 1.0)  # jittered
        pause = min(max(hint, backoff), MAX_RETRY_AFTER_S)
        return pause if waited + pause <= self.retry_budget_s else None

    def _result(self, table: pa.Table) -> Result:
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        pixql_keys = [k for k in meta if k.startswith("pixql.")]
        clean = table.replace_schema_metadata(
            {k: v for k, v in meta.items() if k not in pixql_keys} or None)
        result = Result(table=clean, message=meta.get("pixql.message", ""),
                        statement=meta.get("pixql.statement", ""))
        image_col = meta.get("pixql.image_col")
        if image_col and image_col in clean.column_names:
            result.image_col = image_col
            result.images = [self.resolve(str(v)) for v in
                             clean.column(image_col).to_pylist() if v is not None]
        return result


def read_streams(data: bytes) -> list[pa.Table]:
    """The tables of consecutive Arrow IPC streams in ``data``."""
    import pyarrow as pa

    buf = pa.BufferReader(data)
    tables = []
    while buf.tell() < len(data):
        tables.append(pa.ipc.open_stream(buf).read_all())
    return tables


def _no_statement(result: Result) -> bool:
    """The server's stand-in answer to a script without statements (comments only)."""
    return (not result.statement and result.message == "no statement"
            and not result.table.num_columns)


def _single_statement(script: str) -> bool:
    """Whether ``script`` holds one statement (safe to retry after a conflict)."""
    from pixql.errors import ParseError
    from pixql.sql import split_statements

    try:
        return len(split_statements(script)) <= 1
    except ParseError:
        return False


__all__ = ["RemoteWorkspace", "read_streams"]
