"""The WebSocket that ThanoSQL's ``%%thanosql`` magic talks to: ``/ws/v1/query?api_token=KEY``.

The magic sends ``{"query_string": cell}`` and reads JSON frames until a RESULT or an ERROR:
``{"output_type": "MESSAGE" | "RESULT" | "ERROR", "output_message": ...}``. pixql runs the
statement here; a statement with rows has them saved as table ``qm.<id>``, and the RESULT
frame tells the magic (``response_type`` ``SELECT_DROP``) to read that table over PostgreSQL
(the ``--pg-port`` endpoint, reached through the Unix socket folder named in
``workspace_db_info.host``) and then drop it. PRINT IMAGE adds ``print`` / ``print_option``
(``image_col``, ``base_dir`` = the workspace folder) so the magic shows the images.
Without the PostgreSQL endpoint the magic cannot read anything: it gets an ERROR frame
saying how to start the server, and nothing runs.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from pixql.server.auth import key_digest, key_matches

if TYPE_CHECKING:
    from pixql.execution.result import Result

router = APIRouter(tags=["thanosql"])

#: schema of the result tables the magic reads and drops (ThanoSQL's name for it)
RESULT_SCHEMA = "qm"
DB_USER = DB_NAME = "pixql"
NO_PG = ("The %%thanosql magic reads results through pixql's PostgreSQL endpoint, and this "
         "server was started without it. Restart the server with one, e.g. "
         "`pixql -w WORKSPACE serve --pg-port 5433`, and run the cell again.")
UNAUTHORIZED = ("Unauthorized: this server needs a valid API key as the token; set it with "
                "%thanosql API_TOKEN=<key>")


def frame(kind: str, message: Any) -> str:
    return json.dumps({"output_type": kind, "output_message": message}, default=str)


def result_frame(result: Result, table: str | None, token: str, pg: Any,
                 root: str) -> str:
    """The RESULT frame for ``result`` (saved as ``table`` when it has rows)."""
    data: dict[str, Any] = {
        "workspace_db_info": {"user": DB_USER, "password": token or DB_USER,
                              "database": DB_NAME, "host": str(pg.socket_dir)},
        "response_type": None, "query_string": None, "extra_query_string": None}
    if table is not None:
        ref = f'{RESULT_SCHEMA}."{table}"'
        data.update(response_type="SELECT_DROP", query_string=f"SELECT * FROM {ref}",
                    extra_query_string=f"DROP TABLE IF EXISTS {ref}")
    if result.images is not None:
        data["print"] = "print_image"
        data["print_option"] = {"image_col": result.image_col or "image_path",
                                "base_dir": root, "limit": None}
    return frame("RESULT", {"data": data})


def _authorised(websocket: WebSocket, token: str | None) -> bool:
    settings = websocket.app.state.settings
    if not settings.auth_enabled:
        return True
    return key_matches(token, [key_digest(k.get_secret_value()) for k in settings.api_keys])


@router.websocket("/ws/v1/query")
async def query_socket(websocket: WebSocket) -> None:
    """One query per connection: MESSAGE frames, then a RESULT or an ERROR frame."""
    await websocket.accept()
    token = websocket.query_params.get("api_token")
    try:
        if not _authorised(websocket, token):
            await websocket.send_text(frame("ERROR", UNAUTHORIZED))
            return
        request = json.loads(await websocket.receive_text())
        query = request.get("query_string") if isinstance(request, dict) else None
        if not isinstance(query, str) or not query.strip():
            await websocket.send_text(frame("ERROR", 'send {"query_string": "<statement>"}'))
            return
        for text in await _answer(websocket, query, token or ""):
            await websocket.send_text(text)
    except WebSocketDisconnect:
        return
    except ValueError:
        await websocket.send_text(frame("ERROR", "the request is not JSON"))
    finally:
        await _close(websocket)


async def _answer(websocket: WebSocket, query: str, token: str) -> list[str]:
    """The frames answering ``query``: its message (if any) and a RESULT, or one ERROR."""
    app = websocket.app
    ws, pg = app.state.workspace, getattr(app.state, "pg", None)
    if ws is None or isinstance(ws, str):
        return [frame("ERROR", "this server has no workspace: start it with pixql -w DIR "
                               "serve")]
    if pg is None:
        return [frame("ERROR", NO_PG)]
    try:
        result, table = await run_in_threadpool(_run_statement, ws, query)
    except Exception as exc:  # every failure is the cell's answer, never a hang
        from pixql.errors import Error

        if not isinstance(exc, Error) and not _is_duckdb(exc):
            import logging

            logging.getLogger("pixql.server").exception("%%thanosql cell failed")
            return [frame("ERROR", f"Internal error: {type(exc).__name__}")]
        return [frame("ERROR", str(exc))]
    frames = [frame("MESSAGE", result.message)] if result.message else []
    return [*frames, result_frame(result, table, token, pg, str(ws.root))]


def _is_duckdb(exc: BaseException) -> bool:
    import duckdb

    return isinstance(exc, duckdb.Error)


def _run_statement(ws: Any, query: str) -> tuple[Result, str | None]:
    """Run one statement; rows are saved to ``qm.<name>`` in the same locked step."""
    from pixql.server.routes.thanosql import save_table
    from pixql.server.statements import is_count_only, run_last
    from pixql.sql import parse_script

    if len(parse_script(query)) != 1:
        from pixql.errors import ProgrammingError

        raise ProgrammingError("a %%thanosql cell holds exactly one statement")
    with ws.write_lock:
        result = run_last(ws, query)
        if not result.table.num_columns or is_count_only(query.strip(), result.table):
            return result, None
        name = f"r_{uuid.uuid4().hex[:16]}"
        save_table(ws, result.table, RESULT_SCHEMA, name, False)
    return result, name


async def _close(websocket: WebSocket) -> None:
    with contextlib.suppress(RuntimeError):  # already closed by the client
        await websocket.close()
