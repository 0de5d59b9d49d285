"""The peers of ``benchmarks/peers.py``: one class per system, each with ``build`` (make its
on-disk artefact from the vector set) and ``open`` (load it as a user would and return its
search methods). Every method maps a query number to the ids of its top ``K`` rows, and
optionally does the same under the filter ``label = 3`` (10% of the rows).

Each system runs in a process of its own (build, then search, in two processes), so the
peak RSS measured is that system's own. Heavy libraries are imported inside the methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from _peers_data import FILTER_LABEL, VectorSet

if TYPE_CHECKING:
    from pathlib import Path

#: rows asked for (top_k)
K = 10
#: HNSW build parameters, the same for every HNSW (pixql's own defaults)
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 100
#: search breadths swept for each index family
EF_SWEEP = (16, 64, 128)
NPROBE_SWEEP = (8, 16, 32)
Search = Callable[[int], np.ndarray]


@dataclass
class Method:
    """One way of searching: ``search(query number) -> ids`` (best first)."""

    name: str
    kind: str  # "exact" or "ann"
    search: Search
    filtered: Search | None = None
    note: str = ""


@dataclass
class Ctx:
    vs: VectorSet
    art: Path  # this system's artefact folder
    queries: np.ndarray
    build_index: bool = True  # False above --index-max-rows (for systems that check it)


def nlist(rows: int) -> int:
    """IVF lists: about sqrt(rows), as pixql's IVF."""
    return max(1, round(math.sqrt(rows)))


class System:
    name: ClassVar[str]
    modules: ClassVar[tuple[str, ...]] = ()
    folder: ClassVar[str] = ""  # artefact folder (default: the system's name)
    about: ClassVar[str] = ""

    def build(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    def open(self, ctx: Ctx) -> list[Method]:
        raise NotImplementedError

    def disk_paths(self, ctx: Ctx) -> list[Path]:
        """What this system keeps on disk (its share of a shared folder)."""
        return [ctx.art]


SYSTEMS: dict[str, type[System]] = {}


def system(cls: type[System]) -> type[System]:
    SYSTEMS[cls.name] = cls
    return cls


def top(scores: np.ndarray, k: int = K) -> np.ndarray:
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


@system
class Numpy(System):
    name = "numpy"
    about = "`M @ q` + argpartition + sort on the fp32 matrix in RAM (read from .npy)"

    def build(self, ctx: Ctx) -> dict[str, Any]:
        import shutil

        ctx.art.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ctx.vs.base_path, ctx.art / "base.npy")
        return {}

    def open(self, ctx: Ctx) -> list[Method]:
        m = ctx.vs.load_base()
        sub = ctx.vs.filter_ids()
        q = ctx.queries
        return [Method("brute force", "exact", lambda i: top(m @ q[i]),
                       lambda i: sub[top(m[sub] @ q[i])], "filtered: `m[ids] @ q`")]


@system
class DuckDB(System):
    name = "duckdb"
    modules = ("duckdb",)
    about = ("`SELECT id FROM t ORDER BY array_cosine_similarity(e, $q::FLOAT[d]) DESC "
             "LIMIT k` on a FLOAT[d] column of a DuckDB file")

    def build(self, ctx: Ctx) -> dict[str, Any]:
        import duckdb

        ctx.art.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(ctx.art / "peers.duckdb"))
        con.execute(f"CREATE TABLE t (id BIGINT, label INTEGER, e FLOAT[{ctx.vs.dim}])")
        for start, x in ctx.vs.chunks():
            con.register("src", arrow_rows(start, x))
            con.execute("INSERT INTO t SELECT * FROM src")
            con.unregister("src")
        con.execute("CHECKPOINT")
        con.close()
        return {}

    def open(self, ctx: Ctx) -> list[Method]:
        import duckdb

        con = duckdb.connect(str(ctx.art / "peers.duckdb"), read_only=True)
        d = ctx.vs.dim

        def run(where: str) -> Search:
            sql = (f"SELECT id FROM t {where} ORDER BY array_cosine_similarity(e, "
                   f"$q::FLOAT[{d}]) DESC LIMIT {K}")
            return lambda i: con.execute(sql, {"q": ctx.queries[i].tolist()}).fetchnumpy()["id"]

        return [Method("SQL brute force", "exact", run(""), run(f"WHERE label = {FILTER_LABEL}"),
                       "filtered: `WHERE label = 3`")]


