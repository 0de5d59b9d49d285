"""pixql: search images with SQL.

``import pixql`` is light: it imports neither torch nor fastapi. Heavy pieces load on first use.

Examples:
    >>> import pixql
    >>> db = pixql.connect("my-workspace")
    >>> db.sql("SELECT 42 AS answer").fetchall()
    [(42,)]
    >>> db.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pixql.errors import (
    CatalogError,
    Error,
    ImageError,
    ModelError,
    OptionError,
    ParseError,
    ProgrammingError,
)
from pixql.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    import os

    from pixql.client.http import Client
    from pixql.client.remote import RemoteWorkspace
    from pixql.workspace import Workspace

__all__ = [
    "CatalogError",
    "Client",
    "Error",
    "ImageError",
    "ModelError",
    "OptionError",
    "ParseError",
    "ProgrammingError",
    "Workspace",
    "__version__",
    "connect",
]


def connect(path: str | os.PathLike[str] | None = None,
            **kwargs: Any) -> Workspace | RemoteWorkspace:
    """Open (creating if missing) the workspace folder ``path`` — through its server when
    ``pixql serve`` serves it — or a server URL; see :func:`pixql.connection.connect`.

    ``path`` defaults to ``$PIXQL_WORKSPACE`` or ``./pixql-workspace``.
    """
    from pixql.connection import connect as _connect

    return _connect(path, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from pixql.workspace import Workspace

        return Workspace
    if name == "Client":
        from pixql.client.http import Client

        return Client
    if name in ("load_ipython_extension", "unload_ipython_extension"):
        from pixql.notebook import magic

        return getattr(magic, name)
    raise AttributeError(f"module 'pixql' has no attribute {name!r}")
