"""Approximate nearest-neighbour search with faiss (HNSW or IVF), re-ranked exactly.

Used by SEARCH only when asked (``OPTIONS (index='hnsw')`` or ``index='ivf'``). The index
is built over the cached unit vectors of the column on first use, kept with them in memory,
and saved under ``<workspace>/indexes/`` (:mod:`pixql.index.store`) for later sessions.
For a column kept compressed (8-bit codes) the index stores 8-bit codes too; an IVF index
over codes is written straight to its file, a block of rows at a time, and memory-mapped
from there (:mod:`pixql.index.ivf_file`): building and searching it never hold its lists.

Guarantees:

* scores are exact: the candidates the index proposes are re-scored with the same kernel
  as the exact search, then ranked (ties in row order);
* a WHERE filter never shortens the answer: when it keeps less than ``MIN_SELECTIVITY`` of
  the rows (or few rows), the exact search over just those rows answers (cheaper than the
  index, and exact); otherwise candidates are restricted to the selected rows *inside* the
  index search (a faiss ID selector), the search breadth is scaled by 1/selectivity (a
  filter uncorrelated with the query needs that many more visits for the same recall), and
  it widens (more candidates, larger ``ef_search``/``nprobe``, 4x a round) until ``top_k``
  rows are found *and* two successive widths agree on them; else the exact search answers.
  The agreement check matters for filters correlated with the query: an HNSW walk from an
  odd digit towards the even digits a filter keeps found only 72% of the true top 10 at
  ``ef_search`` 256, 89% at 1024 (MNIST pixels, 70,000 rows, ``label % 2 = 0``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixql.index import ivf_file, store
from pixql.index.compressed import release
from pixql.index.exact import dot_scores, gather, rank

if TYPE_CHECKING:  # pragma: no cover
    from pixql.index.vectors_api import IndexedTable, IndexedVectors

#: selections of at most this many rows are searched exactly (cheaper than any index)
EXACT_BELOW = 4096
#: ... as are selections below this share of the indexed rows
MIN_SELECTIVITY = 0.2
#: candidates re-ranked per requested row
OVERFETCH = 2
#: widening rounds before giving up and searching exactly
MAX_ROUNDS = 3

#: build parameters per kind
BUILD_DEFAULTS: dict[str, dict[str, int]] = {
    "hnsw": {"M": 16, "ef_construction": 100},
    "ivf": {"nlist": 0},  # 0: about sqrt(rows)
}
#: search parameters per kind
SEARCH_DEFAULTS: dict[str, dict[str, int]] = {"hnsw": {"ef_search": 128}, "ivf": {"nprobe": 16}}
#: IVF training sample per list
TRAIN_PER_LIST = 64
#: rows sampled to train an HNSW index's 8-bit codes (their per-dimension range)
SQ_TRAIN_ROWS = 65536


def _faiss() -> Any:
    """faiss, imported on first use (its type stubs are incomplete: treat it as Any)."""
    import faiss

    return faiss


@dataclass
class AnnIndex:
    """A faiss index over the current rows of a cached column. faiss label ``i`` is the
    row with id ``rowids[i]``, at cache position ``ids[i]`` (-1: the row was deleted or
    its vector changed since it was added — a dead label, never returned)."""

    kind: str
    index: Any
    ids: np.ndarray  # label → cache position, -1 for dead labels
    build_seconds: float
    loaded: bool = False
    params: dict[str, int] = field(default_factory=dict)
    rowids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    built_rows: int = 0  # labels when (re)built: IVF's centroids were trained for them
    updates: int = 0  # incremental updates since the build
    update_seconds: float = 0.0  # the last incremental update's time
    saved: bool = True  # False: updated in memory, not yet written to indexes/
    mapped: bool = False  # read with IO_FLAG_MMAP_IFC: its data views the file
    # a mapped IVF file's lists, read ahead before and unmapped after each search
    lists: ivf_file.MappedLists | None = None
    # whether no label is dead, worked out on first use (``ids`` is never changed in place:
    # an update makes a new AnnIndex, where this starts unknown again)
    _all_live: bool | None = field(default=None, init=False, repr=False)

    @property
    def dead(self) -> int:
        return int(np.count_nonzero(self.ids < 0))

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None,
               breadth: int) -> np.ndarray:
        """Cache positions of up to ``k`` nearest rows, restricted to ``allowed`` (a mask
        over cache positions) when given."""
        faiss = _faiss()
        if self.kind == "ivf":
            breadth = min(breadth, int(self.index.nlist))
        params = _search_params(self.kind, breadth, k)
        if self._all_live is None:
            self._all_live = self.dead == 0
        if allowed is not None or not self._all_live:
            live = self.ids >= 0
            keep = live if allowed is None else live & allowed[np.maximum(self.ids, 0)]
            bits = np.packbits(keep, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(self.ids), faiss.swig_ptr(bits))
        k = min(k, len(self.ids))
        lists = self.lists
        probed = None if lists is None else lists.probe(self.index.quantizer, q, breadth)
        _, labels = self.index.search(q.reshape(1, -1), k, params=params)
        if lists is not None and probed is not None:
            lists.release(probed)
        labels = labels[0]
        return self.ids[labels[labels >= 0]]


def _search_params(kind: str, breadth: int, k: int) -> Any:
    faiss = _faiss()
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=max(breadth, k))
    return faiss.SearchParametersIVF(nprobe=breadth)


def _trained(kind: str, units: np.ndarray, valid: np.ndarray,
             params: dict[str, int] | None, sq8: bool) -> tuple[Any, np.ndarray, dict[str, int]]:
    """(a new, trained, empty ``kind`` index over the valid unit rows, their positions, the
    build parameters)."""
    faiss = _faiss()
    ids = np.flatnonzero(valid).astype(np.int64)
    d = units.shape[1]
    p = {**BUILD_DEFAULTS[kind], **(params or {}), "sq8": int(sq8)}
    index: Any
    n_train = len(ids)
    if kind == "hnsw":
        index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, p["M"],
                                  faiss.METRIC_INNER_PRODUCT) if sq8 else \
            faiss.IndexHNSWFlat(d, p["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = p["ef_construction"]
        n_train = SQ_TRAIN_ROWS
    else:
        nlist = p["nlist"] or max(1, min(65536, int(math.sqrt(max(len(ids), 1)))))
        nlist = min(nlist, max(1, len(ids) // 39))  # faiss wants ~39 points per centroid
        p["nlist"] = nlist
        index = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT) if sq8 else \
            faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.min_points_per_centroid = 1  # the sample below is deliberately small
        n_train = TRAIN_PER_LIST * nlist
    if kind == "ivf" or sq8:
        sample = ids if len(ids) <= n_train else \
            np.sort(np.random.default_rng(0).choice(ids, n_train, replace=False))
        index.train(gather(units, sample))  # read, not mapped (see exact.gather)
    return index, ids, p


def build_index(kind: str, units: np.ndarray, valid: np.ndarray,
                params: dict[str, int] | None = None, sq8: bool = False) -> AnnIndex:
    """Build a ``kind`` index over the valid unit rows (inner product = cosine) in memory;
    ``sq8``: the index stores 8-bit codes (``IndexHNSWSQ`` / ``IndexIVFScalarQuantizer``),
    not a second fp32 copy (used for columns kept compressed; the re-rank reads fp32)."""
    started = time.perf_counter()
    index, ids, p = _trained(kind, units, valid, params, sq8)
    for s in range(0, len(ids), ivf_file.BLOCK):
        index.add(gather(units, ids[s : s + ivf_file.BLOCK]))
    return AnnIndex(kind, index, ids, time.perf_counter() - started, params=p,
                    rowids=np.zeros(0, np.int64), built_rows=len(ids))


def _build_on_disk(folder: Path, vecs: IndexedVectors, checksum: str) -> AnnIndex | None:
    """An IVF index over 8-bit codes, its lists streamed straight into its saved file
    (:mod:`pixql.index.ivf_file`: memory bounded by a block of rows) and memory-mapped from
    there; None when the file cannot be written (the caller builds in memory)."""
    started = time.perf_counter()
    index, ids, p = _trained("ivf", vecs.units, vecs.valid, None, True)
    rowids = vecs.rowids[ids]
    meta = _meta("ivf", p, checksum, len(ids), int(vecs.units.shape[1]), 0.0)

    def write(path: str) -> None:
        store.write_array(folder / "ivf.labels.npy", rowids)
        ivf_file.write(Path(path), index, vecs.units, ids)
        meta["build_seconds"] = round(time.perf_counter() - started, 3)

    try:
        if not store.save(folder, "ivf", write, meta):
            return None
    except ivf_file.UnsupportedLayout:
        return None
    ann = _load(folder, "ivf", vecs, meta)
    if ann is not None:
        ann.loaded, ann.build_seconds = False, float(meta["build_seconds"])
    return ann


def get_index(ws: Any, table: IndexedTable, column: str, vecs: IndexedVectors,
              kind: str) -> AnnIndex:
    """The ``kind`` index of a cached column: in memory, else loaded from the workspace's
    ``indexes/`` folder when built from identical vectors, else built (and saved)."""
    with vecs.lock:
        found = vecs.indexes.get(kind)
        folder = store.index_dir(ws.root / "indexes", table.key, column)
        if found is not None:
            if not found.saved:  # updated incrementally (pixql.index.update): save it now
                _save(folder, found, vecs.checksum(), vecs)
            return found
        checksum = vecs.checksum()
        meta = store.read_sidecar(folder, kind)
        ann = None
        if meta is not None and meta.get("checksum") == checksum:
            ann = _load(folder, kind, vecs, meta)
        sq8 = getattr(vecs, "codes", None) is not None
        if ann is None and kind == "ivf" and sq8:
            ann = _build_on_disk(folder, vecs, checksum)
        if ann is None:
            ann = build_index(kind, vecs.units, vecs.valid, sq8=sq8)
            ann.rowids = vecs.rowids[ann.ids]
            _save(folder, ann, checksum, vecs)
        vecs.indexes[kind] = ann
        return ann


def _load(folder: Any, kind: str, vecs: IndexedVectors,
          meta: dict[str, Any]) -> AnnIndex | None:
    faiss = _faiss()
    # an index over 8-bit codes (a column kept in vector files) is memory-mapped, not read:
    # its lists / storage stay on disk and only what searches touch is paged in
    mapped = bool((meta.get("params") or {}).get("sq8"))
    try:
        index = faiss.read_index(str(folder / f"{kind}.faiss"),
                                 faiss.IO_FLAG_MMAP_IFC if mapped else 0)
        labels = np.load(folder / f"{kind}.labels.npy") if meta.get("labels") else None
    except (RuntimeError, OSError, ValueError):
        return None
    if labels is None:  # saved by pixql 0.1: label i is the i-th valid row
        ids = np.flatnonzero(vecs.valid).astype(np.int64)
        labels = vecs.rowids[ids]
    else:
        ids = _positions(vecs.rowids, labels)
    if index.ntotal != len(ids) or index.d != vecs.units.shape[1]:
        return None
    live = ids >= 0
    if np.count_nonzero(live) != vecs.n_valid or not vecs.valid[ids[live]].all():
        return None
    return AnnIndex(kind, index, ids, float(meta.get("build_seconds", 0.0)), loaded=True,
                    params=dict(meta.get("params", {})), rowids=labels,
                    built_rows=int(meta.get("built_rows", len(ids))), mapped=mapped,
                    lists=ivf_file.MappedLists.of(folder / f"{kind}.faiss", index)
                    if mapped and kind == "ivf" else None)


def _positions(rowids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of ``wanted`` row ids in the ascending ``rowids`` (-1: absent or -1)."""
    if not len(rowids):
        return np.full(len(wanted), -1, np.int64)
    pos = np.minimum(np.searchsorted(rowids, wanted), len(rowids) - 1)
    return np.where((rowids[pos] == wanted) & (wanted >= 0), pos, -1).astype(np.int64)


