"""Rebuild, on the client, the exception the server's engine raised.

``POST /sql`` answers a failed statement with ``{"message", "error": CLASS, ...details}``
(``line``/``col`` of a syntax error, ``option``, ``paths``...). :func:`rebuild` turns that
back into the same pixql exception type (``ParseError``, ``OptionError``, ``NotFoundError``...)
or DuckDB exception type (``CatalogException``, ``BinderException``...) with the same
``str()``, so code and people see what the embedded engine would have raised.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pixql.errors as errors

if TYPE_CHECKING:
    from collections.abc import Callable

    from pixql.client.http import ClientError


class RemoteError(errors.Error):
    """Talking to a pixql server failed (unreachable, refused, or an answer pixql cannot map
    to an engine error). ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None = None, **details: Any) -> None:
        self.status = status
        super().__init__(message, status=status, **details)


class ServedWorkspaceError(RemoteError):
    """The workspace is served by a pixql server that clients cannot use for SQL (SQL over
    HTTP is off, or it needs an API key the client does not have)."""


_POSITION = re.compile(r"^line (\d+), column (\d+): ")


def _pixql_classes() -> dict[str, type[errors.Error]]:
    """Every pixql error class, by name."""
    out: dict[str, type[errors.Error]] = {}
    todo: list[type[errors.Error]] = [errors.Error]
    while todo:
        cls = todo.pop()
        out.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    return out


def _parse_error(cls: type[Any], message: str, details: dict[str, Any]) -> BaseException:
    lines = message.split("\n")
    head = _POSITION.sub("", lines[0], count=1)
    source = lines[1][2:] if len(lines) > 2 else ""
    return cls(head, line=int(details.get("line") or 0), col=int(details.get("col") or 0),
               source_line=source, expected=details.get("expected"))


def _option_error(cls: type[Any], message: str, details: dict[str, Any]) -> BaseException:
    return cls(_POSITION.sub("", message, count=1), option=details.get("option"),
               allowed=details.get("allowed"), line=details.get("line"),
               col=details.get("col"))


def _image_error(cls: type[Any], message: str, details: dict[str, Any]) -> BaseException:
    return cls(message, paths=details.get("paths"))


def _input_error(cls: type[Any], message: str, details: dict[str, Any]) -> BaseException:
    return cls(message, field=details.get("field"), status=details.get("status") or 400)


#: pixql error classes whose constructor takes more than (message, **details)
BUILDERS: dict[str, Callable[[type[Any], str, dict[str, Any]], BaseException]] = {
    "ParseError": _parse_error,
    "OptionError": _option_error,
    "ImageError": _image_error,
    "InputError": _input_error,
}


def _duckdb_class(name: str) -> type[BaseException] | None:
    import duckdb

    cls = getattr(duckdb, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, duckdb.Error) else None


def rebuild(error: ClientError, server: str) -> BaseException:
    """The engine exception behind ``error`` (an HTTP error of ``server``, a description
    like ``'http://127.0.0.1:9001 (pid 42)'``), or a :class:`RemoteError` saying what
    went wrong and what to do."""
    name = error.error or ""
    details = {k: v for k, v in error.details.items() if k not in ("error", "message")}
    pixql_cls = _pixql_classes().get(name)
    if pixql_cls is not None:
        build = BUILDERS.get(name)
        if build is not None:
            return build(pixql_cls, error.message, details)
        return pixql_cls(error.message, **details)
    duck = _duckdb_class(name) if name else None
    if duck is not None:
        return duck(error.message)
    return _transport_error(error, server)


def _transport_error(error: ClientError, server: str) -> RemoteError:
    status = error.status_code
    if status is None:
        return RemoteError(f"cannot reach the pixql server {server}: {error.message}. Is it "
                           f"still running? Restart it with pixql -w DIR serve --enable-sql.")
    if status == 401:
        return ServedWorkspaceError(
            f"the pixql server {server} needs an API key: pass api_key=KEY to "
            f"pixql.connect, --api-key KEY to the pixql command, or set PIXQL_API_KEY",
            status=401)
    if status == 404 and "/sql" in error.message:
        return ServedWorkspaceError(
            f"the pixql server {server} does not allow SQL over HTTP. Restart it with "
            f"--enable-sql (or with --api-key KEY, which enables it too)", status=404)
    return RemoteError(f"the pixql server {server} answered HTTP {status}: {error.message}",
                       status=status, error=error.error)


__all__ = ["RemoteError", "ServedWorkspaceError", "rebuild"]
