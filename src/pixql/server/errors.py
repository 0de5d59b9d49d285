"""Map every error to an HTTP response, in one place. Bodies are ``{"message": ...}``.

================================  ======  =================================================
exception                         status  body
================================  ======  =================================================
``pixql.errors.Error``            its     ``Error.to_dict()``: ``message``, ``error`` (class)
                                  ``http_status``  and details (``field``, ``paths``...)
``duckdb.Error``                  400     ``message``, ``error``
``RequestValidationError``        422     ``message`` naming the fields, FastAPI's ``detail``
``HTTPException`` (incl. 413)     its     ``message`` (= detail)
anything else                     500     ``{"message": "Internal error."}`` (logged)
================================  ======  =================================================
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
#: validation problems named in a 422 ``message`` (the ``detail`` list has them all)
MAX_NAMED_PROBLEMS = 5


def json_error(
    status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A JSON error response ``{"message": message, **extra}``."""
    return JSONResponse({"message": message, **extra}, status_code=status, headers=headers)


async def pixql_error(request: Request, exc: Exception) -> JSONResponse:
    """pixql's own errors carry their status and a JSON form."""
    assert isinstance(exc, Error)
    return JSONResponse(jsonable_encoder(exc.to_dict()), status_code=exc.http_status)


async def duckdb_error(request: Request, exc: Exception) -> JSONResponse:
    """DuckDB's errors (bad SQL, missing tables...) are the client's: 400."""
    return json_error(400, str(exc), error=type(exc).__name__)


#: pydantic names union members in error locations by their type; these are not fields
_PRIMITIVE_TAGS = frozenset({"str", "int", "float", "bool", "bytes", "list", "dict", "none"})


def _is_union_tag(part: str) -> bool:
    from pixql.server import schemas

    model = getattr(schemas, part, None)
    return (
        "[" in part
        or part in _PRIMITIVE_TAGS
        or (isinstance(model, type) and issubclass(model, schemas.BaseModel))
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
    return json_error(422, validation_message(errors), detail=detail)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette/FastAPI HTTP errors (404 route, 405, 413...) in the ``message`` shape."""
    assert isinstance(exc, HTTPException)
    return json_error(exc.status_code, str(exc.detail), headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler above on ``app`` (app.py adds :class:`InternalErrorMiddleware`)."""
    app.add_exception_handler(Error, pixql_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a core dependency
        pass
    else:
        app.add_exception_handler(duckdb.Error, duckdb_error)


class InternalErrorMiddleware:
    """Any other exception: log it once (with traceback) and answer 500 "Internal error."."""

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
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await json_error(500, INTERNAL_ERROR)(scope, receive, send)
