"""CONVERT throughput vs the model's own forward pass, and memory/time growth with rows.

On MNIST test PNGs, with a SimCLR model (``pixql.models.simclr``; a short training run
builds it, its weights do not matter for speed), in one run:

* ``forward`` — ``postprocess(forward(batch))`` over tensors decoded beforehand: the upper
  bound CONVERT can reach;
* ``CONVERT`` — ``CONVERT USING m AS SELECT * FROM digits`` end to end (read, decode,
  resize, batch, forward, write the column);
* ``naive`` — one image at a time: ``embed([load_image(p)])``;
* ``decode`` — decoding + preprocessing alone, in CONVERT's thread pool.

``--growth`` also runs CONVERT in fresh processes on 2,500 … 80,000 rows (``--growth-sizes``)
and records peak RSS and time: memory must stay bounded by one chunk, far below what the
decoded images of the whole table would take. The memory curve up to 1,000,000 rows (texts
through a tiny CLIP, generated PNGs) is ``benchmarks/convert_memory.py``. Writes the
``convert`` section of ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/convert.py --growth
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, machine, unpack_mnist, write_section

import pixql
from pixql.images import default_workers, load_image, map_ordered

MODEL = "bench_simclr"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000, help="images CONVERT embeds (10,000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--growth", action="store_true", help="peak RSS / time vs rows")
    p.add_argument("--growth-sizes", type=int, nargs="+",
                   default=[2_500, 10_000, 40_000, 80_000],
                   help="table sizes of the growth runs (2500 10000 40000 80000; at most "
                        "80,000: the 10,000 test digits repeated 8 times)")
    p.add_argument("--workspace", type=Path, default=CACHE / "bench" / "convert")
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    return p.parse_args(argv)


def prepare(folder: Path, rows: int) -> Any:
    """Workspace with ``digits`` (MNIST test images) and the SimCLR model (kept)."""
    ws = pixql.connect(folder, progress=False)
    if not ws.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'digits'").fetchone()[0]:
        csv = (unpack_mnist() / "test.csv").as_posix()
        ws.sql(f"COPY mnist_test OPTIONS (if_exists='replace', resolve_paths='filepath') "
               f"FROM '{csv}'")
        ws.sql("CREATE TABLE digits AS SELECT filepath AS image_path, label FROM mnist_test "
               "ORDER BY filepath")
    if ws.catalog.find_model(MODEL) is None:
        ws.sql(f"BUILD MODEL {MODEL} USING SimCLR OPTIONS (max_epochs=1, time_budget=15, "
               f"overwrite=True) AS SELECT image_path FROM digits LIMIT 2048")
    # beyond 10,000 rows the test digits repeat (each is still decoded and embedded)
    ws.sql(f"CREATE OR REPLACE TABLE sample AS SELECT d.* FROM digits d, range(8) r "
           f"ORDER BY r.range, d.image_path LIMIT {rows}")
    return ws


def forward_rate(emb: Any, tensors: list[Any], batch: int) -> float:
    t0 = time.perf_counter()
    for s in range(0, len(tensors), batch):
        emb.postprocess(emb.forward(tensors[s : s + batch], "image"))
    return len(tensors) / (time.perf_counter() - t0)


def convert_rate(ws: Any, n: int, batch: int) -> float:
    t0 = time.perf_counter()
    ws.sql(f"CONVERT USING {MODEL} OPTIONS (result_col='v', batch_size={batch}) "
           "AS SELECT * FROM sample")
    return n / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    ws = prepare(args.workspace, args.rows)
    paths = [str(ws.resolve(p)) for (p,) in ws.sql("SELECT image_path FROM sample").fetchall()]
    emb = ws.load_embedder(MODEL)
    prep = lambda p: emb.preprocess(load_image(p), "image")  # noqa: E731
    t0 = time.perf_counter()
    tensors = [x for chunk in map_ordered(prep, paths, workers=default_workers(),
                                          chunk=args.batch_size) for x in chunk]
    decode = len(paths) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for path in paths[:2000]:
        prep(path)
    decode_one = min(2000, len(paths)) / (time.perf_counter() - t0)
    fwd, conv = [], []
    for _ in range(args.reps):  # interleaved
        fwd.append(forward_rate(emb, tensors, args.batch_size))
        conv.append(convert_rate(ws, len(paths), args.batch_size))
    del tensors
    n_naive = min(1000, len(paths))
    t0 = time.perf_counter()
    for p in paths[:n_naive]:
        emb.embed([load_image(p)], "image")
    naive = n_naive / (time.perf_counter() - t0)
    out = {"rows": len(paths), "forward": float(np.median(fwd)), "convert": float(np.median(conv)),
           "naive": naive, "decode": decode, "decode_one": decode_one,
           "model": emb.model_id, "dim": emb.dim,
           "batch": args.batch_size, "workers": default_workers()}
    ws.close()
    if args.growth:
        out["growth"] = [child(args, n) for n in args.growth_sizes]
    return out


def child(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """Run one CONVERT of ``n`` rows in a fresh process; its peak RSS and time."""
    cmd = [sys.executable, __file__, "--child", str(n), "--workspace", str(args.workspace)]
    res = subprocess.run(cmd, capture_output=True, encoding="utf-8", check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def rss_mb() -> float:
    """Current resident set size (Linux /proc), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


