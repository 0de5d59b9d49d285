"""Map every error to an HTTP response, in one place. Bodies are ``{"message": ...}``.

================================  ======  =================================================
exception                         status  body
================================  ======  =================================================
``pixql.errors.Error``            its     ``Error.to_dict()``: ``message``, ``error`` (class)
                                  ``http_status``  and details (``field``, ``paths``...)
``duckdb.Error``                  400     ``message``, ``error``
DuckDB write-write conflict       409     ``message``, ``error``; ``Retry-After: 1`` header
(``TransactionException``)
``RequestValidationError``        422     ``message`` naming the fields, FastAPI's ``detail``
                                          (``api_key`` values in it are masked)
``HTTPException`` (incl. 413)     its     ``message`` (= detail)
``RecursionError`` (input nested  400     ``message`` (logged as a warning)
too deeply)
disk full (``OSError`` ENOSPC or  507     ``message``, ``error`` (logged)
EDQUOT, DuckDB's "No space left")
anything else                     500     ``{"message": "Internal error."}`` (logged)
================================  ======  =================================================

Under ThanoSQL's paths (``/api/v1/``, ``/fm/api/v1/``) bodies also carry
``"error": {"code", "message", "type"}``, the shape its SDK reads.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixql.errors import Error

log = logging.getLogger("pixql.server")

INTERNAL_ERROR = "Internal error."
TOO_DEEP = "The request is nested too deeply to be processed."
#: seconds a client is asked to wait before retrying after a write-write conflict
CONFLICT_RETRY_AFTER = 1
#: errno values (and DuckDB message fragments) that mean the disk is full
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")
#: validation problems named in a 422 ``message`` (the ``detail`` list has them all)
MAX_NAMED_PROBLEMS = 5


def json_error(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A JSON error response ``{"message": message, **extra}``."""
    return JSONResponse({"message": message, **extra}, status_code=status, headers=headers)


async def pixql_error(request: Request, exc: Exception) -> JSONResponse:
    """pixql's own errors carry their status and a JSON form."""
    assert isinstance(exc, Error)
    return JSONResponse(jsonable_encoder(exc.to_dict()), status_code=exc.http_status)


