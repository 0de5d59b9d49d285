"""Exact cosine scoring and top-k selection: the kernels every SEARCH path shares.

Both SEARCH paths (the cached fast path and the general path over any query) turn stored
vectors into unit rows with :func:`unit_rows` and score them with :func:`dot_scores`, so a
row gets bit-for-bit the same score whichever path ranks it, and identical vectors get
identical scores (ties stay ties). That needs a kernel whose result for a row does not
depend on the row's position in the matrix: BLAS ``sgemv`` does not guarantee it (its
tail rows take another code path), numpy's ``einsum`` does (one inner loop per row), and is
as fast for this memory-bound product, so blocks of rows are scored with ``einsum`` in
parallel threads.

Ranking (:func:`rank`) is by score descending with ties in row order; it finds the k-th
best score from a sample first, so selecting 1,000 of 1,000,000 scores costs about one
comparison pass instead of a full partition.
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

#: rows per block when a kernel works through a large matrix (bounds temporaries)
BLOCK_ROWS = 32768
#: sample size used to guess the k-th best score
_SAMPLE = 16384


def unit_rows(block: np.ndarray, valid: np.ndarray | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
    """``block`` (n, d) divided row-wise by its L2 norm, as a C-contiguous float32 array
    (``out`` when given). Zero rows, non-finite rows and rows where ``valid`` is False
    become zeros."""
    x = np.asarray(block, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.float32) if out is None else out
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are zeroed below
        for s in range(0, len(x), BLOCK_ROWS):
            _unit_block(x[s : s + BLOCK_ROWS], out[s : s + BLOCK_ROWS])
    if valid is not None and not valid.all():
        out[~valid] = 0.0
    return out


def _unit_block(part: np.ndarray, out: np.ndarray) -> None:
    norms = np.sqrt(np.einsum("ij,ij->i", part, part))
    inv = np.zeros(len(part), dtype=np.float32)
    good = np.isfinite(norms) & (norms > 0)
    np.divide(np.float32(1.0), norms, out=inv, where=good)
    np.multiply(part, inv[:, None], out=out)
    if not good.all():
        out[np.flatnonzero(~good)] = 0.0


def query_unit(query: np.ndarray) -> np.ndarray:
    """The query vector as a unit float32 vector (a zero vector stays zero)."""
    q = np.asarray(query, dtype=np.float32).reshape(1, -1)
    if float(np.abs(q).max(initial=0.0)) < 1e18:  # finite, and its square sum cannot overflow
        out = np.empty(q.shape, dtype=np.float32)
        _unit_block(q, out)  # as unit_rows, without its np.errstate (~10 µs a call)
        return out[0]
    return unit_rows(q)[0]


def dense(selected: int, rows: int) -> bool:
    """Whether :func:`dot_scores` scores ``selected`` of ``rows`` positions by scoring every
    row (a full scan, through a memory map if ``units`` is one) rather than gathering them."""
    return selected * 4 >= rows


def dot_scores(units: np.ndarray, q: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """``units @ q`` (cosine scores of unit rows), for all rows or only ``positions``.

    With ``positions`` the rows are gathered block by block, so memory stays bounded; a
    dense selection scores everything once and picks (cheaper than gathering most of it).
    """
    if positions is not None and dense(len(positions), len(units)):
        return dot_scores(units, q)[positions]
    n = len(units) if positions is None else len(positions)
    out = np.empty(n, dtype=np.float32)
    q = np.ascontiguousarray(q, dtype=np.float32)

    def block(s: int) -> None:
        rows = units[s : s + BLOCK_ROWS] if positions is None else \
            gather(units, positions[s : s + BLOCK_ROWS])
        np.einsum("ij,j->i", rows, q, out=out[s : s + len(rows)])

    starts = range(0, n, BLOCK_ROWS)
    if n * units.shape[1] >= PARALLEL_MIN and _threads() > 1:
        list(_pool().map(block, starts))
    else:
        for s in starts:
            block(s)
    return out


#: memory-mapped row files read with ``pread``: id(mmap) → (descriptor, address of byte 0)
_MAPPED: dict[int, tuple[int, int]] = {}


def register_mapped(mm: mmap.mmap, fd: int, rows: np.ndarray) -> None:
    """Let :func:`gather` read the rows of ``rows`` (an array over the whole of ``mm``, a
    map of the file open as ``fd``) with ``pread``; ``fd`` is closed with ``mm``."""
    key = id(mm)
    _MAPPED[key] = (fd, int(rows.__array_interface__["data"][0]))
    weakref.finalize(mm, _forget, key, fd)


def _forget(key: int, fd: int) -> None:
    _MAPPED.pop(key, None)
    os.close(fd)


def _file_of(units: np.ndarray) -> tuple[int, int] | None:
    """(descriptor, file offset of ``units[0]``) when ``units`` lies in a registered map."""
    base: Any = units
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    found = _MAPPED.get(id(base)) if isinstance(base, mmap.mmap) else None
    if found is None:
        return None
    return found[0], int(units.__array_interface__["data"][0]) - found[1]


def gather(units: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``units[positions]`` (float32 rows). Rows of a memory-mapped file are read with
    ``pread`` instead of through the map: a page fault maps a whole page-cache folio
    (hundreds of kB) into the process and must be unmapped again, which costs ~30 µs a
    row; a ``pread`` of one row ~2 µs, and nothing stays mapped. A run of consecutive rows
    is one read."""
    found = _file_of(units) if units.ndim == 2 and units.flags.c_contiguous else None
    if found is None or units.dtype != np.float32 or len(positions) == 0:
        return np.asarray(units[positions])
    fd, start = found
    size = units.shape[1] * 4
    n = len(units)
    first, last = int(positions[0]), int(positions[-1])
    if last - first == len(positions) - 1 and first >= 0 and last < n \
            and np.all(np.diff(positions) == 1):  # a run of rows: one read
        span = read_span(units, first * size, (last + 1) * size)
        return np.frombuffer(span, np.float32).reshape(len(positions), units.shape[1])
    out = np.empty((len(positions), units.shape[1]), np.float32)
    view = memoryview(out.data).cast("B")
    for j, i in enumerate(np.asarray(positions, np.int64).tolist()):
        if not 0 <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows")
        if os.preadv(fd, [view[j * size : (j + 1) * size]], start + i * size) != size:
            raise OSError(f"short read of row {i} from a vector file")
    return out


