"""Run every benchmark in ``benchmarks/`` and refresh ``benchmarks/RESULTS.md``.

Each benchmark script owns one section of RESULTS.md (between ``<!-- name:start -->`` and
``<!-- name:end -->``) and rewrites only that section, so running them one by one or all at
once gives the same file. Scripts run one after another in fresh processes (timings must
not share the machine with each other).

    .venv/bin/python benchmarks/run_all.py                      # everything but LONG ones
    .venv/bin/python benchmarks/run_all.py --long               # everything
    .venv/bin/python benchmarks/run_all.py --only search ann
    .venv/bin/python benchmarks/run_all.py --skip simclr_mnist --args "convert=--growth"
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: modules here that are helpers, not benchmarks
NOT_BENCHMARKS = {"common", "run_all"}
#: benchmarks that take hours at their default sizes: run only when named in --only or with --long
LONG = {"peers": "LanceDB/HNSW index builds at 1M rows take hours on 2 cores",
        "peers_roboflow": "installs Roboflow's inference server in its own ~7 GB venv first"}


def benchmarks() -> list[str]:
    """Names of the benchmark scripts (``benchmarks/<name>.py``), sorted."""
    return sorted(p.stem for p in HERE.glob("*.py")
                  if p.stem not in NOT_BENCHMARKS and not p.stem.startswith("_"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", default=None, help="run just these benchmarks")
    p.add_argument("--skip", nargs="+", default=[], help="benchmarks to leave out")
    p.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                   help="extra arguments for one benchmark, e.g. \"search=--reps 5\"")
    p.add_argument("--long", action="store_true",
                   help=f"also run the benchmarks that take hours ({', '.join(sorted(LONG))})")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = benchmarks()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [n for n in (args.only or []) + args.skip if n not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}",
              file=sys.stderr)
        return 2
    extra = dict(a.split("=", 1) for a in args.args)
    chosen = [n for n in (args.only or names) if n not in args.skip]
    if not (args.only or args.long):
        for name in [n for n in chosen if n in LONG]:
            print(f"=== {name}: left out ({LONG[name]}); add --long or --only {name}", flush=True)
        chosen = [n for n in chosen if n not in LONG]
    failed = []
    for name in chosen:
        cmd = [sys.executable, str(HERE / f"{name}.py"), *shlex.split(extra.get(name, ""))]
        print(f"=== {name}: {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        started = time.perf_counter()
        code = subprocess.call(cmd, cwd=HERE.parent)
        print(f"=== {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