def is_write_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB's write-write conflict (another transaction changed the same
    rows or table first): transient, the request may be retried."""
    import duckdb

    return isinstance(exc, duckdb.TransactionException) and "onflict" in str(exc)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return True
    return any(text in str(exc) for text in _DISK_FULL_TEXT)


def disk_full_response(exc: BaseException) -> JSONResponse:
    """507: the server could not save (nothing was changed: writes are atomic)."""
    log.error("disk full: %s", exc)
    return json_error(
        507, f"The server's disk is full; nothing was changed. ({exc})",
        error=type(exc).__name__)


async def duckdb_error(request: Request, exc: Exception) -> JSONResponse:
    """DuckDB's errors (bad SQL, missing tables...) are the client's: 400; a write-write
    conflict is 409 with ``Retry-After``; a full disk is 507."""
    if is_write_conflict(exc):
        return json_error(
            409, f"{exc} Another statement changed the same data at the same time; nothing "
            f"was changed: retry the request.", error=type(exc).__name__,
            headers={"Retry-After": str(CONFLICT_RETRY_AFTER)})
    import duckdb

    storage = isinstance(exc, duckdb.IOException | duckdb.TransactionException)
    if storage and is_disk_full(exc):  # not SELECT error('No space left on device')
        return disk_full_response(exc)
    return json_error(400, str(exc), error=type(exc).__name__)


#: pydantic names union members in error locations by their type; these are not fields
_PRIMITIVE_TAGS = frozenset({"str", "int", "float", "bool", "bytes", "list", "dict", "none"})


def _is_union_tag(part: str) -> bool:
    from pydantic import BaseModel

    from pixql.server import schemas

    model = getattr(schemas, part, None)
    return (
        "[" in part
        or part in _PRIMITIVE_TAGS
        or (isinstance(model, type) and issubclass(model, BaseModel))
    )


def _where(loc: Sequence[Any]) -> str:
    """``('body', 'image', 'list[ImageInput]', 1, 'type')`` → ``'image[1].type'``."""
    parts = [p for p in loc if not (isinstance(p, str) and _is_union_tag(p))]
    if len(parts) > 1 and parts[0] == "body":
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_message(errors: Sequence[dict[str, Any]]) -> str:
    """``'Invalid request: text: Field required; ...'`` from pydantic's error list.

    Errors of one location (the failed members of a union) are joined with ``' | '``.
    """
    problems: dict[str, list[str]] = {}
    for err in errors:
        msgs = problems.setdefault(_where(err.get("loc", ())), [])
        msg = str(err.get("msg", "invalid value"))
        if msg not in msgs:
            msgs.append(msg)
    named = [f"{where}: {' | '.join(msgs)}" for where, msgs in problems.items()]
    more = len(named) - MAX_NAMED_PROBLEMS
    text = "; ".join(named[:MAX_NAMED_PROBLEMS])
    return f"Invalid request: {text}" + (f" (and {more} more)" if more > 0 else "")


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with FastAPI's ``detail`` list plus a readable ``message`` naming the fields."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    detail = jsonable_encoder(errors, custom_encoder={bytes: lambda b: b.decode("latin-1")})
    return json_error(422, validation_message(errors), detail=_mask_keys(detail))


def _mask_keys(value: Any) -> Any:
    """``value`` with every ``"api_key"`` entry of a dict, and the ``input`` of a problem
    located at ``api_key``, replaced by ``"***"`` (a 422's ``detail`` echoes the body)."""
    if isinstance(value, dict):
        at_key = list(value.get("loc") or [])[-1:] == ["api_key"]
        return {k: "***" if v is not None and (k == "api_key" or (at_key and k == "input"))
                else _mask_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_keys(v) for v in value]
    return value


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette/FastAPI HTTP errors (404 route, 405, 413...) in the ``message`` shape."""
    assert isinstance(exc, HTTPException)
    return json_error(exc.status_code, str(exc.detail), headers=exc.headers)


#: path prefixes whose error bodies also carry ThanoSQL's ``{"error": {"code", "message"}}``
#: (its SDK reads the message from there; ``type`` keeps pixql's class name)
THANOSQL_PREFIXES = ("/api/v1/", "/fm/api/v1/")


def thanosql_shaped(response: JSONResponse, path: str) -> JSONResponse:
    """``response`` with ``error`` = ``{"code", "message", "type"}`` under
    :data:`THANOSQL_PREFIXES`; unchanged elsewhere."""
    if not path.startswith(THANOSQL_PREFIXES):
        return response
    import json

    body = json.loads(bytes(response.body))
    kind = body.get("error")
    body["error"] = {"code": response.status_code, "message": body.get("message", ""),
                     "type": kind if isinstance(kind, str) else None}
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in ("content-length", "content-type")}
    return JSONResponse(body, status_code=response.status_code, headers=headers)


def _shaping(handler: Callable[[Request, Exception], Any]) -> Callable[..., Any]:
    async def shaped(request: Request, exc: Exception) -> JSONResponse:
        return thanosql_shaped(await handler(request, exc), request.url.path)

    return shaped


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler above on ``app`` (app.py adds :class:`InternalErrorMiddleware`)."""
    app.add_exception_handler(Error, _shaping(pixql_error))
    app.add_exception_handler(RequestValidationError, _shaping(validation_error))
    app.add_exception_handler(HTTPException, _shaping(http_error))
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a core dependency
        pass
    else:
        app.add_exception_handler(duckdb.Error, _shaping(duckdb_error))


def _too_deep(exc: BaseException) -> JSONResponse | None:
    if not isinstance(exc, RecursionError):
        return None
    log.warning("refused a request nested too deeply: %s", exc)
    return json_error(400, TOO_DEEP)


def _disk_full(exc: BaseException) -> JSONResponse | None:
    return disk_full_response(exc) if isinstance(exc, OSError) and is_disk_full(exc) else None


#: exceptions outside pixql's hierarchy that still have a meaningful answer (tried in order)
ESCAPED: tuple[Callable[[BaseException], JSONResponse | None], ...] = (_too_deep, _disk_full)


class InternalErrorMiddleware:
    """Exceptions no handler took: a RecursionError (input nested too deeply) is 400, a full
    disk 507; anything else is logged once (with traceback) and answered 500
    "Internal error."."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            response = next((r for r in (f(exc) for f in ESCAPED) if r is not None), None)
            if response is None:
                log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
                response = json_error(500, INTERNAL_ERROR)
            if not started:
                await response(scope, receive, send)
