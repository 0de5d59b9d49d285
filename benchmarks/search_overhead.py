"""SEARCH's fixed cost: end to end minus the ranking kernel, now vs before, exact and ANN.

In one process per table size, blocks of 40 SEARCHes alternate between

* ``hot path`` — the default: a recognised SEARCH (the memo) takes its winners from the
  table's rows kept beside the cached vectors; for a column kept in vector files (≥ 64 MB of
  fp32) only the *other* columns are kept and the embedding values come from the files;
* ``before`` — the same code with the vector files' stored rows hidden, which is the
  behaviour before that change: whole Arrow rows kept when they fit ``PIXQL_ROW_CACHE_MB``
  (10k, 70k), else the winners fetched from DuckDB by row id (1M × 512 = 2 GB);
* ``no memo`` — every lookup and the read snapshot each time;
* ``kernel`` — the ranking alone (query embedding + exact top-k over codes or fp32);
* with ``--ann``: ``index='hnsw'`` / ``'ivf'`` SEARCHes end to end and ``exact`` (the hot
  path again) in the same blocks.

Wall time per SEARCH, p50. *overhead* = SEARCH p50 − kernel p50; *paired overhead* =
p50 over SEARCHes of (SEARCH wall − wall spent inside its own kernel call:
``exact_top`` or the fp32 scan and rank, or ``approximate_search``), less noisy under load;
*CPU overhead* = CPU time p50 (all threads) − the kernel's. Peak RSS (``VmHWM``): a fresh
process running 60 hot-path SEARCHes, with the change and with it hidden.

    python benchmarks/search_overhead.py --sizes 10000 70000 1000000 --ann 70000
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, machine, write_section
from search import open_table
from search_scale import peak_mb

import pixql.execution.search as search_mod
import pixql.index.ann as ann_mod
import pixql.index.compressed as compressed_mod
from pixql.index.compressed import exact_top
from pixql.index.exact import dot_scores, query_unit, rank

SQL = ("SEARCH IMAGE USING bench OPTIONS (search_by='text', search_input='seed:{}', "
       "emb_col='e', top_k=10{}) AS SELECT * FROM vecs")
BLOCK = 40


class Inner:
    """Wall time spent inside the kernel functions SEARCH calls (patched in place)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._orig = (compressed_mod.exact_top, ann_mod.approximate_search,
                      search_mod.dot_scores, search_mod.rank_scores)
        compressed_mod.exact_top = self._wrap(self._orig[0])
        ann_mod.approximate_search = self._wrap(self._orig[1])
        search_mod.dot_scores = self._wrap(self._orig[2])
        search_mod.rank_scores = self._wrap(self._orig[3])

    def _wrap(self, fn: Any) -> Any:
        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.spent += time.perf_counter() - t0
        return timed

    def close(self) -> None:
        (compressed_mod.exact_top, ann_mod.approximate_search, search_mod.dot_scores,
         search_mod.rank_scores) = self._orig


def set_before(entry: Any, before: bool, raw: Any) -> None:
    """Hide (``before``) or restore the vector files' stored rows; drop the kept rows."""
    entry.raw = None if before else raw
    entry.rows = entry.rows_schema = entry.rows_tag = None
    entry.rows_skipped = False


def measure(ws: Any, blocks: int, ann: bool) -> tuple[dict[str, dict[str, list[float]]], float]:
    for i in range(5):
        ws.sql(SQL.format(i, ""))
    entry = next(iter(ws._vector_cache._entries.values()))
    raw = entry.raw
    emb = ws.load_embedder("bench")

    def kernel(i: int) -> Any:
        q = query_unit(emb.embed([f"seed:{i}"], "text")[0])
        if entry.codes is not None:
            return exact_top(entry.codes, entry.units, q, 10, None, entry.valid)
        return rank(dot_scores(entry.units, q), 10)

    memo_of = search_mod.memo_of
    hot = lambda i: ws.sql(SQL.format(i, ""))  # noqa: E731
    runs: dict[str, Any] = {"hot path": hot, "before": hot, "no memo": hot, "kernel": kernel}
    if ann:
        for kind in ("hnsw", "ivf"):
            t0 = time.perf_counter()
            ws.sql(SQL.format(0, f", index='{kind}'"))  # builds (or loads) the index
            print(f"{kind} index ready in {time.perf_counter() - t0:.1f} s", flush=True)
            runs[kind] = lambda i, kind=kind: ws.sql(SQL.format(i, f", index='{kind}'"))
    out: dict[str, dict[str, list[float]]] = \
        {k: {"wall": [], "paired": [], "cpu": []} for k in runs}
    inner = Inner()
    try:
        for _ in range(blocks):
            for name, fn in runs.items():
                search_mod.memo_of = (lambda ws: None) if name == "no memo" else memo_of
                set_before(entry, name == "before", raw)
                fn(0), fn(1)  # untimed: the kept rows are read again
                for i in range(BLOCK):
                    inner.spent = 0.0
                    c0, w0 = time.process_time(), time.perf_counter()
                    fn(i)
                    wall = time.perf_counter() - w0
                    out[name]["cpu"].append(time.process_time() - c0)
                    out[name]["wall"].append(wall)
                    out[name]["paired"].append(wall - inner.spent)
    finally:
        inner.close()
        search_mod.memo_of = memo_of
        set_before(entry, False, raw)
    ws.sql(SQL.format(0, "")), ws.sql(SQL.format(1, ""))
    kept = entry.rows
    return out, 0.0 if kept is None else kept.nbytes / 2**20


