"""Exact top-k over int8 codes: scan a compressed copy, re-rank a provably complete shortlist.

The fp32 unit rows stay the truth (a memory-mapped file beside the workspace's indexes, see
:mod:`pixql.index.vector_files`); SEARCH scans an 8-bit scalar-quantised copy, 4× fewer
bytes, and re-scores only a shortlist with the fp32 kernel, so its rows, order and scores
are those of the fp32 exact search, bit for bit.

**Codes.** Each dimension is mapped affinely onto [0, 1] (``x' = (x - lo) / span``, ``lo`` and
``span`` the column's per-dimension minimum and range) and coded with faiss's uniform 8-bit
codec (``QT_8bit_uniform``, SIMD decoding). A query ``q`` scores row ``i`` as
``D_i = Σ_j (q_j span_j) x̂'_ij``, which is ``q·x_i - q·lo`` up to the coding error (the
constant ``q·lo`` does not change the order).

**Why the shortlist is complete.** While coding, the largest decoding error of every
dimension, ``err_j = max_i |x'_ij - x̂'_ij|``, is *measured* (not assumed from the codec).
For a query, ``E = Σ_j |q_j| span_j err_j`` bounds ``|D_i - (q·x_i - q·lo)|`` for every row,
and ``Δ`` bounds float32 rounding (in faiss's sum, in the fp32 kernel, in the affine map;
``4 (d + 8) 2^-24`` times the sums of the absolute terms). The k rows with the best ``D``
all have fp32 scores ≥ ``D_k + q·lo - E - Δ``, so the k-th best fp32 score is at least that,
and every row that can be in the fp32 top k — ties included — has ``D_i ≥ D_k - 2(E + Δ)``.
The scan asks faiss for the best ``K`` codes and widens ``K`` (8× a round) until its K-th
``D`` falls below that threshold: then no row outside the shortlist can qualify. When the
shortlist would exceed :data:`MAX_SHORTLIST_SHARE` of the rows, the caller scans fp32
instead (same answer, no gain from the codes).

Rows are split in one shard per scoring thread (faiss scans a single query on one thread).
Building, saving and loading the codes: :mod:`pixql.index.compressed_build`.
"""

from __future__ import annotations

import contextlib
import mmap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pixql.index.exact import _pool, _threads, dense, dot_scores, rank

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: a WHERE clause keeping fewer than 1/this of the rows is scored in fp32 row by row
SMALL_SELECTION = 32
#: give up on the codes (the caller scans fp32) past this share of the rows
MAX_SHORTLIST_SHARE = 0.125
#: first shortlist asked for, per shard: top_k × this + :data:`SHORTLIST_EXTRA` (faiss's
#: scan costs about the same for 10 or a few thousand: the scan, not the heap, dominates)
SHORTLIST_FACTOR = 4
SHORTLIST_EXTRA = 2048
#: the shortlist grows this many times a round while it may be incomplete
WIDEN = 8
_U = 2.0**-24  # float32 unit roundoff


def _faiss() -> Any:
    import faiss

    return faiss


def available() -> bool:
    """Whether faiss (the ``ann`` extra) is installed: the codes need its codec."""
    try:
        _faiss()
    except ImportError:
        return False
    return True


def _params(allowed: np.ndarray | None, start: int, n: int) -> tuple[Any, int, Any]:
    """(faiss search parameters restricting a shard to ``allowed``, allowed rows in it, the
    bitmap the parameters point into: keep it alive while they are used)."""
    if allowed is None:
        return None, n, None
    faiss = _faiss()
    part = allowed[start : start + n]
    bits = np.packbits(part, bitorder="little")
    params = faiss.SearchParameters()
    params.sel = faiss.IDSelectorBitmap(len(part), faiss.swig_ptr(bits))
    return params, int(np.count_nonzero(part)), bits


