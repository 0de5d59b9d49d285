"""A workspace: a folder with ``pixql.duckdb`` (tables + catalog) and ``models/``."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from pixql.catalog.artifacts import ArtifactStore, read_config, repair
from pixql.catalog.store import Catalog, ModelRecord, ensure_schema
from pixql.errors import AccessError, ModelError, ProgrammingError
from pixql.execution.engine import execute_statement
from pixql.execution.result import Result
from pixql.execution.vectors import VectorCache
from pixql.models.registry import get_kind
from pixql.remote.sources import UrlReader, UrlSettings
from pixql.sql import parse_script

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pixql.models.base import Embedder

DB_FILE = "pixql.duckdb"
#: longest file name and path (bytes) the OS takes (Linux, macOS): longer is ENAMETOOLONG
NAME_MAX, PATH_MAX = 255, 4096
DEFAULT_DIR = "pixql-workspace"


class Workspace:
    """An open workspace. Thread-safe: each thread gets its own DuckDB cursor.

    Examples:
        >>> db = Workspace("ws", progress=False)
        >>> _ = db.sql("CREATE TABLE t AS SELECT 7 AS n")
        >>> db.sql("SELECT n * 6 FROM t").fetchone()
        (42,)
        >>> db.close()
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 progress: bool = True, read_only: bool = False, confined: bool = False,
                 allowed_dirs: Sequence[str | os.PathLike[str]] = (),
                 engine: str | None = None, ray_address: str | None = None,
                 url_settings: Mapping[str, Any] | UrlSettings | None = None) -> None:
        raw = path if path is not None else os.environ.get("PIXQL_WORKSPACE", DEFAULT_DIR)
        self.root = Path(raw).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        #: CONVERT's defaults for engine / ray_address (pixql.execution.compute)
        self.compute_defaults = {"engine": engine, "ray_address": ray_address}
        self.confined = confined
        #: reads URL values (pixql.remote.sources): $PIXQL_URL_* / PIXQL_S3_* / ..., then
        #: ``url_settings``
        self.urls = UrlReader(url_settings if isinstance(url_settings, UrlSettings)
                              else UrlSettings.from_env(**(url_settings or {})))
        self.allowed_dirs = [self.root] + [Path(d).expanduser().resolve() for d in allowed_dirs]
        self._con = duckdb.connect(str(self.root / DB_FILE), read_only=read_only)
        # DuckDB's readers (read_csv('x.csv'), ...) find relative paths in the workspace
        root_sql = str(self.root).replace("'", "''")
        self._con.execute(f"SET GLOBAL file_search_path = '{root_sql}'")
        self._con.execute("SET enable_progress_bar = false")  # pixql draws its own
        if confined:
            self._confine()
        self._local = threading.local()
        self.write_lock = threading.RLock()
        self._embedders: dict[str, tuple[int, Embedder]] = {}
        self._embedder_lock = threading.Lock()
        self.artifacts = ArtifactStore(self.root / "models")
        # SEARCH's cache of embedding columns
        self._vector_cache = VectorCache(self.root / DB_FILE, index_root=self.root / "indexes")
        if not read_only:
            ensure_schema(self._con)
        self.repaired = [] if read_only else repair(
            self.artifacts, Catalog(self._con).artifact_paths(), self.root)

    def _confine(self) -> None:
        """Confine DuckDB's file access to the allowed folders; no extension install or load;
        the configuration is locked so SQL cannot undo it (used by the server)."""
        dirs = ", ".join("'" + (str(d) + os.sep).replace("'", "''") + "'"
                         for d in self.allowed_dirs)
        for stmt in (f"SET allowed_directories = [{dirs}]",
                     "SET autoinstall_known_extensions = false",
                     "SET autoload_known_extensions = false",
                     "SET allow_community_extensions = false",
                     "SET enable_external_access = false",
                     "SET lock_configuration = true"):
            self._con.execute(stmt)

    # -- connections ----------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """The calling thread's cursor (created on first use)."""
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
        return cur

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.cursor())

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- SQL ------------------------------------------------------------------------------
    def execute(self, script: str) -> list[Result]:
        """Parse the whole script (a syntax error anywhere runs nothing), then run each
        statement in order; returns one Result per statement."""
        return [execute_statement(self, node) for node in parse_script(script)]

    def sql(self, script: str) -> Result:
        """Run a script of ``;``-separated statements; return the last statement's result."""
        results = self.execute(script)
        return results[-1] if results else Result(message="no statement")

    # -- paths ----------------------------------------------------------------------------
    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """A path as stored in a table: relative paths are relative to the workspace root."""
        if "\x00" in os.fspath(path):  # the OS cannot take it (os.path.realpath: ValueError)
            raise ProgrammingError(f"path {os.fspath(path)!r} contains a NUL character")
        try:
            p = Path(path).expanduser()
        except RuntimeError as e:  # '~nosuchuser/...'
            raise ProgrammingError(f"path {os.fspath(path)!r}: {e}") from None
        if len(os.fsencode(p)) >= PATH_MAX or any(len(os.fsencode(x)) > NAME_MAX
                                                   for x in p.parts):
            raise ProgrammingError(f"path {os.fspath(path)[:80]!r}... is too long: at most "
                                   f"{NAME_MAX} bytes a name, {PATH_MAX - 1} in all")
        p = p if p.is_absolute() else self.root / p
        if self.confined:
            real = Path(os.path.realpath(p))
            if not any(real == d or d in real.parents for d in self.allowed_dirs):
                raise AccessError(f"path {str(path)!r} is outside the workspace; only paths "
                                  f"inside {', '.join(map(str, self.allowed_dirs))} are allowed")
        return p

    def relativize(self, path: str | os.PathLike[str]) -> str:
        """Workspace-relative when ``path`` lies inside the workspace, else absolute."""
        p = Path(os.path.abspath(self.resolve(path)))
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return str(p)

    # -- models ---------------------------------------------------------------------------
    def load_embedder(self, name: str, rec: ModelRecord | None = None) -> Embedder:
        """The embedder of model ``name`` at its current version (loaded once, cached);
        ``rec``, the model's catalog row when the caller has just read it, saves a lookup."""
        if rec is None or rec.name != name.lower():
            rec = self.catalog.get_model(name)
        with self._embedder_lock:
            cached = self._embedders.get(rec.name)
            if cached is not None and cached[0] == rec.version:
                return cached[1]
            folder = self.root / rec.artifact_path
            if not folder.is_dir():
                raise ModelError(f"artifacts of model {rec.name!r} are missing: {folder} "
                                 f"does not exist; rebuild it with BUILD MODEL ... overwrite=True")
            try:
                config = read_config(folder)
            except (OSError, ValueError) as e:
                raise ModelError(f"model {rec.name!r}: cannot read {folder}/config.json "
                                 f"({e})") from e
            embedder = get_kind(rec.kind).load(folder, config)
            self._embedders[rec.name] = (rec.version, embedder)
            return embedder

    def forget_embedder(self, name: str) -> None:
        with self._embedder_lock:
            self._embedders.pop(name.lower(), None)

    def invalidate_vectors(self, table: str, column: str | None) -> None:
        """Hook called when an embedding column changes (caches drop their copies)."""
        cache = getattr(self, "_vector_cache", None)
        if cache is not None:
            cache.invalidate(table, column)