def child_rss(folder: str, n: int, dim: int, before: bool) -> float:
    """Peak RSS (MB) of this fresh process after 60 hot-path SEARCHes."""
    ws = open_table(Path(folder), n, dim)
    ws.sql(SQL.format(0, ""))
    entry = next(iter(ws._vector_cache._entries.values()))
    if before:
        set_before(entry, True, entry.raw)
    for i in range(1, 61):
        ws.sql(SQL.format(i, ""))
    ws.close()
    return peak_mb()


def rss(folder: Path, n: int, dim: int, before: bool) -> float:
    cmd = [sys.executable, __file__, "--child-rss", json.dumps([str(folder), n, dim, before])]
    got = subprocess.run(cmd, capture_output=True, encoding="utf-8", check=True,
                         env=os.environ.copy())
    return float(got.stdout.strip().splitlines()[-1])


def p50(xs: list[float]) -> float:
    return float(np.median(xs) * 1000)


HEAD = ("| rows × dims | SEARCH p50 ms: hot path / before / no memo | kernel p50 ms | "
        "**overhead** now / before / no memo (ms) | paired overhead now / before (ms) | "
        "CPU overhead now / before (ms) | rows kept MB | peak RSS MB now / before |")


def row(n: int, dim: int, t: dict[str, dict[str, list[float]]], kept: float,
        rss_now: float, rss_before: float) -> str:
    h, b, m, k = (p50(t[x]["wall"]) for x in ("hot path", "before", "no memo", "kernel"))
    hc, bc, kc = (p50(t[x]["cpu"]) for x in ("hot path", "before", "kernel"))
    return (f"| {n:,} × {dim} | {h:.2f} / {b:.2f} / {m:.2f} | {k:.2f} | **{h - k:.2f}** / "
            f"{b - k:.2f} / {m - k:.2f} | **{p50(t['hot path']['paired']):.2f}** / "
            f"{p50(t['before']['paired']):.2f} | {hc - kc:.2f} / {bc - kc:.2f} | {kept:.1f} | "
            f"{rss_now:.0f} / {rss_before:.0f} |")


def ann_row(n: int, dim: int, t: dict[str, dict[str, list[float]]]) -> str:
    exact = p50(t["hot path"]["wall"])
    cells = [f"{p50(t[k]['wall']):.2f} (paired overhead {p50(t[k]['paired']):.2f}) | "
             f"**{exact / p50(t[k]['wall']):.1f}×**" for k in ("hnsw", "ivf")]
    return f"| {n:,} × {dim} | {exact:.2f} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 70_000, 1_000_000])
    p.add_argument("--ann", type=int, nargs="*", default=[70_000],
                   help="sizes also searched with index='hnsw' and 'ivf'")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--child-rss", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_rss:
        print(child_rss(*json.loads(args.child_rss)), flush=True)
        return
    command = "python benchmarks/search_overhead.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    doc = ("In one process per size, blocks of 40 SEARCHes (top_k=10) alternate between the "
           "hot path (now), *before* (the same code with the vector files' stored rows hidden: "
           "whole rows kept when they fit `PIXQL_ROW_CACHE_MB`, else the winners fetched from "
           "DuckDB — the behaviour before this change), no memo (every lookup each time), "
           "the kernel alone (query embedding + exact top-k) and, for the ANN sizes, "
           "`index='hnsw'`/`'ivf'`. Wall p50. *overhead* = SEARCH p50 − kernel p50; *paired "
           "overhead* = p50 of (SEARCH wall − wall inside its own kernel call), less noisy "
           "under load; *CPU overhead* = CPU time p50 (all threads) − the kernel's. Peak "
           "RSS: a fresh process running 60 hot-path SEARCHes, now / before.")
    lines = [
        "## SEARCH fixed cost: hot path vs every lookup (`benchmarks/search_overhead.py`)", "",
        f"Command: `{command.strip()}`  ", f"Machine: {machine()}. {doc}", "", HEAD,
        "|---|---|---|---|---|---|---|---|"]
    ann_lines = ["", "| rows × dims | exact SEARCH p50 ms | hnsw SEARCH p50 ms | exact ÷ hnsw "
                 "| ivf SEARCH p50 ms | exact ÷ ivf |", "|---|---|---|---|---|---|"]
    for n in args.sizes:
        folder = CACHE / "bench" / "search" / f"v{n}x{args.dim}"
        ws = open_table(folder, n, args.dim)
        t, kept = measure(ws, args.blocks, n in args.ann)
        ws.close()
        lines.append(row(n, args.dim, t, kept, rss(folder, n, args.dim, False),
                         rss(folder, n, args.dim, True)))
        print(lines[-1], flush=True)
        if n in args.ann:
            ann_lines.append(ann_row(n, args.dim, t))
            print(ann_lines[-1], flush=True)
    text = "\n".join(lines + (ann_lines if len(ann_lines) > 3 else [])) + "\n"
    print(text)
    if not args.no_write:
        write_section("search_overhead", text, RESULTS)


if __name__ == "__main__":
    main()
