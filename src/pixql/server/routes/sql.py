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
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from pixql.errors import InputError, NotFoundError
from pixql.server.statements import run_closed

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
    results: Literal["last", "all"] = Field(
        default="last",
        description="'all': every statement's result, as consecutive Arrow IPC streams (needs "
                    "Accept: application/vnd.apache.arrow.stream); each schema's metadata "
                    "holds pixql.message, pixql.statement and, for PRINT IMAGE, "
                    "pixql.image_col")
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
    arrow = ARROW_STREAM in request.headers.get("accept", "")
    if body.results == "all" and not arrow:
        raise InputError(f"results='all' needs 'Accept: {ARROW_STREAM}' (JSON carries the "
                         f"last result only)", field="results", status=406)
    started = time.perf_counter()
    results = await run_in_threadpool(run_closed, ws, body.query)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.count_statements(r.statement for r in results)
    result = results[-1]
    table: pa.Table = result.table
    truncated = body.max_rows is not None and table.num_rows > body.max_rows
    if truncated:
        table = table.slice(0, body.max_rows)
    elapsed = time.perf_counter() - started
    if arrow:
        headers = {"X-Row-Count": str(table.num_rows), "X-Truncated": str(truncated).lower()}
        if result.message:
            headers["X-Message"] = result.message.encode("ascii", "replace").decode()[:500]
        shown = results if body.results == "all" else [result]
        return StreamingResponse(_arrow_results(shown, body.max_rows),
                                 media_type=ARROW_STREAM, headers=headers)
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


def _arrow_results(results: list[Any], max_rows: int | None) -> Iterator[bytes]:
    """One Arrow IPC stream per result, back to back; each schema carries the result's
    message, statement and (PRINT IMAGE) image column as metadata."""
    for result in results:
        meta = {"pixql.message": result.message or "", "pixql.statement": result.statement}
        if result.images is not None and result.image_col:
            meta["pixql.image_col"] = result.image_col
        table = result.table if max_rows is None else result.table.slice(0, max_rows)
        yield from _arrow_stream(table.replace_schema_metadata(
            {**(table.schema.metadata or {}), **meta}))


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
