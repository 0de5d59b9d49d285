"""What statement executors use of a workspace, as a :class:`typing.Protocol`.

``pixql.workspace`` sits *above* ``pixql.execution`` in the import layers (a workspace runs
its statements through :func:`pixql.execution.engine.execute_statement`), so executors must
not import :class:`pixql.workspace.Workspace`. They type their workspace with
:class:`WorkspaceAPI` instead, which ``Workspace`` satisfies structurally (mypy checks it
where ``Workspace`` calls the engine). An executor that needs more of the workspace adds
the member here first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import os
    from contextlib import AbstractContextManager
    from pathlib import Path

    import duckdb

    from pixql.catalog.artifacts import ArtifactStore
    from pixql.catalog.store import ModelRecord
    from pixql.models.base import Embedder
    from pixql.remote.sources import UrlReader


class WorkspaceAPI(Protocol):
    """The members of :class:`pixql.workspace.Workspace` that executors use."""

    @property
    def root(self) -> Path:
        """The workspace folder (absolute)."""

    @property
    def progress(self) -> bool:
        """Whether long statements draw progress bars."""

    @property
    def urls(self) -> UrlReader:
        """Reads URL values (http(s), s3, gs) under the workspace's URL settings."""

    @property
    def write_lock(self) -> AbstractContextManager[Any]:
        """Held while a statement writes tables, the catalog or model folders."""

    @property
    def artifacts(self) -> ArtifactStore:
        """The models' artifact folders."""

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """The calling thread's DuckDB cursor."""

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """A path as stored in a table, made absolute (and checked when confined)."""

    def relativize(self, path: str | os.PathLike[str]) -> str:
        """Workspace-relative when ``path`` lies inside the workspace, else absolute."""

    def load_embedder(self, name: str, rec: ModelRecord | None = None) -> Embedder:
        """The embedder of model ``name`` at its current version (cached)."""

    def forget_embedder(self, name: str) -> None:
        """Drop the cached embedder of model ``name``."""

    def invalidate_vectors(self, table: str, column: str | None) -> None:
        """Tell the caches that an embedding column of ``table`` changed."""
