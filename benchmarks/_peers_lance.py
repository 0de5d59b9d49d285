"""LanceDB in ``benchmarks/peers.py``: a Lance table (id, label, vector) searched by brute
force and through its IVF_PQ (with and without refine) and IVF_HNSW_SQ indexes, filters as
``where(..., prefilter=True)`` (and once with ``prefilter=False``, to show what a post-filter
returns)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from _peers_data import FILTER_LABEL
from _peers_systems import EF_SWEEP, HNSW_EF_CONSTRUCTION, HNSW_M, K, Method, System, nlist, system

if TYPE_CHECKING:
    from collections.abc import Callable

    from _peers_systems import Ctx, Search


class _Lance(System):
    modules = ("lancedb",)
    index_type: ClassVar[str] = ""

    def build(self, ctx: Ctx) -> dict[str, Any]:
        import lancedb
        import pyarrow as pa

        db = lancedb.connect(str(ctx.art))
        table = None
        for start, x in ctx.vs.chunks():
            ids = np.arange(start, start + len(x))
            batch = pa.table({"id": ids, "label": (ids % 10).astype(np.int32),
                              "vector": pa.FixedSizeListArray.from_arrays(
                                  pa.array(x.reshape(-1)), ctx.vs.dim)})
            if table is None:
                table = db.create_table("peers", batch, mode="overwrite")
            else:
                table.add(batch)
        assert table is not None
        if self.index_type and ctx.build_index:
            table.create_index(metric="cosine", index_type=self.index_type,
                               **self.index_args(ctx))
        return {}

    def index_args(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    def table(self, ctx: Ctx) -> Any:
        import lancedb

        return lancedb.connect(str(ctx.art)).open_table("peers")

    def query(self, tbl: Any, ctx: Ctx, set_up: Callable[[Any], Any],
              prefilter: bool | None = True) -> tuple[Search, Search]:
        def run(i: int, where: str | None) -> np.ndarray:
            q = set_up(tbl.search(ctx.queries[i]).distance_type("cosine").limit(K))
            if where:
                q = q.where(where, prefilter=prefilter)
            return q.select(["id"]).to_arrow().column("id").to_numpy()

        return (lambda i: run(i, None)), (lambda i: run(i, f"label = {FILTER_LABEL}"))


@system
class LanceFlat(_Lance):
    name = "lancedb"
    index_type = "IVF_PQ"
    about = ("LanceDB table (id, label, vector); brute force = `bypass_vector_index()`; "
             "`IVF_PQ` (num_partitions ≈ sqrt(rows), num_sub_vectors = dim/8)")

    def index_args(self, ctx: Ctx) -> dict[str, Any]:
        return {"num_partitions": nlist(ctx.vs.rows), "num_sub_vectors": ctx.vs.dim // 8}

    def open(self, ctx: Ctx) -> list[Method]:
        tbl = self.table(ctx)
        flat = self.query(tbl, ctx, lambda q: q.bypass_vector_index())
        out = [Method("brute force", "exact", *flat, "filtered: prefilter `where`")]
        if not tbl.list_indices():
            out[0].note += "; IVF_PQ not built (above --index-max-rows)"
            return out
        for n in (16,):
            for refine in (None, 10):
                def set_up(q: Any, n: int = n, refine: int | None = refine) -> Any:
                    q = q.nprobes(n)
                    return q.refine_factor(refine) if refine else q
                name = f"IVF_PQ nprobes={n}" + (f" refine_factor={refine}" if refine else "")
                out.append(Method(name, "ann", *self.query(tbl, ctx, set_up),
                                  "filtered: prefilter `where`"))
                if refine:
                    post = self.query(tbl, ctx, set_up, prefilter=False)[1]
                    out.append(Method(name + " postfilter", "ann", out[-1].search, post,
                                      "filtered: `where(prefilter=False)`"))
        return out


@system
class LanceHNSW(_Lance):
    name = "lancedb-hnsw"
    index_type = "IVF_HNSW_SQ"
    about = (f"LanceDB `IVF_HNSW_SQ` index (m={HNSW_M}, ef_construction="
             f"{HNSW_EF_CONSTRUCTION}, LanceDB's default partitions), on its own table copy")

    def index_args(self, ctx: Ctx) -> dict[str, Any]:
        return {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}

    def open(self, ctx: Ctx) -> list[Method]:
        tbl = self.table(ctx)
        out = []
        # LanceDB needs ef >= k x refine_factor: refine only at the widest ef
        for ef, refine in [*((e, None) for e in EF_SWEEP), (max(EF_SWEEP), 10)]:
            def set_up(q: Any, ef: int = ef, refine: int | None = refine) -> Any:
                q = q.ef(ef)
                return q.refine_factor(refine) if refine else q
            name = f"IVF_HNSW_SQ ef={ef}" + (f" refine_factor={refine}" if refine else "")
            out.append(Method(name, "ann", *self.query(tbl, ctx, set_up),
                              "filtered: prefilter `where`"))
        return out
