"""SEARCH's fixed cost: the hot path (remembered lookups, one round trip) vs without it.

In one process, blocks of 40 SEARCHes alternate between the hot path (the default) and the
same SEARCH with the memo switched off (every lookup and the read snapshot each time, as
before), on ``benchmarks/search.py``'s tables; the ranking kernel alone is timed in the same
blocks. Wall and CPU time (all threads of the process) per SEARCH, p50; rows kept = the
table's rows held beside its vectors (``PIXQL_ROW_CACHE_MB``) by the hot path.

    python benchmarks/search_overhead.py --sizes 10000 70000
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, machine, write_section
from search import open_table

import pixql.execution.search as search_mod
from pixql.index.compressed import exact_top
from pixql.index.exact import dot_scores, query_unit, rank

SQL = ("SEARCH IMAGE USING bench OPTIONS (search_by='text', search_input='seed:{}', "
       "emb_col='e', top_k=10) AS SELECT * FROM vecs")


def measure(ws: Any, blocks: int) -> dict[str, tuple[list[float], list[float]]]:
    for i in range(5):
        ws.sql(SQL.format(i))
    entry = next(iter(ws._vector_cache._entries.values()))
    emb = ws.load_embedder("bench")

    def kernel(i: int) -> Any:
        q = query_unit(emb.embed([f"seed:{i}"], "text")[0])
        if entry.codes is not None:
            return exact_top(entry.codes, entry.units, q, 10, None, entry.valid)
        return rank(dot_scores(entry.units, q), 10)

    memo_of = search_mod.memo_of
    runs: dict[str, Any] = {"hot path": lambda i: ws.sql(SQL.format(i)),
                            "no memo": lambda i: ws.sql(SQL.format(i)), "kernel": kernel}
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in runs}
    try:
        for _ in range(blocks):
            for name, fn in runs.items():
                search_mod.memo_of = (lambda ws: None) if name == "no memo" else memo_of
                for i in range(40):
                    c0, w0 = time.process_time(), time.perf_counter()
                    fn(i)
                    out[name][0].append(time.perf_counter() - w0)
                    out[name][1].append(time.process_time() - c0)
    finally:
        search_mod.memo_of = memo_of
    return out


def p50(xs: list[float]) -> float:
    return float(np.median(xs) * 1000)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 70_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    command = "python benchmarks/search_overhead.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    lines = [
        "## SEARCH fixed cost: hot path vs every lookup (`benchmarks/search_overhead.py`)", "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}. {__doc__.split(chr(10))[2].strip()} "
        + " ".join(x.strip() for x in __doc__.split(chr(10))[3:7]), "",
        "| rows × dims | hot path SEARCH p50 ms (wall / CPU) | without memo p50 ms (wall / CPU) "
        "| kernel p50 ms (wall / CPU) | overhead hot (wall / CPU) | overhead without "
        "(wall / CPU) | rows kept MB |", "|---|---|---|---|---|---|---|"]
    for n in args.sizes:
        ws = open_table(CACHE / "bench" / "search" / f"v{n}x{args.dim}", n, args.dim)
        t = measure(ws, args.blocks)
        kept = next(iter(ws._vector_cache._entries.values()))
        kept_mb = getattr(kept, "rows", None)
        kept_mb = 0.0 if kept_mb is None else kept_mb.nbytes / 2**20
        ws.close()
        h, m, k = ((p50(t[x][0]), p50(t[x][1])) for x in ("hot path", "no memo", "kernel"))
        lines.append(f"| {n:,} × {args.dim} | {h[0]:.2f} / {h[1]:.2f} | {m[0]:.2f} / {m[1]:.2f} "
                     f"| {k[0]:.2f} / {k[1]:.2f} | **{h[0] - k[0]:.2f} / {h[1] - k[1]:.2f}** | "
                     f"{m[0] - k[0]:.2f} / {m[1] - k[1]:.2f} | {kept_mb:.0f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("search_overhead", text, RESULTS)


if __name__ == "__main__":
    main()
