"""Who computes CONVERT's vectors: the compute engine seam.

CONVERT's data path (:mod:`pixql.execution.incremental`: the work list of missing and stale
rows, chunks committed with their provenance by this process, ``on_error``) is the same
whatever the engine; an engine only turns the statement's stream of :class:`Chunk` s into
their :class:`~pixql.execution.embedding.Embedded` (vectors, validity, reasons), in order,
one chunk at a time (:meth:`ComputeEngine.stream`: the caller commits each chunk as soon as
it comes back), raising ImageError for bad values when ``on_error='fail'`` (the values of
the first bad batch of ``batch_size``, as a local CONVERT counts them). Engines are
registered by name in :data:`ENGINES` (module path, imported on first use: Ray is imported
only when asked for):

========= ===============================================================================
``local`` this process: decoding threads and the model (the default)
``ray``   a pool of Ray actors, on this machine or a cluster (``pixql[ray]``,
          :mod:`pixql.execution.raydata`; docs/scale-out.md)
========= ===============================================================================

The engine of a statement is ``OPTIONS (engine=...)``, else the workspace's default
(``pixql.connect(..., engine=...)``), else ``$PIXQL_ENGINE``, else ``local``; the same
chain gives ``ray_address`` (``$PIXQL_RAY_ADDRESS``). BUILD MODEL follows the same chain
for the kinds that train on Ray (their options have ``engine``: SimCLR); the others
(Pixels, CLIP: nothing to train) build in this process under any default engine.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pixql.errors import OptionError
from pixql.execution.embedding import embed_values

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    from pydantic import BaseModel

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
#: options models carrying ``engine`` (ConvertOptions, a kind's BUILD options)
OptionsT = TypeVar("OptionsT", bound="BaseModel")
#: the environment variables behind the workspace defaults
ENV = {"engine": "PIXQL_ENGINE", "ray_address": "PIXQL_RAY_ADDRESS"}


@dataclass
class Chunk:
    """One chunk of a CONVERT: its distinct source values (``keys``), the rows holding
    each, and (files) each file's (size, mtime) read before it was sent to be embedded."""

    keys: list[Any]
    counts: list[int]
    sigs: list[tuple[int, int]] | None = None


class ComputeEngine(Protocol):
    """Turns chunks of source values into vectors (see the module docstring)."""

    name: str

    def embed(self, values: list[Any]) -> Embedded:
        """Vectors of ``values`` in order; ImageError for bad ones under on_error='fail'."""

    def stream(self, chunks: Iterable[Chunk]) -> Generator[tuple[Chunk, Embedded], None, None]:
        """Each chunk with its vectors, in the order given, as soon as the chunk is done
        (an engine may read ``chunks`` ahead, e.g. all of it, before the first comes back);
        closing the generator stops the work still in flight."""

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

    def stream(self, chunks: Iterable[Chunk]) -> Generator[tuple[Chunk, Embedded], None, None]:
        for chunk in chunks:  # lazily: the next chunk is read after this one is committed
            yield chunk, self.embed(chunk.keys)

    def close(self) -> None:
        return None


def default_setting(ctx: ExecContext, key: str) -> str | None:
    """The workspace's default for ``key`` (``engine``, ``ray_address``), else its
    environment variable's value (None when neither is set)."""
    value = (getattr(ctx.ws, "compute_defaults", None) or {}).get(key)
    return value if value else (os.environ.get(ENV[key]) or None)


def with_defaults(ctx: ExecContext, opts: OptionsT) -> OptionsT:
    """``opts`` with ``engine`` and ``ray_address`` filled from the defaults chain (for
    CONVERT, and for BUILD of the kinds whose options have an ``engine``: those training
    on Ray; the others build in this process whatever the default engine)."""
    engine = getattr(opts, "engine", None) or default_setting(ctx, "engine") or "local"
    if engine not in ENGINES:
        raise OptionError(f"engine {engine!r} (from ${ENV['engine']} or the workspace's "
                          f"default) is not known; engines: {', '.join(ENGINES)}",
                          option="engine", allowed=list(ENGINES))
    address = getattr(opts, "ray_address", None) or default_setting(ctx, "ray_address")
    update = {"engine": engine, "ray_address": address}
    return opts.model_copy(update={k: v for k, v in update.items()
                                   if k in type(opts).model_fields})


def open_engine(ctx: ExecContext, rec: ModelRecord, embedder: Embedder,
                opts: ConvertOptions, *, progress: bool = False) -> ComputeEngine:
    """The engine ``opts.engine`` names (see :func:`with_defaults`), ready to embed;
    ``progress``: each call of ``embed`` draws its own progress bar (where it can)."""
    module, _, factory = ENGINES[opts.engine or "local"].partition(":")
    engine: ComputeEngine = getattr(importlib.import_module(module), factory)(
        ctx, rec, embedder, opts, progress)
    return engine