@dataclass(eq=False)
class SQ8Codes:
    """A column's unit rows as 8-bit codes, in shards of consecutive cache positions."""

    lo: np.ndarray  # (d,) float32
    span: np.ndarray  # (d,) float32, > 0
    err: np.ndarray  # (d,) float32: measured max |x' - decoded x'| per dimension
    shards: list[Any]  # faiss IndexScalarQuantizer per shard (None: memory-mapped per scan)
    starts: list[int]  # first position of each shard
    sizes: list[int]  # rows of each shard
    files: list[Path] = field(default_factory=list)  # the shards' files, when saved
    stats: dict[str, int] = field(default_factory=dict)  # scans, widenings (for tests)

    @property
    def n(self) -> int:
        return int(sum(self.sizes))

    @property
    def mapped(self) -> bool:
        """Whether the shards are memory-mapped from their files for each scan (columns
        whose codes exceed ``PIXQL_CODES_MEMORY_MB``) instead of held in memory."""
        return any(s is None for s in self.shards)

    def shard(self, i: int) -> Any:
        """Shard ``i``'s index: held, or mapped from its file (unmapped when dropped)."""
        found = self.shards[i]
        if found is None:
            faiss = _faiss()
            found = faiss.read_index(str(self.files[i]), faiss.IO_FLAG_MMAP_IFC)
        return found

    @property
    def d(self) -> int:
        return int(self.lo.shape[0])

    @property
    def nbytes(self) -> int:
        return self.n * self.d

    def bound(self, q: np.ndarray) -> tuple[np.ndarray, float]:
        """(the query as searched against the codes, the half-width ``E + Δ`` of each code
        score's interval around ``fp32 score - q·lo``)."""
        q = np.asarray(q, np.float32)
        q2 = (q * self.span).astype(np.float32)
        aq = np.abs(q.astype(np.float64))
        e = float(aq @ (self.span.astype(np.float64) * self.err.astype(np.float64)))
        sums = 1.0 + float(np.abs(q2).sum()) * 1.01 + float(aq @ np.abs(self.lo)) + e
        delta = 4.0 * (self.d + 8) * _U * sums
        return q2, e + delta

    def top(self, q2: np.ndarray, k: int, allowed: np.ndarray | None
            ) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """Per shard: (code scores, positions, whether the shard returned all its allowed
        rows) of its best ``k`` rows among ``allowed`` (a mask over positions)."""
        self.stats["scans"] = self.stats.get("scans", 0) + 1

        def one(i: int) -> tuple[np.ndarray, np.ndarray, bool]:
            index, start = self.shard(i), self.starts[i]
            params, n_ok, _bits = _params(allowed, start, self.sizes[i])
            kk = min(k, n_ok)
            if kk == 0:
                return np.zeros(0, np.float32), np.zeros(0, np.int64), True
            dist, lab = index.search(q2.reshape(1, -1), kk, params=params)
            ok = lab[0] >= 0
            # a shard that could only return kk < k rows returned all its allowed rows
            return dist[0][ok], lab[0][ok] + start, kk < k

        return self._each(one)

    def _each(self, fn: Callable[[int], Any]) -> list[Any]:
        """``fn`` of every shard, in parallel threads (faiss releases the GIL)."""
        if len(self.shards) == 1 or (self.mapped and _threads() == 1):
            return [fn(i) for i in range(len(self.shards))]
        return list(_pool().map(fn, range(len(self.shards))))


def shortlist(codes: SQ8Codes, q: np.ndarray, k: int, allowed: np.ndarray | None,
              n_allowed: int) -> np.ndarray | None:
    """Positions (ascending) that surely hold every row of the fp32 top ``k`` among the
    ``allowed`` rows (ties included), or None when that would be more than
    :data:`MAX_SHORTLIST_SHARE` of them (scan fp32 instead).

    A scan for the best ``K`` codes per shard gives the k-th best code score, hence the
    threshold; while a shard's K-th score is still at or above it, rows beyond its K could
    qualify, and the scan is repeated with ``K`` × :data:`WIDEN`."""
    q2, half = codes.bound(q)
    want = min(n_allowed, k * SHORTLIST_FACTOR + SHORTLIST_EXTRA)
    limit = max(want, int(MAX_SHORTLIST_SHARE * n_allowed))
    while True:
        parts = codes.top(q2, want, allowed)
        dist = np.concatenate([p[0] for p in parts])
        pos = np.concatenate([p[1] for p in parts])
        if len(dist) < k:  # fewer allowed rows than k: all of them
            return np.sort(pos)
        kth = float(np.partition(dist, len(dist) - k)[len(dist) - k])
        threshold = kth - 2.0 * half
        # complete when every shard returned all its rows or stopped below the threshold
        if all(done or len(d) == 0 or float(d[-1]) < threshold for d, _, done in parts):
            return np.sort(pos[dist >= threshold])
        if want >= limit:
            return None
        codes.stats["widened"] = codes.stats.get("widened", 0) + 1
        want = min(limit, want * WIDEN)


def exact_top(codes: SQ8Codes, units: np.ndarray, q: np.ndarray, k: int,
              cand: np.ndarray | None, valid: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions, fp32 scores) of the exact top ``k`` among ``cand`` (None: every row of
    ``valid``; ``valid`` None: every row is), the same as ranking
    ``dot_scores(units, q, cand)``; None when the codes do not pay (the caller scans fp32)."""
    n = len(units)
    if cand is None:
        allowed = None if valid is None or bool(valid.all()) else valid
        n_allowed = n if allowed is None else int(np.count_nonzero(allowed))
    elif len(cand) * SMALL_SELECTION < n:
        return None  # cheaper to score just those rows in fp32 than to scan every code
    else:
        allowed = np.zeros(n, dtype=bool)
        allowed[cand] = True
        n_allowed = len(cand)
    if n_allowed == 0:
        return None
    short = shortlist(codes, q, k, allowed, n_allowed)
    if short is None:
        return None
    scores = dot_scores(units, q, short)
    release(units, len(short))
    idx = rank(scores, k)
    return short[idx], scores[idx]


def release(units: np.ndarray, scored: int | None = None) -> None:
    """Unmap the pages of a memory-mapped ``units`` from this process (they stay in the
    page cache): the kernel maps a whole page-cache folio (hundreds of kB) around each row a
    scan reads, which would otherwise pile up in the process's resident memory. ``scored``:
    the rows :func:`~pixql.index.exact.dot_scores` just scored by position — a sparse
    selection was read with ``pread``, nothing was mapped, and nothing is done."""
    if scored is not None and not dense(scored, len(units)):
        return
    base: Any = units
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if isinstance(base, mmap.mmap):
        with contextlib.suppress(OSError, ValueError):
            base.madvise(mmap.MADV_DONTNEED)