class PeakRss:
    """Samples RSS every 5 ms in a thread; ``peak`` is the highest value seen."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def child_main(args: argparse.Namespace) -> None:
    ws = prepare(args.workspace, args.child)
    ws.load_embedder(MODEL)
    base = rss_mb()
    t0 = time.perf_counter()
    with PeakRss() as peak:
        ws.sql(f"CONVERT USING {MODEL} OPTIONS (result_col='v') AS SELECT * FROM sample")
    seconds = time.perf_counter() - t0
    one = ws.load_embedder(MODEL).preprocess(
        load_image(ws.resolve(ws.sql("SELECT image_path FROM sample LIMIT 1").fetchone()[0])),
        "image")
    print(json.dumps({"rows": args.child, "seconds": seconds, "rss_before_mb": base,
                      "rss_peak_mb": peak.peak,
                      "decoded_mb": args.child * one.numel() * one.element_size() / 2**20}))


def report(out: dict[str, Any], command: str) -> str:
    lines = [
        "## CONVERT throughput (`benchmarks/convert.py`)", "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}. {out['rows']:,} MNIST test PNGs, model `{out['model']}` "
        f"({out['dim']} dims), batch_size={out['batch']}, {out['workers']} decoding "
        "threads. Forward and CONVERT are interleaved; ratios are within this run.", "",
        "| pipeline | images/s | ÷ forward only |", "|---|---|---|",
        f"| forward only (pre-decoded tensors) | {out['forward']:.0f} | 1.00 |",
        f"| **CONVERT** (SQL, end to end) | {out['convert']:.0f} | "
        f"**{out['convert'] / out['forward']:.2f}** |",
        f"| naive loop (one image at a time) | {out['naive']:.0f} | "
        f"{out['naive'] / out['forward']:.2f} |",
        f"| decode + preprocess only (thread pool) | {out['decode']:.0f} | "
        f"{out['decode'] / out['forward']:.2f} |",
        f"| decode + preprocess only (one thread) | {out['decode_one']:.0f} | "
        f"{out['decode_one'] / out['forward']:.2f} |", "",
        f"CONVERT ÷ naive loop: **{out['convert'] / out['naive']:.1f}×**.",
    ]
    if "growth" in out:
        g = out["growth"]
        lines += ["", "Growth (a fresh process per size; RSS just before CONVERT → peak RSS "
                  "during it, sampled every 5 ms; the output vectors are rows × dims × 4 bytes):",
                  "",
                  "| rows | CONVERT s | s per 1,000 rows | RSS before MB | peak RSS MB | "
                  "peak − before MB | decoded table MB (if held at once) |",
                  "|---|---|---|---|---|---|---|"]
        for r in g:
            lines.append(f"| {r['rows']:,} | {r['seconds']:.1f} | "
                         f"{r['seconds'] / r['rows'] * 1000:.2f} | {r['rss_before_mb']:.0f} | "
                         f"{r['rss_peak_mb']:.0f} | {r['rss_peak_mb'] - r['rss_before_mb']:.0f} | "
                         f"{r.get('decoded_mb', 0):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    command = "python benchmarks/convert.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    text = report(run(args), command.strip())
    print(text)
    if not args.no_write:
        write_section("convert", text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
