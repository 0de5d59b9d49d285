"""Who computes CONVERT's vectors: the compute engine seam.

CONVERT's data path (:mod:`pixql.execution.incremental`: the work list of missing and stale
rows, chunks committed with their provenance by this process, ``on_error``) is the same
whatever the engine; an engine only turns a chunk of source values into an
:class:`~pixql.execution.embedding.Embedded` (vectors, validity, reasons), raising
ImageError for bad values when ``on_error='fail'``. Engines are registered by name in
:data:`ENGINES` (module path, imported on first use: Ray is imported only when asked for):

========= ===============================================================================
``local`` this process: decoding threads and the model (the default)
``ray``   a pool of Ray actors, on this machine or a cluster (``pixql[ray]``,
          :mod:`pixql.execution.raydata`; docs/scale-out.md)
========= ===============================================================================

The engine of a statement is ``OPTIONS (engine=...)``, else the workspace's default
(``pixql.connect(..., engine=...)``), else ``$PIXQL_ENGINE``, else ``local``; the same
chain gives ``ray_address`` (``$PIXQL_RAY_ADDRESS``).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, Protocol

from pixql.errors import OptionError
from pixql.execution.embedding import embed_values

if TYPE_CHECKING:
    from pixql.catalog.store import ModelRecord
    from pixql.execution.context import ExecContext
    from pixql.execution.embedding import Embedded
    from pixql.execution.options import ConvertOptions
    from pixql.models.base import Embedder

#: engine name → "module:factory" (factory(ctx, rec, embedder, opts, progress) -> engine)
ENGINES: dict[str, str] = {
    "local": "pixql.execution.compute:LocalEngine",
    "ray": "pixql.execution.raydata.engine:RayEngine",
}
#: the environment variables behind the workspace defaults
ENV = {"engine": "PIXQL_ENGINE", "ray_address": "PIXQL_RAY_ADDRESS"}


class ComputeEngine(Protocol):
    """Turns chunks of source values into vectors (see the module docstring)."""

    name: str

    def embed(self, values: list[Any]) -> Embedded:
        """Vectors of ``values`` in order; ImageError for bad ones under on_error='fail'."""

    def close(self) -> None:
        """Release what the engine holds (its workers); the statement is over."""


class LocalEngine:
    """This process computes: :func:`~pixql.execution.embedding.embed_values`."""

    name = "local"

    def __init__(self, ctx: ExecContext, rec: ModelRecord, embedder: Embedder,
                 opts: ConvertOptions, progress: bool = False) -> None:
        self.ctx, self.rec, self.embedder, self.opts = ctx, rec, embedder, opts
        self.progress = progress

    def embed(self, values: list[Any]) -> Embedded:
        o = self.opts
        return embed_values(self.embedder, values, modality=o.convert_type,
                            resolve=self.ctx.ws.resolve, batch_size=o.batch_size,
                            workers=o.workers, on_error=o.on_error, progress=self.progress,
                            desc=f"CONVERT {self.rec.name}", urls=self.ctx.ws.urls)

    def close(self) -> None:
        return None


def default_setting(ctx: ExecContext, key: str) -> str | None:
    """The workspace's default for ``key`` (``engine``, ``ray_address``), else its
    environment variable's value (None when neither is set)."""
    value = (getattr(ctx.ws, "compute_defaults", None) or {}).get(key)
    return value if value else (os.environ.get(ENV[key]) or None)


def with_defaults(ctx: ExecContext, opts: ConvertOptions) -> ConvertOptions:
    """``opts`` with ``engine`` and ``ray_address`` filled from the defaults chain."""
    engine = opts.engine or default_setting(ctx, "engine") or "local"
    if engine not in ENGINES:
        raise OptionError(f"engine {engine!r} (from ${ENV['engine']} or the workspace's "
                          f"default) is not known; engines: {', '.join(ENGINES)}",
                          option="engine", allowed=list(ENGINES))
    address = opts.ray_address or default_setting(ctx, "ray_address")
    return opts.model_copy(update={"engine": engine, "ray_address": address})


def open_engine(ctx: ExecContext, rec: ModelRecord, embedder: Embedder,
                opts: ConvertOptions, *, progress: bool = False) -> ComputeEngine:
    """The engine ``opts.engine`` names (see :func:`with_defaults`), ready to embed;
    ``progress``: each call of ``embed`` draws its own progress bar (where it can)."""
    module, _, factory = ENGINES[opts.engine or "local"].partition(":")
    engine: ComputeEngine = getattr(importlib.import_module(module), factory)(
        ctx, rec, embedder, opts, progress)
    return engine
