"""Vector sets for ``benchmarks/peers.py``: the same base vectors, queries and true top-k for
every system, written once per (kind, rows, dim) as ``.npy`` files and kept between runs.

Kinds (all rows unit length, so inner product = cosine for every system):

* ``random``: i.i.d. Gaussian vectors, normalised; queries drawn the same way (no structure:
  the hardest case for approximate indexes — a query's nearest rows are barely nearer than
  the rest);
* ``clustered``: ``CLUSTERS`` random unit centres, each row a centre plus Gaussian noise of
  norm ~``NOISE`` (per-dimension sigma ``NOISE / sqrt(dim)``), normalised; queries are fresh
  draws from the same mixture.

Every row has ``id`` = its position and ``label`` = ``id % 10``; the filter ``label = 3``
keeps 10% of the rows, independently of the vectors. ``truth.npy`` holds each query's exact
top ``TRUTH_K`` rows (float32 inner products, numpy), ``truth_filtered.npy`` the same among
the rows with ``label = 3``.

Files are read in chunks with plain reads (never memory-mapped), so a worker's RSS holds only
what the system under test keeps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: centres of the clustered set
CLUSTERS = 1000
#: norm of a clustered row's noise before normalisation (centres have norm 1)
NOISE = 0.7
#: rows generated / read per chunk
CHUNK = 100_000
#: depth of the stored exact answers
TRUTH_K = 10
#: the filter every system applies: rows with label = FILTER_LABEL (10% of them)
FILTER_LABEL = 3
#: data recipe version (a changed recipe regenerates the files)
VERSION = 1
KINDS = ("random", "clustered")


@dataclass
class VectorSet:
    """Paths and shape of one generated set (see the module docstring)."""

    folder: Path
    kind: str
    rows: int
    dim: int
    queries: int

    @property
    def base_path(self) -> Path:
        return self.folder / "base.npy"

    def load_queries(self) -> np.ndarray:
        return np.load(self.folder / "queries.npy")

    def load_truth(self, filtered: bool = False) -> np.ndarray:
        return np.load(self.folder / ("truth_filtered.npy" if filtered else "truth.npy"))

    def labels(self) -> np.ndarray:
        return (np.arange(self.rows) % 10).astype(np.int32)

    def filter_ids(self) -> np.ndarray:
        """Row ids kept by the filter ``label = FILTER_LABEL``."""
        return np.arange(FILTER_LABEL, self.rows, 10, dtype=np.int64)

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """(first row id, rows) of the base vectors, ``size`` rows at a time, read with
        plain file reads (no memory map)."""
        with open(self.base_path, "rb") as f:
            version = np.lib.format.read_magic(f)
            shape, _, _ = np.lib.format._read_array_header(f, version)  # type: ignore[attr-defined]
            assert shape == (self.rows, self.dim), shape
            for start in range(0, self.rows, size):
                m = min(size, self.rows - start)
                x = np.fromfile(f, dtype=np.float32, count=m * self.dim)
                yield start, x.reshape(m, self.dim)

    def load_base(self) -> np.ndarray:
        """All base vectors in memory (read straight into one array, not memory-mapped)."""
        out = np.empty((self.rows, self.dim), dtype=np.float32)
        with open(self.base_path, "rb") as f:
            version = np.lib.format.read_magic(f)
            np.lib.format._read_array_header(f, version)  # type: ignore[attr-defined]
            f.readinto(memoryview(out.reshape(-1)).cast("B"))
        return out


def _rows(rng: np.random.Generator, kind: str, n: int, dim: int,
          centers: np.ndarray | None) -> np.ndarray:
    if kind == "random":
        x = rng.standard_normal((n, dim), dtype=np.float32)
    else:
        assert centers is not None
        x = centers[rng.integers(0, len(centers), n)]
        x = x + rng.standard_normal((n, dim), dtype=np.float32) * np.float32(NOISE / dim**0.5)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32, copy=False)


def _centers(kind: str, dim: int) -> np.ndarray | None:
    if kind != "clustered":
        return None
    c = np.random.default_rng(7).standard_normal((CLUSTERS, dim), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``scores`` (queries × rows): the column positions of the k highest, best
    first."""
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def _truth(vs: VectorSet, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top TRUTH_K ids for every query, over all rows and over the filtered rows."""
    best = np.full((len(queries), 0), -np.inf, np.float32), np.zeros((len(queries), 0), np.int64)
    fbest = best
    for start, x in vs.chunks():
        s = queries @ x.T
        ids = np.arange(start, start + len(x))
        best = _merge(best, s, ids)
        keep = ids % 10 == FILTER_LABEL
        fbest = _merge(fbest, s[:, keep], ids[keep])
    return best[1], fbest[1]


def _merge(best: tuple[np.ndarray, np.ndarray], s: np.ndarray,
           ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.hstack([best[0], s])
    allids = np.hstack([best[1], np.broadcast_to(ids, s.shape)])
    top = _top(scores, min(TRUTH_K, scores.shape[1] - 1))
    return np.take_along_axis(scores, top, 1), np.take_along_axis(allids, top, 1)


def prepare(root: Path, kind: str, rows: int, dim: int, queries: int) -> VectorSet:
    """The set (generated now unless its files match the recipe)."""
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r}; known: {', '.join(KINDS)}")
    folder = root / f"{kind}_{rows}x{dim}"
    vs = VectorSet(folder, kind, rows, dim, queries)
    want = {"kind": kind, "rows": rows, "dim": dim, "queries": queries, "clusters": CLUSTERS,
            "noise": NOISE, "version": VERSION}
    marker = folder / "recipe.json"
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == want:
        return vs
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(rows * 7 + dim + KINDS.index(kind))
    centers = _centers(kind, dim)
    with open(vs.base_path, "wb") as f:  # written chunk by chunk: no memory map
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        for start in range(0, rows, CHUNK):
            _rows(rng, kind, min(CHUNK, rows - start), dim, centers).tofile(f)
    q = _rows(np.random.default_rng(99), kind, queries, dim, centers)
    np.save(folder / "queries.npy", q)
    truth, ftruth = _truth(vs, q)
    np.save(folder / "truth.npy", truth)
    np.save(folder / "truth_filtered.npy", ftruth)
    marker.write_text(json.dumps(want))
    print(f"generated {kind} {rows:,} x {dim} in {time.perf_counter() - t0:.0f} s", flush=True)
    return vs
