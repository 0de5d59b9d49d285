"""pixql's SEARCH side by side with the systems users would pick instead, in one run.

The same vectors (``benchmarks/_peers_data.py``: random or clustered unit vectors, ``--rows``
× ``--dim``) and the same queries go through pixql (exact SEARCH and its HNSW / IVF indexes,
through ``ws.sql``), numpy, DuckDB SQL, faiss (flat, HNSW, IVF), hnswlib, usearch and LanceDB
(brute force, IVF_PQ with and without refine, IVF_HNSW_SQ). For every system and method:

* latency p50 / p95 of one query at a time (top_k=10), after warm-up;
* recall@10 against the exact top 10 (numpy, float32);
* filtered top_k (``label = 3``, 10% of the rows, independent of the vectors): fewest rows
  returned (should be 10) and recall@10 against the exact filtered top 10;
* build time, peak RSS of the build and of the searching process, disk.

Each system builds in one subprocess and searches in another (``--worker``), one system at a
time, so each peak RSS is that system's own and no two systems share the CPUs. A peer that is
not installed is skipped with a line saying so (``pip install 'pixql[bench]'``). Results are
kept in ``<workdir>/results.json`` as they come (``--report-only`` rewrites the section from
it); artefacts of each size are deleted after it unless ``--keep``. Writes the ``peers``
section of ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/peers.py                           # 100k and 1M, random + clustered
    .venv/bin/python benchmarks/peers.py --rows 100000 --data clustered --no-write
    .venv/bin/python benchmarks/peers.py --systems pixql numpy lancedb --queries 50
    .venv/bin/python benchmarks/peers.py --index-max-rows 100000   # no HNSW / IVF_PQ builds at 1M
    .venv/bin/python benchmarks/peers.py --pixql-variant "sq8=, scan='sq8'"
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers_data as data
from _peers_systems import SYSTEMS, Ctx, K, Method, System
from common import CACHE, RESULTS, write_section

#: the order systems run in (pixql's indexes need pixql's table, built first)
ORDER = ("numpy", "pixql", "pixql-hnsw", "pixql-ivf", "duckdb", "faiss-flat", "faiss-hnsw",
         "faiss-ivf", "hnswlib", "usearch", "lancedb", "lancedb-hnsw")
#: HNSW systems (their builds are the slow ones; see --index-max-rows)
HNSW = ("pixql-hnsw", "faiss-hnsw", "hnswlib", "usearch", "lancedb-hnsw")
#: warm-up queries before timing
WARM = 3
#: filtered queries per method (at most)
FILTER_QUERIES = 50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--data", nargs="+", default=list(data.KINDS), choices=data.KINDS)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=200, help="queries per set (200)")
    p.add_argument("--systems", nargs="+", default=list(ORDER), choices=ORDER)
    p.add_argument("--skip", nargs="+", default=[], choices=ORDER)
    p.add_argument("--index-max-rows", "--hnsw-max-rows", type=int, default=10**9,
                   help=f"build the slow indexes (the HNSW systems {', '.join(HNSW)}, and "
                   "LanceDB's IVF_PQ) only up to this many rows")
    p.add_argument("--max-seconds", type=float, default=90.0,
                   help="time budget per method: fewer queries (at least 20) when exceeded")
    p.add_argument("--pixql-variant", action="append", default=[], metavar="NAME=OPTIONS",
                   help="an extra exact pixql method: SEARCH options appended after top_k")
    p.add_argument("--workdir", type=Path, default=CACHE / "bench" / "peers")
    p.add_argument("--keep", action="store_true", help="keep the artefacts after each size")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per worker process")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the section from results.json, run nothing")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    p.add_argument("--section", default="peers",
                   help="RESULTS.md section to write (default peers: the full comparison)")
    p.add_argument("--worker", choices=["data", "build", "search"], help=argparse.SUPPRESS)
    p.add_argument("--system", help=argparse.SUPPRESS)
    p.add_argument("--set", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- worker (one system, one phase, in its own process) ---------------------------------
def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process in MB: VmRSS and VmHWM, which start
    afresh at exec (``ru_maxrss`` does not: it keeps the parent's peak across fork + exec)."""
    got = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                got[line[:5]] = int(line.split()[1]) / 1024
    return got["VmRSS"], got["VmHWM"]


