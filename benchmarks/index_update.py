"""ANN indexes follow the data: 10 rounds of +10% rows, the index updated, not rebuilt.

A table ``t(id, e FLOAT[d])`` of clustered vectors (``--rows`` to start, ``--dim``
dimensions) is searched with ``index='hnsw'`` (or ``'ivf'``), which builds the index. Then,
each round, 10% more rows are INSERTed (plain SQL) and 1% of the rows DELETEd, and the
next SEARCH reloads the column and updates the index (:mod:`pixql.index.update`). Per round:

* update seconds: the index update itself (compare the two loads by row id, add the new
  rows), beside a full rebuild of an index over the same rows (``build_index``, timed here);
* recall@10 of ``SEARCH ... index=...`` against ``index='exact'`` on the same table
  (``--queries`` queries: perturbed rows);
* the first SEARCH after the INSERT, end to end (reload + update + save + search).

    .venv/bin/python benchmarks/index_update.py --kinds hnsw ivf

Writes the ``index-update`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, machine, write_section

import pixql
from pixql.index import ann


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--kinds", nargs="+", default=["hnsw", "ivf"])
    p.add_argument("--workspace", type=Path, default=CACHE / "bench" / "index-update")
    p.add_argument("--no-write", action="store_true")
    return p.parse_args(argv)


def vectors(rng: np.random.Generator, n: int, centers: np.ndarray) -> np.ndarray:
    x = centers[rng.integers(0, len(centers), n)]
    return (x + 0.3 * rng.standard_normal(x.shape)).astype(np.float32)


def insert(ws: Any, x: np.ndarray, start: int, dim: int) -> None:
    cur = ws.cursor()
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
    cur.register("new_rows", pa.table({"id": np.arange(start, start + len(x)), "e": emb}))
    try:
        cur.execute(f"INSERT INTO t SELECT id, e::FLOAT[{dim}] FROM new_rows")
    finally:
        cur.unregister("new_rows")


def run_kind(args: argparse.Namespace, kind: str) -> list[dict[str, Any]]:
    folder = args.workspace / kind
    shutil.rmtree(folder, ignore_errors=True)
    ws = pixql.connect(folder, progress=False)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((200, args.dim)).astype(np.float32)
    ws.sql(f"CREATE TABLE t (id BIGINT, e FLOAT[{args.dim}])")
    insert(ws, vectors(rng, args.rows, centers), 0, args.dim)
    model = _VectorModel(ws, args.dim)
    model.search(kind, vectors(rng, 1, centers)[0])  # builds the index
    rows, next_id, out = args.rows, args.rows, []
    for r in range(1, args.rounds + 1):
        add = rows // 10
        insert(ws, vectors(rng, add, centers), next_id, args.dim)
        ws.sql(f"DELETE FROM t WHERE id % 100 = {r}")  # ~1% of the rows go
        next_id += add
        rows = ws.sql("SELECT count(*) FROM t").fetchone()[0]
        t0 = time.perf_counter()
        model.search(kind, vectors(rng, 1, centers)[0])
        first = time.perf_counter() - t0
        entry = model.entry()
        index = entry.indexes[kind]
        t0 = time.perf_counter()
        ann.build_index(kind, entry.units, entry.valid)
        rebuild = time.perf_counter() - t0
        queries = vectors(rng, args.queries, centers)
        hits = sum(len(model.search(kind, q) & model.search("exact", q)) for q in queries)
        out.append({"round": r, "rows": rows, "updated": index.updates > 0,
                    "update_s": index.update_seconds if index.updates else float("nan"),
                    "rebuild_s": rebuild, "dead": index.dead, "first_search_s": first,
                    "recall": hits / (10 * len(queries))})
        print(kind, out[-1], flush=True)
    ws.close()
    return out


class _VectorModel:
    """SEARCH's fast path (``fast_search``: cache lookup, index update or build, ranking,
    fetching rows) with a raw query vector: no model embeds a vector given as text."""

    def __init__(self, ws: Any, dim: int) -> None:
        from pixql.execution.context import ExecContext
        from pixql.execution.engine import run_node
        from pixql.execution.search import QueryPlan, SearchIndexOptions

        self.ws, self.dim = ws, dim
        self.ctx = ExecContext(ws=ws, cur=ws.cursor(), run=run_node)
        self.plan_type = QueryPlan
        self.opts = lambda kind: SearchIndexOptions(
            search_by="text", search_input="q", emb_col="e", top_k=10, index=kind)

    def search(self, kind: str, q: np.ndarray) -> set[int]:
        from pixql.execution.search import fast_search
        from pixql.execution.vectors import resolve_table
        from pixql.index.exact import query_unit

        plan = self.plan_type(table=resolve_table(self.ws.cursor(), "", "t"), label="t",
                              rowid_sql=None)  # resolved again: the table's state changed
        found = fast_search(self.ctx, plan, self.opts(kind), self.dim, query_unit(q))
        assert found is not None
        rows, _scores, note = found
        assert kind == "exact" or "approximate" in note, note
        return set(rows.column("id").to_pylist())

    def entry(self) -> Any:
        return next(iter(self.ws._vector_cache._entries.values()))


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace,
           command: str, load: str) -> str:
    lines = ["## ANN index updates (`benchmarks/index_update.py`)", "",
             f"Command: `{command}`  ", f"Machine: {load}.", "",
             f"{args.rows:,} clustered {args.dim}-d vectors to start; each round INSERTs 10% "
             "more rows and DELETEs ~1%; the next SEARCH updates the index. Update = the index "
             "update (compare by row id, add rows); rebuild = a full build over the same "
             f"rows; recall@10 of index SEARCH vs exact over {args.queries} queries.", "",
             "| index | round | rows | update s | rebuild s | update ÷ rebuild | dead labels "
             "| recall@10 | first SEARCH after INSERT s |", "|---|---|---|---|---|---|---|---|---|"]
    for kind, rounds in results.items():
        for r in rounds:
            ratio = r["update_s"] / r["rebuild_s"] if r["updated"] else float("nan")
            upd = f"{r['update_s']:.2f}" if r["updated"] else "rebuilt"
            lines.append(f"| {kind} | {r['round']} | {r['rows']:,} | {upd} | "
                         f"{r['rebuild_s']:.2f} | {ratio:.2f} | {r['dead']:,} | "
                         f"{r['recall']:.3f} | {r['first_search_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python benchmarks/index_update.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results = {kind: run_kind(args, kind) for kind in args.kinds}
    text = report(results, args, command.strip(), machine())
    print(text)
    if not args.no_write:
        write_section("index-update", text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
