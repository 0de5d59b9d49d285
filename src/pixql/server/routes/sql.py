"""``POST /sql``: SQL over HTTP, as JSON or as an Apache Arrow IPC stream.

The statements run on the server's workspace (confined to its folder: see
``Workspace(confined=True)``) through the same engine as ``pixql sql``, so errors carry the
same messages and positions. Results are streamed in record batches.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from collections.abc import Iterator
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from pixql.errors import NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from pixql.execution.result import Result
    from pixql.workspace import Workspace

router = APIRouter(tags=["sql"])

ARROW_STREAM = "application/vnd.apache.arrow.stream"
BATCH_ROWS = 2048


class SqlRequest(BaseModel):
    """A script of one or more ``;``-separated statements; the last one's result is returned."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=1_000_000, description="SQL script")
    embeddings: Literal["list", "base64"] = Field(
        default="list",
        description="how FLOAT[d] columns are sent in JSON: lists of floats, or base64 of "
                    "little-endian float32 bytes (np.frombuffer(b64decode(x), 'float32'))")
    max_rows: int | None = Field(default=None, ge=0, description="cap on rows returned")
    api_key: str | None = Field(default=None, description="API key (also: query or Bearer)",
                                exclude=True)


class SqlColumn(BaseModel):
    name: str
    type: str


class SqlResponse(BaseModel):
    """The JSON shape (documentation; the body is streamed)."""

    columns: list[SqlColumn]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    message: str | None
    time: float


@router.post("/sql", response_model=SqlResponse,
             responses={200: {"content": {ARROW_STREAM: {}}}})
async def run_sql(body: SqlRequest, request: Request) -> StreamingResponse:
    """Run SQL on the server's workspace. ``Accept: application/vnd.apache.arrow.stream``
    returns the rows as an Arrow IPC stream instead of JSON."""
    ws = request.app.state.workspace
    if ws is None or isinstance(ws, str):
        raise NotFoundError("SQL over HTTP needs a workspace: start the server with -w DIR")
    started = time.perf_counter()
    result = await run_in_threadpool(_run_closed, ws, body.query)
    table: pa.Table = result.table
    truncated = body.max_rows is not None and table.num_rows > body.max_rows
    if truncated:
        table = table.slice(0, body.max_rows)
    elapsed = time.perf_counter() - started
    if ARROW_STREAM in request.headers.get("accept", ""):
        headers = {"X-Row-Count": str(table.num_rows), "X-Truncated": str(truncated).lower()}
        if result.message:
            headers["X-Message"] = result.message.encode("ascii", "replace").decode()[:500]
        return StreamingResponse(_arrow_stream(table), media_type=ARROW_STREAM,
                                 headers=headers)
    return StreamingResponse(
        _json_stream(table, result.message or None, truncated, elapsed, body.embeddings),
        media_type="application/json")


class _Sink(io.RawIOBase):
    """A writable file that hands its bytes over as they are written."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _run_closed(ws: Workspace, query: str) -> Result:
    """Run the script on this thread's cursor; a transaction it leaves open (BEGIN without
    COMMIT) is rolled back, since the next request on this thread is someone else's."""
    from pixql.execution.context import in_open_transaction

    cur = ws.cursor()
    try:
        result = ws.sql(query)
    finally:
        if in_open_transaction(cur):
            cur.rollback()
            left_open = True
        else:
            left_open = False
    if left_open:
        note = "the script left a transaction open; it was rolled back (end it with COMMIT)"
        result.message = f"{result.message}; {note}" if result.message else note
    return result


def _arrow_stream(table: pa.Table) -> Iterator[bytes]:
    """The Arrow IPC stream of ``table``, one record batch at a time."""
    sink = _Sink()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        yield sink.take()
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()


def _json_stream(table: pa.Table, message: str | None, truncated: bool, elapsed: float,
                 embeddings: str) -> Iterator[bytes]:
    columns = [{"name": f.name, "type": str(f.type)} for f in table.schema]
    yield b'{"columns": ' + json.dumps(columns).encode() + b', "rows": ['
    first = True
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        cols = [_encode_column(batch.column(i), embeddings) for i in range(batch.num_columns)]
        for row in zip(*cols, strict=True):
            yield (b"" if first else b", ") + json.dumps(list(row), allow_nan=False).encode()
            first = False
    tail = {"row_count": table.num_rows, "truncated": truncated, "message": message,
            "time": round(elapsed, 6)}
    yield b"], " + json.dumps(tail)[1:].encode()


def _encode_column(arr: pa.Array, embeddings: str) -> list[Any]:
    """A column as JSON-safe Python values."""
    if embeddings == "base64" and pa.types.is_fixed_size_list(arr.type):
        out: list[Any] = []
        for v in arr.to_pylist():
            out.append(None if v is None else base64.b64encode(
                np.asarray(v, dtype="<f4").tobytes()).decode())
        return out
    try:
        values = arr.to_pylist()
    except (OverflowError, ValueError):  # e.g. 'infinity'::DATE, years past 9999
        values = arr.cast(pa.string()).to_pylist()
    return [_jsonable(v) for v in values]


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (datetime, date, dtime)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return str(v)
