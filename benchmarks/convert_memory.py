"""CONVERT's memory does not grow with the table: peak RSS − RSS before, per table size.

Each size runs in a fresh process: a table is created (``texts``: distinct short texts
embedded by the tiny CLIP of ``pixql.testing``, no files needed — numbers spelled out in
words; ``pngs``: generated 8×8
PNG files embedded by Pixels), then the process's RSS is sampled every 5 ms during one
``CONVERT`` (chunks of 4,096 rows, committed as they are computed). A second CONVERT of the
same table (``refresh='missing'``: nothing to embed) is timed too.

    .venv/bin/python benchmarks/convert_memory.py --texts 10000 100000 1000000 \
        --pngs 10000 100000 200000

Writes the ``convert-memory`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, machine, write_section
from convert import PeakRss, rss_mb

import pixql


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--pngs", type=int, nargs="*", default=[10_000, 100_000, 200_000])
    p.add_argument("--workspace", type=Path, default=CACHE / "bench" / "convert-memory")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per size")
    p.add_argument("--duckdb-memory-limit", default="",
                   help="SET memory_limit for DuckDB's buffer pool (default: DuckDB's, 80%% "
                        "of RAM: its cache of table blocks grows with the table up to that)")
    p.add_argument("--child", nargs=2, metavar=("KIND", "ROWS"), help=argparse.SUPPRESS)
    p.add_argument("--section", default="convert-memory", help="RESULTS.md section to write")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    return p.parse_args(argv)


WORDS = "['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine']"


def prepare_texts(ws: Any, rows: int) -> str:
    from pixql.testing import make_tiny_clip

    if ws.catalog.find_model("tiny") is None:
        folder = make_tiny_clip(ws.root / "tiny-clip")
        ws.sql(f"BUILD MODEL tiny USING CLIP OPTIONS (path='{folder}', backend='torch')")
    # distinct texts from a ten-word vocabulary (the number spelled out digit by digit):
    # open_clip's tokenizer caches every distinct word it meets without bound, so distinct
    # numerals would measure that cache, not CONVERT
    ws.sql(f"CREATE OR REPLACE TABLE texts AS SELECT range AS id, 'a photo of item ' || "
           f"array_to_string(list_transform(string_split(range::VARCHAR, ''), lambda d: "
           f"{WORDS}[d::INT + 1]), ' ') AS text FROM range({rows})")
    return ("CONVERT USING tiny OPTIONS (convert_type='text', text_col='text', "
            "result_col='e', batch_size=256) AS SELECT * FROM texts")


def prepare_pngs(ws: Any, rows: int) -> str:
    import numpy as np
    from PIL import Image

    folder = ws.root / "pngs"
    folder.mkdir(exist_ok=True)
    have = len(list(folder.glob("*.png")))
    rng = np.random.default_rng(have)
    for i in range(have, rows):  # generated once, reused by smaller sizes
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(
            folder / f"{i:07d}.png")
    if ws.catalog.find_model("px") is None:
        ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=8)")
    ws.sql(f"CREATE OR REPLACE TABLE pngs AS SELECT 'pngs/' || lpad(range::VARCHAR, 7, '0') "
           f"|| '.png' AS image_path FROM range({rows})")
    return "CONVERT USING px OPTIONS (result_col='e') AS SELECT * FROM pngs"


PREPARE = {"texts": prepare_texts, "pngs": prepare_pngs}


def child_main(kind: str, rows: int, workspace: Path, limit: str) -> None:
    ws = pixql.connect(workspace / kind, progress=False)
    if limit:
        ws.sql(f"SET memory_limit = '{limit}'")
    statement = PREPARE[kind](ws, rows)
    ws.sql(f"ALTER TABLE {kind} DROP COLUMN IF EXISTS e; "
           f"ALTER TABLE {kind} DROP COLUMN IF EXISTS e__pixql")
    ws.load_embedder("tiny" if kind == "texts" else "px")
    base = rss_mb()
    t0 = time.perf_counter()
    with PeakRss() as peak:
        res = ws.sql(statement)
        print(res, file=sys.stderr)  # the summary and the first rows, fetched lazily
    seconds = time.perf_counter() - t0
    duckdb_mb = ws.sql("SELECT sum(memory_usage_bytes) / 2^20 FROM duckdb_memory()"
                       ).fetchone()[0]
    t1 = time.perf_counter()
    again = ws.sql(statement).message
    print(json.dumps({"kind": kind, "rows": rows, "limit": limit or "default", "seconds": seconds,
                      "rerun_seconds": time.perf_counter() - t1, "rerun": again,
                      "message": res.message, "rss_before_mb": base,
                      "rss_peak_mb": peak.peak, "duckdb_mb": duckdb_mb}))


def run_child(kind: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, str(rows), "--workspace",
           str(args.workspace), "--duckdb-memory-limit", args.duckdb_memory_limit]
    try:
        res = subprocess.run(cmd, capture_output=True, encoding="utf-8", check=True,
                             timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "rows": rows, "limit": args.duckdb_memory_limit or "default",
                "error": f"over {args.timeout:.0f} s"}
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def report(results: list[dict[str, Any]], command: str, load: str, title: str = "") -> str:
    lines = [f"## CONVERT memory vs table size (`benchmarks/convert_memory.py`{title})", "",
             f"Command: `{command}`  ", f"Machine: {load}.", "",
             "A fresh process per size; RSS sampled every 5 ms during one CONVERT "
             "(chunk_size 4,096). DuckDB's own memory: `duckdb_memory()` right after the "
             "CONVERT (its buffer pool: cached table blocks, pending updates). Re-run: the "
             "same CONVERT again (refresh='missing', nothing to embed).", "",
             "| input | DuckDB memory_limit | rows | CONVERT s | RSS before MB | peak RSS MB "
             "| peak − before MB | DuckDB's own memory after MB | re-run s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['limit']} | {r['rows']:,} | not finished "
                         f"({r['error']}) | | | | | |")
            continue
        lines.append(f"| {r['kind']} | {r['limit']} | {r['rows']:,} | {r['seconds']:.1f} | "
                     f"{r['rss_before_mb']:.0f} | {r['rss_peak_mb']:.0f} | "
                     f"{r['rss_peak_mb'] - r['rss_before_mb']:.0f} | "
                     f"{r['duckdb_mb']:.0f} | {r['rerun_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args.child[0], int(args.child[1]), args.workspace,
                   args.duckdb_memory_limit)
        return
    command = "python benchmarks/convert_memory.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results = []
    for kind, sizes in (("texts", args.texts), ("pngs", args.pngs)):
        for n in sizes:
            results.append(run_child(kind, n, args))
            print(json.dumps(results[-1]), flush=True)
    limit = args.duckdb_memory_limit
    text = report(results, command.strip(), machine(),
                  f", DuckDB memory_limit {limit}" if limit else ", DuckDB's default memory_limit")
    print(text)
    if not args.no_write:
        write_section(args.section, text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
