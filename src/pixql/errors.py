"""pixql's exception hierarchy (PEP 249 shaped).

Every error pixql raises on purpose derives from :class:`Error`. Each class carries an
``http_status`` so the server maps errors to HTTP in one place. DuckDB's own exceptions
are not wrapped: they pass through unchanged (the server maps ``duckdb.Error`` to 400).
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar


class Error(Exception):
    """Base class of every pixql error."""

    http_status: ClassVar[int] = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form used by the server and the HTTP client."""
        out: dict[str, Any] = {"message": str(self), "error": type(self).__name__}
        out.update({k: v for k, v in self.details.items() if v is not None})
        return out


class ProgrammingError(Error):
    """The statement itself is wrong: syntax, options, names."""


class ParseError(ProgrammingError):
    """A syntax error at a line and column of the script.

    ``str()`` renders the message, the offending line and a caret under the column.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int,
        col: int,
        source_line: str = "",
        expected: list[str] | None = None,
    ) -> None:
        self.line = line
        self.col = col
        self.source_line = source_line
        self.expected = list(expected or [])
        super().__init__(message, line=line, col=col, expected=self.expected or None)

    def __str__(self) -> str:
        head = f"line {self.line}, column {self.col}: {self.message}"
        if not self.source_line:
            return head
        caret = " " * (self.col - 1) + "^"
        return f"{head}\n  {self.source_line}\n  {caret}"


class OptionError(ProgrammingError):
    """An unknown option, a value of the wrong type, or a value out of range."""

    def __init__(
        self,
        message: str,
        *,
        option: str | None = None,
        allowed: list[str] | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        self.option = option
        self.allowed = allowed
        self.line = line
        self.col = col
        super().__init__(message, option=option, allowed=allowed, line=line, col=col)

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.col}: " if self.line else ""
        return where + self.message


class CatalogError(ProgrammingError):
    """An unknown or duplicate model, table or column."""


class NotFoundError(CatalogError):
    """A named model, table or column does not exist."""

    http_status = 404


class ConflictError(CatalogError):
    """A name is already taken (e.g. BUILD without ``overwrite=True``)."""

    http_status = 409


class ModelError(Error):
    """A model cannot do what was asked, or its weights cannot be loaded."""


class WeightsNotFoundError(ModelError):
    """Model weights are not on disk (and cannot be downloaded)."""

    http_status = 404


class ImageError(Error):
    """One or more images are missing, unreadable or too large."""

    def __init__(self, message: str, *, paths: list[str] | None = None) -> None:
        self.paths = list(paths or [])
        super().__init__(message, paths=self.paths or None)


class InputError(Error):
    """A bad request value outside SQL (HTTP field, URL, payload size)."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        self.field = field
        self.http_status = status  # type: ignore[misc]
        super().__init__(message, field=field)


class AccessError(Error):
    """A path outside the workspace (and outside the allowed folders) in confined mode."""

    http_status = 403


class AuthError(Error):
    """Missing or invalid API key."""

    http_status = 401


class ExecutionError(Error):
    """A statement failed while running (nothing was changed)."""

    http_status = 500


class MissingDependencyError(Error, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    http_status = 501


#: errno values, and texts of DuckDB's messages, that mean the disk (or the quota) is full
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


class DiskFullError(Error):
    """Saving failed because the disk (or the user's quota) is full; nothing was changed.

    Examples:
        >>> import errno, os
        >>> e = DiskFullError.from_exception(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        ...                                  "ws")
        >>> print(e)  # doctest: +ELLIPSIS
        the disk holding ws is full (No space left on device); nothing was changed. Free ...
    """

    http_status = 507

    @classmethod
    def from_exception(cls, exc: BaseException, where: object) -> DiskFullError | None:
        """A DiskFullError for ``exc`` if it says the disk is full (an ``OSError`` with
        ENOSPC/EDQUOT, or DuckDB's message), naming ``where`` it was writing; else None."""
        errno_ = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
        text = getattr(exc, "strerror", None) or str(exc)
        if errno_ not in DISK_FULL_ERRNOS and not any(t in str(exc) for t in DISK_FULL_TEXTS):
            return None
        return cls(f"the disk holding {where} is full ({text}); nothing was changed. Free "
                   f"some space there (or raise the quota), or use a workspace on another "
                   f"disk (-w DIR), then run the statement again", where=str(where))