def read_span(units: np.ndarray, start: int, stop: int) -> memoryview:
    """Bytes ``start:stop`` of ``units`` in C order. A memory-mapped vector file is read with
    ``pread``: nothing stays mapped into the process (hashing a 2 GB column through the map
    raised its RSS by 2 GB), and the kernel's read-ahead works for these sequential reads."""
    found = _file_of(units) if units.flags.c_contiguous else None
    if found is None:
        flat = np.ascontiguousarray(units).reshape(-1).view(np.uint8)
        return memoryview(flat.data)[start:stop]
    fd, offset = found
    view = memoryview(bytearray(stop - start))
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + start + got)
        if n <= 0:
            raise OSError("short read from a vector file")
        got += n
    return view


#: products (rows × dims) from which scoring is split over threads
PARALLEL_MIN = 1 << 22
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _threads() -> int:
    env = os.environ.get("PIXQL_SEARCH_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_threads(), thread_name_prefix="pixql-score")
        return _POOL


def rank(scores: np.ndarray, top_k: int | None) -> np.ndarray:
    """Indices of ``scores`` by score descending, ties by index ascending, at most ``top_k``.

    NaN scores rank last.
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    s = np.where(np.isnan(scores), -np.inf, scores) if np.isnan(scores).any() else scores
    if top_k is None or top_k >= n:
        return np.argsort(-s, kind="stable").astype(np.int64, copy=False)
    keep = _at_least_kth(s, top_k)
    order = keep[np.argsort(-s[keep], kind="stable")]
    return order[:top_k].astype(np.int64, copy=False)


def _at_least_kth(s: np.ndarray, k: int) -> np.ndarray:
    """Indices (ascending) of every score >= the k-th best: the top k and all their ties."""
    n = len(s)
    stride = n // _SAMPLE
    if stride >= 2:
        sample = s[::stride]
        want = 2 * k // stride + 8  # expect about twice k rows above the guess
        if want < len(sample):
            guess = np.partition(sample, len(sample) - want)[len(sample) - want]
            cand = np.flatnonzero(s >= guess)
            if len(cand) >= k:  # the true k-th best is >= guess: all winners are candidates
                kth = np.partition(s[cand], len(cand) - k)[len(cand) - k]
                return cand[s[cand] >= kth]
    kth = np.partition(s, n - k)[n - k]
    return np.flatnonzero(s >= kth)
