"""``pixql.connect``: the one place that picks the embedded engine or a pixql server.

DuckDB lets one process write a database file. When ``pixql serve -w DIR`` serves a
workspace, that process *is* the engine, and it says so in ``DIR/.pixql/server.json``
(:mod:`pixql.client.record`). ``connect(DIR)`` reads that record: while the server is alive
it returns a :class:`~pixql.client.remote.RemoteWorkspace` that runs statements there; with
no live server it opens the folder itself (a :class:`~pixql.workspace.Workspace`). A URL
(``connect("http://host:port")``) always goes to that server.

The CLI (``pixql sql``, ``pixql shell``) and the notebook magic (``%pixql -w DIR``) open
workspaces through here, so they share a served workspace the same way. DuckDB's raw "Could
not set lock on file" error never reaches the user: it becomes a
:class:`WorkspaceLockedError` saying who holds the file and what to do.

Examples:
    >>> import pixql
    >>> db = pixql.connect("ws")                                  # doctest: +SKIP
    >>> db = pixql.connect("http://127.0.0.1:9001", api_key="k")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixql.client.errors import ServedWorkspaceError
from pixql.errors import Error

if TYPE_CHECKING:
    from typing import TypeAlias

    from pixql.client.record import ServerRecord
    from pixql.client.remote import RemoteWorkspace
    from pixql.workspace import Workspace

    #: what connect() returns: the embedded engine, or a served workspace
    AnyWorkspace: TypeAlias = "Workspace | RemoteWorkspace"

URL_SCHEMES = ("http://", "https://")
_LOCK_HOLDER = re.compile(r"PID (\d+)")


class WorkspaceLockedError(Error):
    """Another process holds the workspace's database file, and it is not a pixql server
    this process can reach."""

    http_status = 409


def workspace_root(path: str | os.PathLike[str] | None) -> Path:
    """The folder ``connect(path)`` opens: ``path``, else ``$PIXQL_WORKSPACE``, else
    ``./pixql-workspace`` (absolute, symlinks resolved)."""
    from pixql.workspace import DEFAULT_DIR

    raw = path if path is not None else os.environ.get("PIXQL_WORKSPACE", DEFAULT_DIR)
    return Path(raw).expanduser().resolve()


def is_url(path: object) -> bool:
    return isinstance(path, str) and path.lower().startswith(URL_SCHEMES)


def connect(path: str | os.PathLike[str] | None = None, *, api_key: str | None = None,
            **kwargs: Any) -> Workspace | RemoteWorkspace:
    """Open the workspace ``path`` — through its server when ``pixql serve`` serves it.

    Args:
        path: a workspace folder (created if missing; default ``$PIXQL_WORKSPACE`` or
            ``./pixql-workspace``), or a server URL ``http://host:port``.
        api_key: the server's API key, when it needs one (default ``$PIXQL_API_KEY``).
        kwargs: options of a local :class:`~pixql.workspace.Workspace` (``progress``,
            ``read_only``, ``confined``, ``allowed_dirs``); a served workspace ignores them.

    Raises:
        ServedWorkspaceError: the workspace is served by a server that does not allow SQL.
        WorkspaceLockedError: another process (not a pixql server) holds the database.
    """
    if is_url(path):
        from pixql.client.remote import RemoteWorkspace

        return RemoteWorkspace(str(path), api_key)
    root = workspace_root(path)
    record = _live(root)
    if record is not None:
        return remote(record, root, api_key)
    return open_local(root, api_key=api_key, **kwargs)


def _live(root: Path) -> ServerRecord | None:
    from pixql.client.record import live_record

    return live_record(root) if root.is_dir() else None


def remote(record: ServerRecord, root: Path, api_key: str | None) -> RemoteWorkspace:
    """A client of the server in ``record``, or a clear error when it cannot run SQL."""
    from pixql.client.remote import RemoteWorkspace

    key = api_key if api_key is not None else os.environ.get("PIXQL_API_KEY")
    if not record.sql:
        raise ServedWorkspaceError(
            f"workspace {root} is served by pixql at {record.describe()}, which holds its "
            f"database and does not allow SQL over HTTP. Restart that server with "
            f"'pixql -w {root} serve --enable-sql' (or with --api-key KEY), or stop it "
            f"(kill {record.pid}) to open the workspace directly.", status=None)
    if record.auth and not key:
        raise ServedWorkspaceError(
            f"workspace {root} is served by pixql at {record.describe()}, which needs an API "
            f"key: pass api_key=KEY to pixql.connect, --api-key KEY to the pixql command, "
            f"or set PIXQL_API_KEY.", status=401)
    return RemoteWorkspace(record.url, key, root=root, record=record)


def open_local(root: Path, *, api_key: str | None = None,
               **kwargs: Any) -> Workspace | RemoteWorkspace:
    """Open ``root`` in this process; a lock held by a pixql server that started meanwhile
    sends the caller to it, any other lock is a :class:`WorkspaceLockedError`."""
    try:
        return open_workspace(root, **kwargs)
    except ServedWorkspaceError:
        record = _live(root)
        if record is None:
            raise
        return remote(record, root, api_key)


def open_workspace(root: Path, **kwargs: Any) -> Workspace:
    """A local :class:`~pixql.workspace.Workspace` of ``root``, with DuckDB's lock error
    turned into :class:`ServedWorkspaceError` (a live pixql server holds it) or
    :class:`WorkspaceLockedError` (another process does)."""
    import duckdb

    from pixql.workspace import DB_FILE, Workspace

    try:
        return Workspace(root, **kwargs)
    except duckdb.IOException as e:
        if "Could not set lock" not in str(e):
            raise
        ensure_not_served(root)
        raise locked_error(root / DB_FILE, str(e)) from None


def locked_error(db_file: Path, raw: str) -> WorkspaceLockedError:
    """What to tell the user when another process holds ``db_file``."""
    found = _LOCK_HOLDER.search(raw)
    who = f"process {found.group(1)}" if found else "another process"
    return WorkspaceLockedError(
        f"workspace {db_file.parent} is in use: {who} holds its database {db_file} "
        f"(DuckDB lets one process open it for writing), and it is not a pixql server. "
        f"Close it there (db.close(), %pixql close, or quit that pixql shell), or share "
        f"the workspace by serving it: 'pixql -w {db_file.parent} serve --enable-sql' — "
        f"pixql.connect, the CLI and %pixql then go through that server.")


def ensure_not_served(root: Path) -> None:
    """Refuse to serve ``root`` twice (what ``pixql serve`` checks before opening it)."""
    record = _live(root)
    if record is not None:
        raise ServedWorkspaceError(
            f"workspace {root} is already served by pixql at {record.describe()}; use that "
            f"server, or stop it (kill {record.pid}) first.", status=None)


__all__ = [
    "WorkspaceLockedError",
    "connect",
    "ensure_not_served",
    "is_url",
    "open_local",
    "open_workspace",
    "remote",
    "workspace_root",
]