def arrow_rows(start: int, x: np.ndarray) -> Any:
    import pyarrow as pa

    ids = np.arange(start, start + len(x))
    return pa.table({"id": ids, "label": (ids % 10).astype(np.int32),
                     "e": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)),
                                                            x.shape[1])})


# -- faiss ------------------------------------------------------------------------------
class _Faiss(System):
    modules = ("faiss",)

    def make(self, ctx: Ctx) -> Any:
        raise NotImplementedError

    def build(self, ctx: Ctx) -> dict[str, Any]:
        import faiss

        ctx.art.mkdir(parents=True, exist_ok=True)
        index = self.make(ctx)
        if not index.is_trained:
            index.train(sample(ctx.vs, 64 * nlist(ctx.vs.rows)))
        for _, x in ctx.vs.chunks():
            index.add(x)
        faiss.write_index(index, str(ctx.art / "index.faiss"))
        return {}

    def searcher(self, ctx: Ctx, index: Any, params: Callable[[Any], Any]) -> \
            tuple[Search, Search]:
        import faiss

        sel = faiss.IDSelectorBatch(ctx.vs.filter_ids())
        plain = params(None)
        filt = params(sel)

        def run(i: int, p: Any) -> np.ndarray:
            _, ids = index.search(ctx.queries[i : i + 1], K, params=p)
            return ids[0][ids[0] >= 0]

        return (lambda i: run(i, plain)), (lambda i: run(i, filt))

    def load(self, ctx: Ctx) -> Any:
        import faiss

        return faiss.read_index(str(ctx.art / "index.faiss"))


def sample(vs: VectorSet, n: int) -> np.ndarray:
    """``n`` rows spread over the set (training sample), read chunk by chunk."""
    n = min(n, vs.rows)
    step = vs.rows / n
    want = np.floor(np.arange(n) * step).astype(np.int64)
    out = []
    for start, x in vs.chunks():
        sel = want[(want >= start) & (want < start + len(x))] - start
        out.append(x[sel])
    return np.vstack(out)


@system
class FaissFlat(_Faiss):
    name = "faiss-flat"
    about = "`IndexFlatIP` (exact), selector for the filter"

    def make(self, ctx: Ctx) -> Any:
        import faiss

        return faiss.IndexFlatIP(ctx.vs.dim)

    def open(self, ctx: Ctx) -> list[Method]:
        import faiss

        idx = self.load(ctx)
        plain, filt = self.searcher(
            ctx, idx, lambda sel: faiss.SearchParameters(sel=sel) if sel else None)
        return [Method("IndexFlatIP", "exact", plain, filt, "filtered: IDSelectorBatch")]