def du(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        files = [p] if p.is_file() else (p.rglob("*") if p.is_dir() else [])
        total += sum(f.stat().st_size for f in files if f.is_file())
    return total


def stats(times: list[float]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(times) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "n": len(times)}


class Probe:
    """A fixed single-threaded task (a 4 MB ``M @ q`` scan, 10 times) timed between
    queries: its median shows how much CPU this system got from a shared machine (about
    1 ms on a quiet core), comparable across systems where load averages are not."""

    def __init__(self) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        self.m = rng.standard_normal((2048, 512), dtype=np.float32)
        self.q = rng.standard_normal(512, dtype=np.float32)
        self.times: list[float] = []

    def __call__(self) -> None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover  (then BLAS keeps its own thread count)
            threadpool_limits = None
        with threadpool_limits(1) if threadpool_limits else contextlib.nullcontext():
            t0 = time.perf_counter()
            for _ in range(10):
                (self.m @ self.q).argmax()
            self.times.append(time.perf_counter() - t0)

    def median_ms(self) -> float:
        import numpy as np

        return float(np.median(self.times) * 1000) if self.times else 0.0


def timed(fn: Any, n: int, budget: float, truth: Any, probe: Probe) -> dict[str, Any]:
    times, hits, rows = [], 0, []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        ids = fn(i)
        times.append(time.perf_counter() - t0)
        rows.append(len(ids))
        hits += len({int(x) for x in ids[:K]} & {int(x) for x in truth[i][:K]})
        if i % 5 == 0:
            probe()
        if i >= 19 and time.perf_counter() - started > budget:
            break
    out = stats(times)
    out.update(recall=hits / (K * len(times)), rows_min=min(rows),
               rows_mean=sum(rows) / len(rows))
    return out


def measure(m: Method, ctx: Ctx, budget: float, probe: Probe) -> dict[str, Any]:
    vs = ctx.vs
    for i in range(WARM):
        m.search(vs.queries - 1 - i)
    res: dict[str, Any] = {"kind": m.kind, "note": m.note}
    res.update(timed(m.search, vs.queries, budget, vs.load_truth(), probe))
    if m.filtered is not None:
        m.filtered(vs.queries - 1)
        res["filtered"] = timed(m.filtered, min(FILTER_QUERIES, vs.queries), budget / 2,
                                vs.load_truth(filtered=True), probe)
    print(f"  {m.name}: p50 {res['p50']:.2f} ms, recall {res['recall']:.3f}", flush=True)
    return res


def worker(args: argparse.Namespace) -> None:
    import numpy as np

    if args.worker == "data":
        kind, rows, dim, queries = args.system.split(":")
        data.prepare(args.set / "data", kind, int(rows), int(dim), int(queries))
        return
    meta = json.loads((args.set / "worker.json").read_text(encoding="utf-8"))
    vs = data.VectorSet(Path(meta["folder"]), meta["kind"], meta["rows"], meta["dim"],
                        meta["queries"])
    sysobj = load_system(args.system, meta.get("variants", {}))
    ctx = Ctx(vs, Path(meta["art"]), np.load(vs.folder / "queries.npy"),
              meta.get("build_index", True))
    out: dict[str, Any] = {"rss_start_mb": rss_mb()[0]}
    t0 = time.perf_counter()
    if args.worker == "build":
        if not sysobj.folder:  # a folder of its own: start afresh
            shutil.rmtree(ctx.art, ignore_errors=True)
        info = sysobj.build(ctx)
        out["build_s"] = info.pop("build_s", time.perf_counter() - t0)
        out.update(info)
        out["disk_mb"] = du(sysobj.disk_paths(ctx)) / 2**20
    else:
        methods = sysobj.open(ctx)
        out["open_s"] = time.perf_counter() - t0
        out["rss_open_mb"] = rss_mb()[0]
        probe = Probe()
        out["methods"] = {m.name: measure(m, ctx, args.max_seconds, probe) for m in methods}
        out["probe_ms"] = probe.median_ms()
    out["rss_peak_mb"] = rss_mb()[1]
    args.out.write_text(json.dumps(out))


def load_system(name: str, variants: dict[str, str]) -> System:
    if name.startswith("pixql"):
        import _peers_pixql

        _peers_pixql.VARIANTS.update(variants)
    elif name.startswith("lancedb"):
        import _peers_lance  # noqa: F401
    return SYSTEMS[name]()


# -- orchestration ----------------------------------------------------------------------
def missing(name: str) -> list[str]:
    return [m for m in SYSTEMS[name].modules if importlib.util.find_spec(m) is None]


def run_worker(args: argparse.Namespace, phase: str, name: str, set_dir: Path) -> dict[str, Any]:
    out = set_dir / f"{name}.{phase}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--worker", phase, "--system", name, "--set", str(set_dir),
           "--out", str(out), "--max-seconds", str(args.max_seconds)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, encoding="utf-8", timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{phase} timed out after {args.timeout:.0f} s"}
    sys.stdout.write(proc.stdout)
    if proc.returncode or not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"{phase} failed (exit {proc.returncode}): {' / '.join(tail)}"}
    res: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    res["wall_s"] = time.perf_counter() - t0
    return res


