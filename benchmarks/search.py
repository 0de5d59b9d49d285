"""Exact SEARCH latency vs numpy brute force and DuckDB SQL, side by side in one run.

For each table size × dimension, a table of random unit vectors (FLOAT[d]) is searched
three ways, interleaved so that machine noise hits all three alike:

* ``SEARCH`` — ``ws.sql("SEARCH IMAGE ... AS SELECT * FROM vecs")`` end to end (parse,
  catalog, cached vectors, top-k, fetching the winning rows from DuckDB);
* ``numpy`` — ``M @ q``, ``argpartition`` and a sort on the *same* in-memory matrix;
* ``DuckDB`` — ``SELECT *, array_cosine_similarity(e, $q::FLOAT[d]) s ... ORDER BY s DESC
  LIMIT k``.

The query embedding is not measured: the model (``BenchVectors``, registered below) returns
a stored random vector, so the figures are the search path's own cost. Writes the
``search`` section of ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/search.py                       # 10k, 100k, 1M × 128, 512
    .venv/bin/python benchmarks/search.py --sizes 10000 --dims 128 --no-write
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, machine, write_section

import pixql
from pixql.index.compressed import exact_top
from pixql.index.exact import dot_scores, query_unit, rank
from pixql.models.base import BuildContext, BuildOptions, BuildResult, Embedder, ModelKind
from pixql.models.registry import register

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: the memory-read figure of this machine class (GB/s), for the bandwidth floor
MEMORY_GBPS = 23.0


class VectorOptions(BuildOptions):
    dim: int = 128


class SeededVectors(Embedder):
    """search_input 'seed:N' → a fixed random unit vector (no model cost)."""

    modalities = frozenset({"text"})

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.model_id = f"bench/{dim}"

    def preprocess(self, item: Any, modality: str) -> Any:
        return item

    def forward(self, batch: Sequence[Any], modality: str) -> np.ndarray:
        seeds = [int(str(s).split(":")[-1]) for s in batch]
        return np.stack([np.random.default_rng(s).standard_normal(self.dim) for s in seeds])


@register
class BenchVectors(ModelKind):
    name: ClassVar[str] = "benchvectors"
    display_name: ClassVar[str] = "BenchVectors"
    build_options = VectorOptions
    needs_data: ClassVar[bool] = False

    @classmethod
    def build(cls, ctx: BuildContext, options: BuildOptions) -> BuildResult:
        assert isinstance(options, VectorOptions)
        return BuildResult(config={"dim": options.dim}, dim=options.dim, modalities=("text",))

    @classmethod
    def load(cls, artifact_dir: Path, config: dict[str, Any]) -> Embedder:
        return SeededVectors(int(config["dim"]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--reps", type=int, default=15, help="timed queries per method (15)")
    p.add_argument("--workspaces", type=Path, default=CACHE / "bench" / "search")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    return p.parse_args(argv)


def open_table(folder: Path, n: int, d: int) -> Any:
    """A workspace with ``vecs(id, label, e FLOAT[d])`` of n random unit vectors (kept on
    disk between runs) and the model ``bench``."""
    ws = pixql.connect(folder, progress=False)
    have = ws.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'vecs'").fetchone()
    if have and have[0] and ws.sql("SELECT count(*) FROM vecs").fetchone()[0] == n:
        return ws
    ws.sql(f"BUILD MODEL bench USING BenchVectors OPTIONS (dim={d}, overwrite=True)")
    cur = ws.cursor()
    cur.execute(f"CREATE OR REPLACE TABLE vecs (id BIGINT, label INTEGER, e FLOAT[{d}])")
    rng = np.random.default_rng(n + d)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        x = rng.standard_normal((m, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        cur.register("src_rows", pa.table({
            "id": np.arange(s, s + m), "label": (np.arange(s, s + m) % 10).astype(np.int32),
            "e": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), d)}))
        cur.execute("INSERT INTO vecs SELECT * FROM src_rows")
        cur.unregister("src_rows")
    cur.execute("CHECKPOINT")
    return ws


def timings(methods: dict[str, Callable[[int], Any]], reps: int) -> dict[str, list[float]]:
    """Run every method ``reps`` times, interleaved (rep-major); seconds per call."""
    out: dict[str, list[float]] = {m: [] for m in methods}
    out.update({f"{m} cpu": [] for m in methods})
    for rep in range(reps):
        for name, fn in methods.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn(rep)
            out[name].append(time.perf_counter() - t0)
            out[f"{name} cpu"].append(time.process_time() - c0)  # all threads' CPU time
    return out


def measure(ws: Any, n: int, d: int, k: int, reps: int) -> dict[str, Any]:
    sql = ("SEARCH IMAGE USING bench OPTIONS (search_by='text', search_input='seed:{}', "
           "emb_col='e', top_k={}) AS SELECT * FROM vecs {}")
    t0 = time.perf_counter()
    first = ws.sql(sql.format(0, k, ""))
    cold = time.perf_counter() - t0
    entry = next(iter(ws._vector_cache._entries.values()))
    units = entry.units  # the same in-memory vectors for numpy
    cur = ws.cursor()
    queries = [np.asarray(ws.load_embedder("bench").embed([f"seed:{r}"], "text")[0], np.float32)
               for r in range(reps + 1)]

    def numpy_topk(r: int) -> np.ndarray:
        s = units @ queries[r]
        idx = np.argpartition(-s, k)[:k]
        return idx[np.argsort(-s[idx])]

    def duck(r: int) -> Any:
        return cur.sql(f"SELECT *, array_cosine_similarity(e, $q::FLOAT[{d}]) AS s FROM vecs "
                       f"ORDER BY s DESC LIMIT {k}", params={"q": queries[r].tolist()}
                       ).to_arrow_table()

    # the same top rows as numpy (scores equal to float32 rounding)
    check = numpy_topk(0)
    assert first.table.column("id").to_pylist()[:3] == entry.rowids[check[:3]].tolist()
    def kernel(r: int) -> Any:
        # the ranking SEARCH runs: codes + shortlist re-rank when the column has codes
        q = query_unit(queries[r])
        if entry.codes is not None:
            return exact_top(entry.codes, units, q, k, None, entry.valid)
        return rank(dot_scores(units, q), k)

    def fp32_kernel(r: int) -> np.ndarray:
        return rank(dot_scores(units, query_unit(queries[r])), k)

    for r in range(3):  # warm up (first-call costs in DuckDB, numpy, the thread pool)
        ws.sql(sql.format(r, k, ""))
        kernel(r)
    duck_reps = max(3, reps // 3) if n * d >= 100_000_000 else reps
    t = timings({"SEARCH": lambda r: ws.sql(sql.format(r, k, "")),
                 "kernel": kernel, "numpy": numpy_topk, "fp32 kernel": fp32_kernel}, reps)
    t.update(timings({"DuckDB SQL": duck}, duck_reps))
    t.update(timings({"SEARCH WHERE label=3": lambda r: ws.sql(sql.format(r, k,
                                                                          "WHERE label = 3"))},
                     max(3, reps // 3)))
    return {"n": n, "d": d, "cold": cold, "t": t, "cache_mb": entry.nbytes / 2**20,
            "codes": entry.codes is not None}


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def report(rows: list[dict[str, Any]], k: int, command: str) -> str:
    lines = [
        "## Exact SEARCH latency (`benchmarks/search.py`)", "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}. Random unit vectors in `vecs(id, label, e FLOAT[d])`, "
        f"top_k={k}; the query embedding is a stored vector (model cost excluded). "
        "*SEARCH* is `ws.sql(\"SEARCH ...\")` end to end; *kernel* is its ranking step alone "
        "(fp32 columns: scores + top-k on the cached matrix; columns of 64 MB and more: the "
        "8-bit code scan + the exact fp32 re-rank of its shortlist); *overhead* = SEARCH p50 − "
        "kernel p50 (parse, catalog, cache check, query embedding, fetching the top_k rows), "
        "and the same in CPU time (all threads of the process: less sensitive than wall time "
        "to other work on the machine); "
        "*fp32 kernel* is the full fp32 scan of the same rows; "
        "*numpy* is `M @ q` + argpartition + sort on the same fp32 matrix; "
        "*DuckDB* is `array_cosine_similarity ... ORDER BY ... LIMIT` in SQL. "
        "Methods are interleaved in one run; *floor* = matrix bytes / "
        f"{MEMORY_GBPS:g} GB/s (this machine class's memory-read figure).", "",
        "| rows × dims | scan | SEARCH p50 / p95 ms | kernel p50 ms | **overhead ms** | "
        "overhead CPU ms | "
        "fp32 kernel p50 ms | numpy p50 / p95 ms | "
        "DuckDB p50 ms | SEARCH ÷ numpy | kernel ÷ numpy | DuckDB ÷ numpy | SEARCH ÷ floor | "
        "WHERE label=3 p50 ms | first SEARCH (loads cache) s | cache MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["t"]
        s50, n50, d50 = pct(t["SEARCH"], 50), pct(t["numpy"], 50), pct(t["DuckDB SQL"], 50)
        k50 = pct(t["kernel"], 50)
        floor = r["n"] * r["d"] * 4 / (MEMORY_GBPS * 1e9) * 1000
        lines.append(
            f"| {r['n']:,} × {r['d']} | {'codes' if r['codes'] else 'fp32'} | "
            f"{s50:.1f} / {pct(t['SEARCH'], 95):.1f} | {k50:.1f} | **{s50 - k50:.1f}** | "
            f"{pct(t['SEARCH cpu'], 50) - pct(t['kernel cpu'], 50):.1f} | "
            f"{pct(t['fp32 kernel'], 50):.1f} | "
            f"{n50:.1f} / {pct(t['numpy'], 95):.1f} | {d50:.1f} | **{s50 / n50:.2f}** | "
            f"{k50 / n50:.2f} | {d50 / n50:.2f} | {s50 / floor:.2f} | "
            f"{pct(t['SEARCH WHERE label=3'], 50):.1f} | {r['cold']:.2f} | "
            f"{r['cache_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python benchmarks/search.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    rows = []
    for d in args.dims:
        for n in args.sizes:
            ws = open_table(args.workspaces / f"v{n}x{d}", n, d)
            rows.append(measure(ws, n, d, args.top_k, args.reps))
            print(report(rows[-1:], args.top_k, command).splitlines()[-1], flush=True)
            ws.close()
            del ws
            gc.collect()
    text = report(rows, args.top_k, command.strip())
    print(text)
    if not args.no_write:
        write_section("search", text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
