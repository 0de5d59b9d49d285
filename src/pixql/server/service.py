"""The embedding service of a server: cache, then micro-batching, then the model.

:class:`EmbeddingService` puts the :mod:`~pixql.server.cache` in front: cached rows are
returned without any work, repeated items of one request are computed once, and the rest
goes through the :class:`~pixql.server.batching.MicroBatcher` of its (model, modality) —
or straight through ``Embedder.embed`` with ``batching`` off, or for a model whose forward
gains nothing from batches (``Embedder.batches``).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
from pydantic import BaseModel, Field

from pixql.models.base import Embedder
from pixql.server.batching import BatcherClosed, BatcherStats, MicroBatcher, gather
from pixql.server.cache import CacheKey, CacheStats, EmbeddingCache
from pixql.server.settings import ServerSettings


class ServiceStats(BaseModel):
    """``GET /stats``: micro-batching and embedding-cache counters since start-up."""

    batching: bool
    max_batch: int
    batch_wait_ms: float
    torch_threads: int | None = Field(description="intra-op threads of the batch workers")
    batchers: list[BatcherStats]
    cache: CacheStats


# ---------------------------------------------------------------------- torch threads
def resolve_torch_threads(setting: int | None) -> int:
    """``torch_threads``, or by default every usable core but one (at least 1).

    Forwards are serialised per model, so one OpenMP team of this size runs at a time. One
    core is left to the request threads (HTTP, decoding, preprocessing, JSON): an OpenMP
    team stalls whenever one of its threads is descheduled, and on a busy 2-core machine a
    2-thread forward was measured 6-10x slower than a 1-thread one
    (docs/performance-server.md).
    """
    if setting:
        return int(setting)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _set_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads *for the calling thread* (if torch is loaded)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def model_key(embedder: Embedder) -> str:
    """``<model_id>@<weights source>``: what cache and batchers are keyed by."""
    return f"{getattr(embedder, 'model_id', '') or type(embedder).__name__}@" \
           f"{getattr(embedder, 'source', '')}"


def forward_rows(embedder: Embedder, modality: str, items: list[Any]) -> np.ndarray:
    """Raw (not normalised) float32 rows of preprocessed ``items``."""
    return embedder.postprocess(embedder.forward(items, modality), normalize=False)


# ---------------------------------------------------------------------- the service
class EmbeddingService:
    """Cache + micro-batchers of one server (``ClipModels.service``).

    Args:
        settings: ``batching``, ``max_batch``, ``batch_wait_ms``, ``torch_threads`` and
            ``embedding_cache_size``.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.cache = EmbeddingCache(settings.embedding_cache_size)
        self.torch_threads = resolve_torch_threads(settings.torch_threads)
        self._batchers: dict[tuple[str, str], tuple[Embedder, MicroBatcher]] = {}
        self._model_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._closed = False
        #: the app's metrics (``pixql.server.metrics.Metrics``), when it has them
        self.metrics: Any = None

    def embed(self, embedder: Embedder, digests: Sequence[str | None], modality: str,
              load: Callable[[list[int]], list[Any]]) -> np.ndarray:
        """Raw float32 rows of ``len(digests)`` items, in order.

        Args:
            embedder: the model.
            digests: per item, its content hash (None: not cacheable).
            modality: ``"image"`` or ``"text"``.
            load: indices → the raw items (PIL images, texts) to preprocess; called once,
                with the items that are neither cached nor repeats, in the request thread.
        """
        key = model_key(embedder)
        if self.metrics is not None:
            self.metrics.embedded(key, modality, len(digests))
        keys: list[CacheKey | None] = [
            (key, modality, d) if d is not None and self.cache.enabled else None
            for d in digests
        ]
        rows: list[np.ndarray | None] = (
            self.cache.get_many(keys) if self.cache.enabled else [None] * len(keys)
        )
        todo: dict[Any, list[int]] = {}
        for i, (k, row) in enumerate(zip(keys, rows, strict=True)):
            if row is None:
                todo.setdefault(k if k is not None else ("item", i), []).append(i)
        if todo:
            firsts = [group[0] for group in todo.values()]
            computed = self._compute(embedder, key, modality, lambda: load(firsts))
            for group, row in zip(todo.values(), computed, strict=True):
                for i in group:
                    rows[i] = row
            self.cache.put_many((keys[f], computed[j]) for j, f in enumerate(firsts))
        return np.stack(cast("list[np.ndarray]", rows)).astype(np.float32, copy=False)

    def _compute(self, embedder: Embedder, key: str, modality: str,
                 load: Callable[[], list[Any]]) -> np.ndarray:
        batcher = self._batcher(embedder, key, modality) \
            if self.settings.batching and _batches(embedder, modality) else None
        if batcher is None:
            return embedder.embed(load(), modality, normalize=False)
        with batcher.incoming() as ticket:
            prepared = [embedder.preprocess(item, modality) for item in load()]
            try:
                futures = ticket.submit(prepared)
            except BatcherClosed:
                return forward_rows(embedder, modality, prepared)
        return gather(futures)

    def _batcher(self, embedder: Embedder, key: str, modality: str) -> MicroBatcher | None:
        """The batcher of (model, modality), started on first use (None once closed)."""
        with self._lock:
            if self._closed:
                return None
            owner, batcher = self._batchers.get((key, modality), (None, None))
            if batcher is not None and owner is embedder:
                return batcher
            if batcher is not None:  # the model was reloaded: retire the old worker
                batcher.close(timeout=0)
            batcher = MicroBatcher(
                lambda items: forward_rows(embedder, modality, items),
                max_batch=self.settings.max_batch,
                wait_s=self.settings.batch_wait_ms / 1000.0,
                lock=self._model_locks.setdefault(key, threading.Lock()),
                on_start=lambda: _set_torch_threads(self.torch_threads),
                name=f"pixql-batch-{key.split('@', 1)[0]}-{modality}",
                on_batch=lambda size: self._observe_batch(key, modality, size),
            )
            self._batchers[(key, modality)] = (embedder, batcher)
            return batcher

    def _observe_batch(self, key: str, modality: str, size: int) -> None:
        if self.metrics is not None:
            self.metrics.batch(key, modality, size)

    def batchers(self) -> list[tuple[str, str, MicroBatcher]]:
        """``(model key, modality, batcher)`` of every running batcher."""
        with self._lock:
            return [(k, m, b) for (k, m), (_, b) in self._batchers.items()]

    # ------------------------------------------------------------------ lifecycle
    def drop_model(self, model_id: str) -> None:
        """Stop the batchers of ``model_id`` and forget its cached embeddings."""
        with self._lock:
            doomed = [k for k in self._batchers if k[0].split("@", 1)[0] == model_id]
            batchers = [self._batchers.pop(k)[1] for k in doomed]
        for batcher in batchers:
            batcher.close(timeout=0)
        self.cache.drop_model(model_id)

    def clear(self) -> None:
        """Stop every batcher and empty the cache (models unloaded)."""
        with self._lock:
            batchers = [b for _, b in self._batchers.values()]
            self._batchers.clear()
        for batcher in batchers:
            batcher.close(timeout=0)
        self.cache.clear()

    def close(self, timeout: float = 30.0) -> None:
        """Shutdown: finish queued work, stop the workers; later calls run unbatched."""
        with self._lock:
            self._closed = True
            batchers = [b for _, b in self._batchers.values()]
            self._batchers.clear()
        for batcher in batchers:
            batcher.close(timeout=timeout)

    def stats(self) -> ServiceStats:
        """Counters of every batcher and of the cache."""
        with self._lock:
            entries = [(k, b) for k, (_, b) in self._batchers.items()]
        return ServiceStats(
            batching=self.settings.batching, max_batch=self.settings.max_batch,
            batch_wait_ms=self.settings.batch_wait_ms,
            torch_threads=self.torch_threads if self.settings.batching else None,
            batchers=[_batcher_stats(key, modality, b) for (key, modality), b in entries],
            cache=self.cache.stats(),
        )


def _batches(embedder: Embedder, modality: str) -> bool:
    """Whether micro-batching helps ``embedder`` (a row-by-row forward gains nothing from
    it, and queueing behind one forward lock would only serialise the requests)."""
    batches = getattr(embedder, "batches", None)
    return bool(batches(modality)) if batches is not None else True


def _batcher_stats(key: str, modality: str, b: MicroBatcher) -> BatcherStats:
    return BatcherStats(
        model=key, modality=modality, requests=b.requests, items=b.items,
        forwards=b.forwards, failed_forwards=b.failed_forwards,
        largest_batch=b.largest_batch,
        mean_batch=b.items / max(1, b.forwards - b.failed_forwards),
    )
