"""pixql in ``benchmarks/peers.py``, through its public API only: ``pixql.connect`` and
``ws.sql("SEARCH ...")`` (and a cursor's Arrow INSERT to load the table).

The query vectors reach SEARCH through a model: ``PeerQueries`` (registered here) embeds
``search_input='17'`` as query number 17 of the set, so no model cost is measured and every
system searches with the very same vectors. Three systems share one workspace (one table):

* ``pixql``: exact SEARCH (whatever exact scan pixql does by default); its build is the
  table plus the first SEARCH, which writes a large column's vector files (codes);
* ``pixql-hnsw`` / ``pixql-ivf``: ``OPTIONS (index='hnsw' | 'ivf', ...)``, the index built
  by the first such SEARCH (timed as the build) and loaded from disk by the searching process.

``--pixql-variant NAME=OPTIONS`` adds more exact-system methods, e.g. an option a later pixql
offers: ``--pixql-variant "sq8=, scan='sq8'"``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from _peers_data import FILTER_LABEL
from _peers_systems import EF_SWEEP, NPROBE_SWEEP, K, Method, System, arrow_rows, system

import pixql
from pixql.models.base import BuildContext, BuildOptions, BuildResult, Embedder, ModelKind
from pixql.models.registry import register

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from _peers_systems import Ctx, Search

#: extra exact methods: name -> SEARCH options appended after top_k (set by peers.py)
VARIANTS: dict[str, str] = {}


class QueryOptions(BuildOptions):
    path: str = ""
    dim: int = 512


class StoredQueries(Embedder):
    """search_input 'N' → row N of the queries file."""

    modalities = frozenset({"text"})

    def __init__(self, path: str, dim: int) -> None:
        self.dim = dim
        self.model_id = f"peers/{dim}"
        self.queries = np.load(path)

    def preprocess(self, item: Any, modality: str) -> Any:
        return item

    def forward(self, batch: Sequence[Any], modality: str) -> np.ndarray:
        return self.queries[[int(str(s)) for s in batch]]


@register
class PeerQueries(ModelKind):
    name: ClassVar[str] = "peerqueries"
    display_name: ClassVar[str] = "PeerQueries"
    build_options = QueryOptions
    needs_data: ClassVar[bool] = False

    @classmethod
    def build(cls, ctx: BuildContext, options: BuildOptions) -> BuildResult:
        assert isinstance(options, QueryOptions)
        return BuildResult(config={"path": options.path, "dim": options.dim}, dim=options.dim,
                           modalities=("text",))

    @classmethod
    def load(cls, artifact_dir: Path, config: dict[str, Any]) -> Embedder:
        return StoredQueries(str(config["path"]), int(config["dim"]))


def search_sql(i: int, options: str = "", where: str = "") -> str:
    return (f"SEARCH TEXT USING q OPTIONS (search_by='text', search_input='{i}', emb_col='e', "
            f"top_k={K}{options}) AS SELECT * FROM peers" + (f" WHERE {where}" if where else ""))


def searcher(ws: Any, options: str) -> tuple[Search, Search]:
    def run(i: int, where: str = "") -> np.ndarray:
        return ws.sql(search_sql(i, options, where)).table.column("id").to_numpy()

    return run, (lambda i: run(i, f"label = {FILTER_LABEL}"))


class _Pixql(System):
    modules = ("pixql",)
    folder = "pixql"
    kind: ClassVar[str] = ""  # index kind, "" for exact

    def connect(self, ctx: Ctx) -> Any:
        return pixql.connect(ctx.art, progress=False)

    def warm(self, ws: Any) -> float:
        """The first SEARCH (loads the column into pixql's cache): seconds."""
        t0 = time.perf_counter()
        ws.sql(search_sql(0))
        return time.perf_counter() - t0

    def index_files(self, ctx: Ctx) -> list[Path]:
        return [p for p in (ctx.art / "indexes").rglob(f"*{self.kind}*") if p.is_file()]


@system
class Pixql(_Pixql):
    name = "pixql"
    about = ("`ws.sql(\"SEARCH TEXT USING q OPTIONS (..., top_k=10) AS SELECT * FROM peers "
             "[WHERE label = 3]\")` end to end (parse, catalog, cached vectors, ranking, "
             "fetching the rows)")

    def build(self, ctx: Ctx) -> dict[str, Any]:
        import shutil

        shutil.rmtree(ctx.art, ignore_errors=True)
        ws = self.connect(ctx)
        qpath = ctx.art / "queries.npy"
        np.save(qpath, ctx.queries)
        ws.sql(f"BUILD MODEL q USING PeerQueries OPTIONS (path='{qpath.as_posix()}', "
               f"dim={ctx.vs.dim})")
        cur = ws.cursor()
        cur.execute(f"CREATE TABLE peers (id BIGINT, label INTEGER, e FLOAT[{ctx.vs.dim}])")
        for start, x in ctx.vs.chunks():
            cur.register("src", arrow_rows(start, x))
            cur.execute("INSERT INTO peers SELECT * FROM src")
            cur.unregister("src")
        cur.execute("CHECKPOINT")
        # the first SEARCH makes the column's vector files (codes) for tables of 64 MB and
        # more: part of the build, so that the searching process only loads them
        self.warm(ws)
        ws.close()
        return {}

    def open(self, ctx: Ctx) -> list[Method]:
        ws = self.connect(ctx)
        ctx_note = f"first SEARCH (loads the cache) {self.warm(ws):.2f} s"
        out = [Method("SEARCH exact", "exact", *searcher(ws, ""), ctx_note)]
        for name, options in VARIANTS.items():
            out.append(Method(f"SEARCH {name}", "exact", *searcher(ws, options), options))
        return out

    def disk_paths(self, ctx: Ctx) -> list[Path]:
        return [p for p in ctx.art.iterdir() if p.name != "indexes"] if ctx.art.is_dir() else []


class _PixqlIndex(_Pixql):
    modules = ("pixql", "faiss")
    sweep: ClassVar[tuple[str, tuple[int, ...]]] = ("", ())

    def build(self, ctx: Ctx) -> dict[str, Any]:
        for p in self.index_files(ctx):
            p.unlink()
        ws = self.connect(ctx)
        load = self.warm(ws)
        t0 = time.perf_counter()
        ws.sql(search_sql(0, f", index='{self.kind}'"))
        took = time.perf_counter() - t0
        ws.close()
        return {"build_s": took, "note": f"first SEARCH with index='{self.kind}' (cache "
                f"loaded before it, {load:.1f} s, not counted)"}

    def open(self, ctx: Ctx) -> list[Method]:
        ws = self.connect(ctx)
        load = self.warm(ws)
        t0 = time.perf_counter()
        ws.sql(search_sql(0, f", index='{self.kind}'"))
        note = f"first SEARCH {load:.2f} s, then index load {time.perf_counter() - t0:.2f} s"
        option, values = self.sweep
        return [Method(f"SEARCH index='{self.kind}' {option}={v}", "ann",
                       *searcher(ws, f", index='{self.kind}', {option}={v}"), note)
                for v in values]

    def disk_paths(self, ctx: Ctx) -> list[Path]:
        return self.index_files(ctx)


@system
class PixqlHNSW(_PixqlIndex):
    name = "pixql-hnsw"
    kind = "hnsw"
    sweep = ("ef_search", EF_SWEEP)
    about = "SEARCH with `index='hnsw'` (faiss HNSW inside, exact re-rank of 2×k)"


@system
class PixqlIVF(_PixqlIndex):
    name = "pixql-ivf"
    kind = "ivf"
    sweep = ("nprobe", NPROBE_SWEEP)
    about = "SEARCH with `index='ivf'` (faiss IVF inside, exact re-rank of 2×k)"