@system
class FaissHNSW(_Faiss):
    name = "faiss-hnsw"
    about = f"`IndexHNSWFlat` (M={HNSW_M}, efConstruction={HNSW_EF_CONSTRUCTION})"

    def make(self, ctx: Ctx) -> Any:
        import faiss

        index = faiss.IndexHNSWFlat(ctx.vs.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return index

    def open(self, ctx: Ctx) -> list[Method]:
        import faiss

        idx = self.load(ctx)
        out = []
        for ef in EF_SWEEP:
            plain, filt = self.searcher(
                ctx, idx, lambda sel, ef=ef: faiss.SearchParametersHNSW(efSearch=ef, sel=sel)
                if sel else faiss.SearchParametersHNSW(efSearch=ef))
            out.append(Method(f"HNSW efSearch={ef}", "ann", plain, filt,
                              "filtered: IDSelectorBatch inside the graph walk"))
        return out


@system
class FaissIVF(_Faiss):
    name = "faiss-ivf"
    about = "`IndexIVFFlat` (nlist ≈ sqrt(rows), trained on 64 × nlist rows)"

    def make(self, ctx: Ctx) -> Any:
        import faiss

        quant = faiss.IndexFlatIP(ctx.vs.dim)
        self._quantizer = quant  # the index does not own it: keep it alive
        return faiss.IndexIVFFlat(quant, ctx.vs.dim, nlist(ctx.vs.rows),
                                  faiss.METRIC_INNER_PRODUCT)

    def open(self, ctx: Ctx) -> list[Method]:
        import faiss

        idx = self.load(ctx)
        out = []
        for n in NPROBE_SWEEP:
            plain, filt = self.searcher(
                ctx, idx, lambda sel, n=n: faiss.SearchParametersIVF(nprobe=n, sel=sel)
                if sel else faiss.SearchParametersIVF(nprobe=n))
            out.append(Method(f"IVF nprobe={n}", "ann", plain, filt,
                              "filtered: IDSelectorBatch inside the list scan"))
        return out


# -- hnswlib, usearch -------------------------------------------------------------------
@system
class Hnswlib(System):
    name = "hnswlib"
    modules = ("hnswlib",)
    about = f"`hnswlib.Index(space='ip')` (M={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION})"

    def build(self, ctx: Ctx) -> dict[str, Any]:
        import hnswlib

        ctx.art.mkdir(parents=True, exist_ok=True)
        index = hnswlib.Index(space="ip", dim=ctx.vs.dim)
        index.init_index(max_elements=ctx.vs.rows, M=HNSW_M,
                         ef_construction=HNSW_EF_CONSTRUCTION)
        for start, x in ctx.vs.chunks():
            index.add_items(x, np.arange(start, start + len(x)))
        index.save_index(str(ctx.art / "index.bin"))
        return {}

    def open(self, ctx: Ctx) -> list[Method]:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=ctx.vs.dim)
        index.load_index(str(ctx.art / "index.bin"), max_elements=ctx.vs.rows)
        keep = ctx.vs.labels() == FILTER_LABEL
        out = []
        for ef in EF_SWEEP:
            def run(i: int, ef: int = ef, filt: bool = False) -> np.ndarray:
                index.set_ef(ef)
                f = (lambda r: bool(keep[r])) if filt else None
                ids, _ = index.knn_query(ctx.queries[i], k=K, num_threads=1, filter=f)
                return ids[0].astype(np.int64)
            out.append(Method(f"HNSW ef={ef}", "ann", run,
                              lambda i, ef=ef, run=run: run(i, ef, True),
                              "filtered: a Python predicate called inside the graph walk"))
        return out


@system
class USearch(System):
    name = "usearch"
    modules = ("usearch",)
    about = (f"`usearch.index.Index(metric='ip', dtype='f32')` (connectivity={HNSW_M}, "
             f"expansion_add={HNSW_EF_CONSTRUCTION}); exact = its `search(exact=True)`")

    def build(self, ctx: Ctx) -> dict[str, Any]:
        from usearch.index import Index

        ctx.art.mkdir(parents=True, exist_ok=True)
        index = Index(ndim=ctx.vs.dim, metric="ip", dtype="f32", connectivity=HNSW_M,
                      expansion_add=HNSW_EF_CONSTRUCTION)
        for start, x in ctx.vs.chunks():
            index.add(np.arange(start, start + len(x)), x)
        index.save(str(ctx.art / "index.usearch"))
        return {}

    def open(self, ctx: Ctx) -> list[Method]:
        from usearch.index import Index

        index = Index.restore(str(ctx.art / "index.usearch"))
        assert index is not None

        def run(i: int, ef: int | None) -> np.ndarray:
            if ef is None:
                return np.asarray(index.search(ctx.queries[i], K, exact=True).keys, np.int64)
            index.expansion_search = ef
            return np.asarray(index.search(ctx.queries[i], K).keys, np.int64)

        note = "no filtered search in the Python API"
        out = [Method("exact=True", "exact", lambda i: run(i, None), None, note)]
        out += [Method(f"HNSW expansion_search={ef}", "ann", lambda i, ef=ef: run(i, ef), None,
                       note) for ef in EF_SWEEP]
        return out