def _save(folder: Any, ann: AnnIndex, checksum: str, vecs: IndexedVectors) -> None:
    faiss = _faiss()
    labels = np.where(ann.ids >= 0, ann.rowids, -1).astype(np.int64)

    def write(path: str) -> None:
        store.write_array(folder / f"{ann.kind}.labels.npy", labels)
        faiss.write_index(ann.index, path)

    ann.saved = store.save(folder, ann.kind, write, _meta(
        ann.kind, ann.params, checksum, ann.built_rows, int(vecs.units.shape[1]),
        ann.build_seconds, rows=len(ann.ids)))


def _meta(kind: str, params: dict[str, int], checksum: str, built_rows: int, dim: int,
          build_seconds: float, rows: int | None = None) -> dict[str, Any]:
    """The sidecar of a saved index."""
    return {"kind": kind, "params": params, "checksum": checksum,
            "rows": built_rows if rows is None else rows, "dim": dim, "labels": True,
            "built_rows": built_rows, "build_seconds": round(build_seconds, 3),
            "faiss_version": _faiss().__version__}


def approximate_search(
    ws: Any, table: IndexedTable, column: str, vecs: IndexedVectors, q: np.ndarray,
    cand: np.ndarray | None, top_k: int, kind: str, overrides: dict[str, int | None],
) -> tuple[np.ndarray, np.ndarray, str] | str:
    """(cache positions, exact scores, note) of the ``top_k`` best rows among ``cand``
    (None: all valid rows) found through the ``kind`` index; or, when the exact search
    should answer instead, the reason why."""
    n_sel = vecs.n_valid if cand is None else len(cand)
    if n_sel <= max(EXACT_BELOW, OVERFETCH * top_k) or n_sel < MIN_SELECTIVITY * vecs.n_valid:
        return f"the AS query selects {n_sel} rows, exact search is as fast"
    ann = get_index(ws, table, column, vecs, kind)
    allowed = None
    if cand is not None:
        allowed = np.zeros(len(vecs.units), dtype=bool)
        allowed[cand] = True
    key = "ef_search" if kind == "hnsw" else "nprobe"
    asked = overrides.get(key) or SEARCH_DEFAULTS[kind][key]
    breadth = math.ceil(asked * vecs.n_valid / n_sel)  # scaled by 1/selectivity
    want = min(top_k, n_sel)
    fetch = OVERFETCH * top_k * (2 if ann.params.get("sq8") else 1)  # codes: wider net
    previous: np.ndarray | None = None
    for _ in range(MAX_ROUNDS):
        found = ann.search(q, fetch, allowed, breadth)
        if len(found) >= want:
            positions, scores = _rerank(vecs, q, found, top_k)
            # a filter can hide the query's neighbourhood from the index (a graph walk
            # through rows the filter rejects): trust a filtered answer only once a 4x
            # wider search agrees with it
            if allowed is None or (previous is not None
                                   and np.array_equal(np.sort(previous), np.sort(positions))):
                note = (f"approximate search: {kind} index ({key}={breadth}), "
                        f"{len(found)} candidates re-ranked exactly")
                return positions, scores, note
            previous = positions
        fetch, breadth = fetch * 4, breadth * 4
    return (f"the {kind} index found fewer than {want} rows through the filter"
            if previous is None else
            f"the {kind} index's answers through the filter did not settle as it widened")


def _rerank(vecs: IndexedVectors, q: np.ndarray, found: np.ndarray,
            top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``top_k`` of the candidate positions ``found`` by exact score (ties in
    row order) and their scores."""
    found = np.sort(found)  # row order, so equal scores keep it
    scores = dot_scores(vecs.units, q, found)
    release(vecs.units, len(found))  # memory-mapped rows: unmap what was mapped
    idx = rank(scores, top_k)
    return found[idx], scores[idx]
