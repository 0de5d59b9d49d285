"""Batch kNN: Q queries in one SEARCH statement vs Q single SEARCH statements, one run.

A table ``vecs(id, label, e FLOAT[512])`` of 70,000 random unit vectors (shared with
``benchmarks/search.py``'s generator) is searched by Q of its own rows
(``search_by='row'``, ``key_col='id'``, top_k=10, the row itself excluded):

* ``batch`` — one ``SEARCH ... OPTIONS (search_input=[id, id, ...])`` statement, end to end
  (one scan: queries × rows in tiles, :mod:`pixql.index.knn`);
* ``singles`` — Q statements ``SEARCH ... OPTIONS (search_input=id)``, end to end;
* ``kernel`` — :func:`pixql.index.knn.knn` alone on the cached matrix;
* ``numpy`` — ``Q @ M.T`` in row blocks + argpartition per query, on the same matrix.

The batch's answers are checked equal to the singles' (rows and scores). Also timed: a
self-join over the first 10,000 rows (every row is a query). Writes the ``knn`` section
of ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/knn.py
    .venv/bin/python benchmarks/knn.py --queries 10 100 --no-write
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, machine, write_section
from search import open_table  # also registers the BenchVectors model kind

from pixql.index.knn import knn

SQL = ("SEARCH IMAGE USING bench OPTIONS (search_by='row', search_input={}, key_col='id', "
       "emb_col='e', top_k={}) AS SELECT * FROM vecs{}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=70_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--reps", type=int, default=3, help="timed batch runs per Q (3)")
    p.add_argument("--self-join-rows", type=int, default=10_000)
    p.add_argument("--workspaces", type=Path, default=CACHE / "bench" / "knn")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    return p.parse_args(argv)


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def numpy_knn(units: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Top-k row indices per query, brute force in numpy (row blocks bound memory)."""
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for s in range(0, len(units), 16384):
        sc = q @ units[s : s + 16384].T
        cs, ci = np.concatenate([best_s, sc], 1), np.concatenate(
            [best_i, np.broadcast_to(np.arange(s, s + sc.shape[1]), sc.shape)], 1)
        part = np.argpartition(-cs, k, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cs, part, 1), np.take_along_axis(ci, part, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def measure(ws: Any, q: int, k: int, reps: int, rng: np.random.Generator,
            n: int) -> dict[str, Any]:
    ids = sorted(rng.choice(n, q, replace=False).tolist())
    batch_sql = SQL.format(ids, k, "")
    ws.sql(batch_sql)  # warm (cache loaded by the caller)
    entry = next(iter(ws._vector_cache._entries.values()))
    pos = entry.positions(ws.sql(f"SELECT rowid FROM vecs WHERE id IN ({','.join(map(str, ids))})"
                                 " ORDER BY id").arrow().column(0).to_numpy())
    batch, kern, nump = [], [], []
    for _ in range(reps):  # interleaved
        batch.append(timed(lambda: ws.sql(batch_sql))[0])
        kern.append(timed(lambda: knn(entry.units, entry.units[pos], k, exclude=pos))[0])
        nump.append(timed(lambda: numpy_knn(entry.units, entry.units[pos], k + 1))[0])
    t_singles, singles = timed(lambda: [ws.sql(SQL.format(i, k, "")).table for i in ids])
    got = ws.sql(batch_sql).table
    for j, one in enumerate(singles):  # the batch answers exactly what the singles do
        part = got.slice(j * k, k).drop_columns(["search_query", "search_rank"])
        assert part.equals(one), f"query {ids[j]}: batch and single SEARCH differ"
    b = statistics.median(batch)
    return {"q": q, "batch": b, "singles": t_singles, "kernel": statistics.median(kern),
            "numpy": statistics.median(nump), "rows": got.num_rows}


def self_join(ws: Any, rows: int, k: int) -> dict[str, Any]:
    sql = ("SEARCH IMAGE USING bench OPTIONS (search_by='row', key_col='id', emb_col='e', "
           f"top_k={k}) AS SELECT * FROM vecs WHERE id < {rows}")
    t, res = timed(lambda: ws.sql(sql).table)
    return {"rows": rows, "s": t, "out": res.num_rows}


def report(n: int, d: int, k: int, rows: list[dict[str, Any]], sj: dict[str, Any],
           command: str) -> str:
    lines = [
        "## Batch kNN: Q queries in one SEARCH vs Q SEARCH statements (`benchmarks/knn.py`)",
        "", f"Command: `{command}`  ",
        f"Machine: {machine()}. {n:,} random unit vectors × {d} in `vecs(id, label, e)`; "
        f"queries are Q stored rows (`search_by='row'`, `key_col='id'`, top_k={k}, the row "
        "itself excluded). *batch*: one statement with `search_input=[id, ...]`, end to end; "
        "*singles*: Q statements with one id each, end to end; *kernel*: "
        "`pixql.index.knn.knn` alone on the cached matrix; *numpy*: `Q @ M.T` in row blocks "
        "+ argpartition, same matrix. Batch results were checked equal (rows, order, scores) "
        "to the singles'. Batch, kernel and numpy interleaved, median of the runs.", "",
        "| Q | batch s | Q singles s | singles ÷ batch | per query: batch / singles ms | "
        "kernel s | numpy s | batch ÷ numpy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['q']:,} | {r['batch']:.3f} | {r['singles']:.2f} | "
            f"**{r['singles'] / r['batch']:.1f}×** | {r['batch'] / r['q'] * 1000:.2f} / "
            f"{r['singles'] / r['q'] * 1000:.1f} | {r['kernel']:.3f} | {r['numpy']:.3f} | "
            f"{r['batch'] / r['numpy']:.2f} |")
    lines += ["", f"Self-join (near-duplicate form, every row a query) over {sj['rows']:,} "
              f"rows: {sj['s']:.2f} s end to end, {sj['out']:,} result rows "
              f"({sj['rows'] / sj['s']:,.0f} queries/s)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python benchmarks/knn.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    ws = open_table(args.workspaces / f"v{args.rows}x{args.dim}", args.rows, args.dim)
    ws.sql(SQL.format(0, args.top_k, ""))  # load the vector cache
    rng = np.random.default_rng(7)
    rows = []
    for q in args.queries:
        rows.append(measure(ws, q, args.top_k, args.reps, rng, args.rows))
        print(rows[-1], flush=True)
    sj = self_join(ws, args.self_join_rows, args.top_k)
    ws.close()
    text = report(args.rows, args.dim, args.top_k, rows, sj, command.strip())
    print(text)
    if not args.no_write:
        write_section("knn", text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
