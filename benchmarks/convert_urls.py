"""CONVERT of images by path vs by http URL: what reading through the SSRF-safe fetcher costs.

MNIST test PNGs, the same ``--rows`` images in two tables of one workspace: ``t`` names them
by path, ``u`` by ``http://127.0.0.1:PORT/...`` URL (Python's ``http.server`` in a thread,
serving the folder with ETag and Last-Modified; allow-listed with ``url_allow_hosts``). A
Pixels model (no training: the model's cost is small, so the reading shows). For each table,
in one run: the first CONVERT (everything read and embedded) and an unchanged re-run (files:
one ``stat`` per row; URLs: one ``HEAD`` per row, 8 at a time). Writes the
``convert_urls`` section of ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/convert_urls.py --rows 2000
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, unpack_mnist, write_section

import pixql
from tests.remote.servers import serve_folder

STATEMENT = "CONVERT USING q OPTIONS (result_col='e') AS SELECT * FROM {table}"


def copy_images(root: Path, rows: int) -> None:
    mnist = unpack_mnist()
    with open(mnist / "test.csv", encoding="utf-8") as f:
        paths = [r["filepath"] for r in csv.DictReader(f)][:rows]
    for rel in paths:
        dest = root / "imgs" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mnist / rel, dest)


def timed(ws: pixql.Workspace, table: str) -> tuple[float, str]:
    start = time.perf_counter()
    message = ws.sql(STATEMENT.format(table=table)).message
    return time.perf_counter() - start, message


def run(rows: int) -> dict[tuple[str, str], tuple[float, str]]:
    out: dict[tuple[str, str], tuple[float, str]] = {}
    with tempfile.TemporaryDirectory(prefix="pixql-bench-urls-") as d:
        root = Path(d) / "ws"
        copy_images(root, rows)
        with serve_folder(root / "imgs") as base:
            ws = pixql.connect(root, progress=False,
                               url_settings={"url_allow_hosts": ["127.0.0.1"]})
            ws.sql("COPY t OPTIONS (if_exists='replace') FROM 'imgs/'")
            ws.sql("BUILD MODEL q USING Pixels OPTIONS (image_size=28) AS SELECT * FROM t")
            ws.sql(f"CREATE TABLE u AS SELECT '{base}/' || substr(image_path, 6) AS "
                   "image_path FROM t")
            for name, table in (("paths", "t"), ("http URLs", "u")):
                for step in ("first", "re-run"):
                    out[(name, step)] = timed(ws, table)
            ws.close()
    return out


def report(rows: int, out: dict[tuple[str, str], tuple[float, str]], command: str) -> str:
    lines = ["## CONVERT of images by path vs by http URL (`benchmarks/convert_urls.py`)", "",
             f"Command: `{command}`; {machine()}. {rows} MNIST test PNGs, Pixels model; "
             "URLs served by `http.server` on 127.0.0.1 (ETag + Last-Modified), fetched "
             "through pixql's SSRF-safe fetcher.", "",
             "| values | CONVERT | seconds | rows/s | vs paths | message |",
             "|---|---|---|---|---|---|"]
    for (name, step), (secs, msg) in out.items():
        ratio = secs / out[("paths", step)][0]
        lines.append(f"| {name} | {step} | {secs:.2f} | {rows / secs:,.0f} | "
                     f"{ratio:.1f}x | {msg.split(' (')[0]} |")
    lines += ["", "A URL costs a version request (HEAD) before it is read and a GET, each on a "
              "fresh pinned connection (no keep-alive, by design: no connection is reused for "
              "another host name), against a one-process Python server; a re-run asks every "
              "embedded URL's version again (8 at a time)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()
    out = run(args.rows)
    text = report(args.rows, out, "python " + " ".join(["benchmarks/convert_urls.py",
                                                         *sys.argv[1:]]))
    print(text)
    if not args.no_write:
        write_section("convert_urls", text)


if __name__ == "__main__":
    main()