def mem_available_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def run_system(args: argparse.Namespace, name: str, set_dir: Path, rows: int) -> dict[str, Any]:
    lacking = missing(name)
    if lacking:
        return {"skipped": f"not installed: {', '.join(lacking)} (pip install 'pixql[bench]')"}
    if name in HNSW and rows > args.index_max_rows:
        return {"skipped": f"HNSW build not run above --index-max-rows {args.index_max_rows:,}"}
    print(f"{name}: build ... (MemAvailable {mem_available_gb():.1f} GB, load "
          f"{os.getloadavg()[0]:.1f})", flush=True)
    build = run_worker(args, "build", name, set_dir)
    if "error" in build:
        return {"error": build["error"]}
    print(f"{name}: build {build['build_s']:.1f} s, peak RSS {build['rss_peak_mb']:.0f} MB; "
          "search ...", flush=True)
    search = run_worker(args, "search", name, set_dir)
    return {"build": build, "search": search, "load": os.getloadavg()[0]}


def results_path(args: argparse.Namespace) -> Path:
    return args.workdir / "results.json"


def save_result(args: argparse.Namespace, key: str, name: str, res: dict[str, Any]) -> None:
    path = results_path(args)
    allres = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    allres.setdefault(key, {})[name] = res
    path.write_text(json.dumps(allres, indent=1))


def run_set(args: argparse.Namespace, kind: str, rows: int, variants: dict[str, str],
            command: str) -> str:
    # generated in a process of its own, so this one stays small (its workers start from it)
    subprocess.run([sys.executable, __file__, "--worker", "data", "--set", str(args.workdir),
                    "--system", f"{kind}:{rows}:{args.dim}:{args.queries}"], check=True)
    vs = data.VectorSet(args.workdir / "data" / f"{kind}_{rows}x{args.dim}", kind, rows,
                        args.dim, args.queries)
    key = f"{kind} {rows}x{args.dim}"
    art_root = args.workdir / "art" / f"{kind}_{rows}x{args.dim}"
    for name in [n for n in ORDER if n in args.systems and n not in args.skip]:
        folder = SYSTEMS[name].folder or name
        meta = {"folder": str(vs.folder), "kind": kind, "rows": rows, "dim": args.dim,
                "queries": args.queries, "art": str(art_root / folder), "variants": variants,
                "build_index": rows <= args.index_max_rows}
        (vs.folder / "worker.json").write_text(json.dumps(meta))
        res = run_system(args, name, vs.folder, rows)
        res["about"] = SYSTEMS[name].about
        res["command"] = command
        print(f"{name}: {res.get('skipped') or res.get('error') or 'done'}", flush=True)
        save_result(args, key, name, res)
    if not args.keep:
        shutil.rmtree(art_root, ignore_errors=True)
    return key


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    from _peers_report import report

    variants = dict(v.split("=", 1) for v in args.pixql_variant)
    command = "python benchmarks/peers.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    args.workdir.mkdir(parents=True, exist_ok=True)
    keys = []
    if not args.report_only:
        import _peers_lance  # noqa: F401
        import _peers_pixql  # noqa: F401  (these register their systems)

        for kind in args.data:
            for rows in args.rows:
                keys.append(run_set(args, kind, rows, variants, command.strip()))
    path = results_path(args)
    allres = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    chosen = {k: allres[k] for k in (keys or allres) if k in allres}
    text = report(chosen, command.strip(), args)
    print(text)
    if not args.no_write:
        write_section(args.section, text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
