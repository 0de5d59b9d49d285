"""Exact SEARCH over 8-bit codes vs the fp32 scan: latency, peak RSS, identical answers.

For each data set, a table ``vecs(id, label, e FLOAT[d])`` is generated in chunks (never
all in memory) and CHECKPOINTed, then searched by fresh child processes so that each peak
RSS is that of one searching process:

* ``fp32 in memory`` — the fp32 cache (``PIXQL_COMPRESS_MIN_MB=-1``): the behaviour before
  codes, one full fp32 copy of the column in the process;
* ``build`` — the first SEARCH with codes: streams the column once into its vector files
  (fp32 unit rows on disk + 8-bit codes);
* ``codes`` — a new session: SEARCH reuses the files (codes in memory, fp32 memory-mapped,
  re-ranking only the shortlist); its peak RSS is taken *before* the comparison below;
  then ``scan='fp32'`` (the same fp32 rows, scanned in full through the memory map) and
  the codes are interleaved query by query, and every answer is compared: rows, order and
  scores must be identical (recall@10 = 1 by construction; the run checks it).

Data sets: ``random`` (unit Gaussian), ``clustered`` (``--clusters`` centres, members at
cosine ≈ 0.86 to their centre; queries are new members), ``mnist`` (the 70,000 MNIST
digits embedded by ``CONVERT USING Pixels``, 784 dims; queries are digit PNGs).

    python benchmarks/search_scale.py --rows 1000000 --dim 512 --data random clustered mnist
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _scale_ivf
from common import CACHE, RESULTS, machine, write_section

import pixql
from pixql.models.base import BuildContext, BuildOptions, BuildResult, Embedder, ModelKind
from pixql.models.registry import register

MEMORY_GBPS = 23.0  # as benchmarks/search.py: this machine class's memory-read figure
CHUNK = 100_000
NOISE = 0.6  # clustered: member = centre + NOISE × N(0, I/d)  (cosine ≈ 0.86 to the centre)


class ScaleOptions(BuildOptions):
    dim: int = 512
    data: str = "random"
    clusters: int = 1000


def centres(dim: int, clusters: int) -> np.ndarray:
    return (np.random.default_rng(12345).standard_normal((clusters, dim), dtype=np.float32)
            / np.sqrt(dim, dtype=np.float32))


class ScaleVectors(Embedder):
    """search_input 'seed:N' → a random unit vector, or a new member of cluster N."""

    modalities = frozenset({"text"})

    def __init__(self, dim: int, data: str, clusters: int) -> None:
        self.dim, self.data, self.clusters = dim, data, clusters
        self.model_id = f"scale/{data}/{dim}"
        self._centres = centres(dim, clusters) if data == "clustered" else None

    def preprocess(self, item: Any, modality: str) -> Any:
        return item

    def forward(self, batch: Any, modality: str) -> np.ndarray:
        out = []
        for s in batch:
            seed = int(str(s).split(":")[-1])
            g = np.random.default_rng(10**9 + seed).standard_normal(self.dim)
            if self._centres is not None:
                g = self._centres[seed % self.clusters] + NOISE * g / np.sqrt(self.dim)
            out.append(g)
        return np.stack(out).astype(np.float32)


@register
class ScaleVectorsKind(ModelKind):
    name: ClassVar[str] = "scalevectors"
    display_name: ClassVar[str] = "ScaleVectors"
    build_options = ScaleOptions
    needs_data: ClassVar[bool] = False

    @classmethod
    def build(cls, ctx: BuildContext, options: BuildOptions) -> BuildResult:
        assert isinstance(options, ScaleOptions)
        return BuildResult(config={"dim": options.dim, "data": options.data,
                                   "clusters": options.clusters},
                           dim=options.dim, modalities=("text",))

    @classmethod
    def load(cls, artifact_dir: Path, config: dict[str, Any]) -> Embedder:
        return ScaleVectors(int(config["dim"]), str(config["data"]), int(config["clusters"]))


def generate(folder: Path, data: str, n: int, d: int, clusters: int,
             duckdb_memory: str | None = None) -> dict[str, Any]:
    """The workspace of one synthetic data set (kept between runs)."""
    marker = folder / "scale.json"
    want = {"data": data, "rows": n, "dim": d, "clusters": clusters, "noise": NOISE}
    if marker.is_file() and {k: v for k, v in json.loads(marker.read_text(encoding="utf-8")).items()
                             if k in want} == want:
        return json.loads(marker.read_text(encoding="utf-8"))
    shutil.rmtree(folder, ignore_errors=True)
    ws = pixql.connect(folder, progress=False)
    if duckdb_memory:
        ws.sql(f"SET memory_limit = '{duckdb_memory}'")
    ws.sql(f"BUILD MODEL m USING ScaleVectors OPTIONS (dim={d}, data='{data}', "
           f"clusters={clusters})")
    cur = ws.cursor()
    cur.execute(f"CREATE TABLE vecs (id BIGINT, label INTEGER, e FLOAT[{d}])")
    t0 = time.perf_counter()
    cs = centres(d, clusters) if data == "clustered" else None
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        rng = np.random.default_rng(s + 7)
        x = rng.standard_normal((m, d), dtype=np.float32)
        label = rng.integers(0, clusters, m)
        if cs is not None:
            x = cs[label] + NOISE * x / np.float32(np.sqrt(d))
        cur.register("src_rows", pa.table({
            "id": np.arange(s, s + m), "label": label.astype(np.int32),
            "e": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), d)}))
        cur.execute("INSERT INTO vecs SELECT * FROM src_rows")
        cur.unregister("src_rows")
        del x
    cur.execute("CHECKPOINT")
    ws.close()
    info = {**want, "generate_s": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps(info))
    return info


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def peak_mb() -> float:
    """This process's peak RSS (MB): ``VmHWM`` of its own address space. (``ru_maxrss`` is
    not: across fork + exec it keeps the parent's peak, e.g. the generating driver's.)"""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- child processes ---------------------------------------------------------------------
def search_sql(spec: dict[str, Any], i: int, k: int, extra: str = "") -> str:
    if spec["data"] == "mnist":
        path = spec["queries"][i % len(spec["queries"])]
        return (f"SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='{path}', "
                f"emb_col='convert_result', top_k={k}{extra}) AS SELECT * FROM digits")
    return (f"SEARCH IMAGE USING m OPTIONS (search_by='text', search_input='seed:{i}', "
            f"emb_col='e', top_k={k}{extra}) AS SELECT * FROM vecs")


def child(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process; prints JSON."""
    ws = pixql.connect(spec["ws"], progress=False)
    if spec.get("duckdb_memory"):
        ws.sql(f"SET memory_limit = '{spec['duckdb_memory']}'")
    if mode.startswith("ivf"):
        return _scale_ivf.child(mode, ws, spec, search_sql, peak_mb)
    k, reps = spec["k"], spec["reps"]
    t0 = time.perf_counter()
    first = ws.sql(search_sql(spec, 0, k))
    out: dict[str, Any] = {"first_s": time.perf_counter() - t0,
                           "reused": ws._vector_cache.reused}
    ids = first.table.column(0)
    assert len(ids) == k
    if mode == "build":
        out["peak_mb"] = peak_mb()
        return out
    t = {"SEARCH": []}  # type: dict[str, list[float]]
    for i in range(1, reps + 1):
        t1 = time.perf_counter()
        ws.sql(search_sql(spec, i, k))
        t["SEARCH"].append(time.perf_counter() - t1)
    out["peak_mb"] = peak_mb()  # before any full fp32 scan
    if mode == "codes":
        out.update(compare(ws, spec, t))
    out["t"] = t
    ws.close()
    return out


def compare(ws: Any, spec: dict[str, Any], t: dict[str, list[float]]) -> dict[str, Any]:
    """Codes and ``scan='fp32'`` interleaved query by query, answers compared; the ranking
    kernels alone too (codes: scan + shortlist re-rank; fp32: full scan)."""
    from pixql.index.compressed import exact_top
    from pixql.index.exact import dot_scores, rank

    k, same = spec["k"], 0
    t.update({"SEARCH scan=fp32": [], "kernel codes": [], "kernel fp32": []})
    entry = next(iter(ws._vector_cache._entries.values()))
    emb = ws.load_embedder("px" if spec["data"] == "mnist" else "m")
    for i in range(1, min(spec["reps"], spec.get("compare") or spec["reps"]) + 1):
        t1 = time.perf_counter()
        a = ws.sql(search_sql(spec, i, k)).table
        t["SEARCH"].append(time.perf_counter() - t1)
        t1 = time.perf_counter()
        b = ws.sql(search_sql(spec, i, k, ", scan='fp32'")).table
        t["SEARCH scan=fp32"].append(time.perf_counter() - t1)
        same += int(a.equals(b))
        q = _query(ws, emb, spec, i)
        t1 = time.perf_counter()
        exact_top(entry.codes, entry.units, q, k, None, entry.valid)
        t["kernel codes"].append(time.perf_counter() - t1)
        t1 = time.perf_counter()
        rank(dot_scores(entry.units, q), k)
        t["kernel fp32"].append(time.perf_counter() - t1)
    return {"identical": f"{same}/{len(t['kernel codes'])}", "mapped": entry.codes.mapped,
            "stats": dict(entry.codes.stats)}


def _query(ws: Any, emb: Any, spec: dict[str, Any], i: int) -> np.ndarray:
    from pixql.index.exact import query_unit

    if spec["data"] == "mnist":
        from PIL import Image

        item = Image.open(ws.resolve(spec["queries"][i % len(spec["queries"])]))
        return query_unit(emb.embed([item], "image")[0])
    return query_unit(emb.embed([f"seed:{i}"], "text")[0])


def run_child(mode: str, spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--spec", json.dumps(spec)]
    got = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, encoding="utf-8",
                         check=False)
    if got.returncode:
        raise RuntimeError(f"child {mode} failed:\n{got.stderr[-3000:]}")
    return dict(json.loads(got.stdout.strip().splitlines()[-1]))


# -- driver -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--data", nargs="+", default=["random", "clustered", "mnist"])
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--no-fp32-memory", action="store_true",
                   help="skip the fp32-in-memory child (it needs rows × dim × 4 bytes of RAM)")
    p.add_argument("--workspaces", type=Path, default=CACHE / "bench" / "search_scale")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--duckdb-memory", help="DuckDB memory_limit for every process (e.g. 2GB)")
    p.add_argument("--compare", type=int, default=0,
                   help="compare codes with scan='fp32' on this many queries (0: all)")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--ivf", type=int, nargs="*", metavar="NPROBE",
                   help="also build an IVF index over the codes and search it at these nprobe "
                        "(default 16 64)")
    p.add_argument("--section", default="search_scale",
                   help="RESULTS.md section to write (search_scale_10m for the big run)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def dataset(args: argparse.Namespace, data: str) -> dict[str, Any]:
    if data == "mnist":
        from _ann_data import prepare

        folder = args.workspaces / "mnist70k"
        ws, _ = prepare(folder, 70_000)
        paths = [r[0] for r in ws.sql("SELECT image_path FROM digits WHERE split = 'test' "
                                      "ORDER BY hash(image_path) LIMIT 64").fetchall()]
        ws.sql("CHECKPOINT")
        ws.close()
        return {"data": data, "ws": str(folder), "rows": 70_000, "dim": 784,
                "queries": paths, "generate_s": None}
    folder = args.workspaces / f"{data}{args.rows}x{args.dim}"
    info = generate(folder, data, args.rows, args.dim, args.clusters, args.duckdb_memory)
    return {"data": data, "ws": str(folder), "rows": args.rows, "dim": args.dim,
            "generate_s": info.get("generate_s")}


def measure(args: argparse.Namespace, data: str) -> dict[str, Any]:
    spec = {**dataset(args, data), "k": args.top_k, "reps": args.reps,
            "duckdb_memory": args.duckdb_memory, "compare": args.compare,
            "nprobe": args.ivf or [16, 64]}
    vec_dir = Path(spec["ws"]) / "indexes"
    shutil.rmtree(vec_dir, ignore_errors=True)  # the build is measured
    out: dict[str, Any] = {"spec": spec}
    if not args.no_fp32_memory:
        out["fp32"] = run_child("fp32", spec, {"PIXQL_COMPRESS_MIN_MB": "-1"})
    codes_env = {"PIXQL_COMPRESS_MIN_MB": "0"}
    out["build"] = run_child("build", spec, codes_env)
    out["files_mb"] = disk_mb(vec_dir)
    out["table_mb"] = os.path.getsize(Path(spec["ws"]) / "pixql.duckdb") / 2**20
    out["codes"] = run_child("codes", spec, codes_env)
    assert out["codes"]["reused"] == 1, "the new session did not reuse the vector files"
    if args.ivf is not None:
        out["ivf_build"] = run_child("ivf_build", spec, codes_env)
        out["ivf"] = run_child("ivf", spec, codes_env)
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def report(rows: list[dict[str, Any]], command: str) -> str:
    largest = max(r["spec"]["rows"] for r in rows)
    lines = [
        f"## SEARCH over 8-bit codes, up to {largest:,} rows: exact"
        + (", and IVF with lists on disk" if any("ivf" in r for r in rows) else "")
        + " (`benchmarks/search_scale.py`)", "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}. top_k={rows[0]['spec']['k']}, "
        f"{rows[0]['spec']['reps']} queries per method. Each column comes from a fresh "
        "process: *fp32 in memory* is the cache as it was before codes "
        "(`PIXQL_COMPRESS_MIN_MB=-1`); *build* is the first SEARCH with codes (streams the "
        "column into its vector files); *codes* is a new session reusing the files (peak RSS "
        "taken before the fp32 comparison), then codes and `scan='fp32'` interleaved query "
        "by query with every answer compared (rows, order and scores). *kernel* = ranking "
        "alone (codes: code scan + shortlist re-rank; fp32: full scan of the same fp32 rows, "
        "memory-mapped and in the page cache); overhead = codes SEARCH p50 − kernel codes "
        f"p50. floor = fp32 bytes / {MEMORY_GBPS:g} GB/s.",
        "",
        "| data | rows × dims | fp32 in memory: SEARCH p50 ms / peak RSS MB | build s / "
        "peak RSS MB | vector files MB (table MB) | codes SEARCH p50 / p95 ms | codes peak "
        "RSS MB | SEARCH scan=fp32 p50 ms | kernel codes / fp32 p50 ms | overhead ms | "
        "**codes SEARCH ÷ floor** | kernel codes ÷ fp32 | identical answers | widened |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, c, b = r["spec"], r["codes"], r["build"]
        t = c["t"]
        floor = s["rows"] * s["dim"] * 4 / (MEMORY_GBPS * 1e9) * 1000
        f32 = (f"{pct(r['fp32']['t']['SEARCH'], 50):.1f} / {r['fp32']['peak_mb']:.0f}"
               if "fp32" in r else "–")
        kc, kf = pct(t["kernel codes"], 50), pct(t["kernel fp32"], 50)
        lines.append(
            f"| {s['data']} | {s['rows']:,} × {s['dim']} | {f32} | {b['first_s']:.1f} / "
            f"{b['peak_mb']:.0f} | {r['files_mb']:.0f} ({r['table_mb']:.0f}) | "
            f"{pct(t['SEARCH'], 50):.1f} / {pct(t['SEARCH'], 95):.1f} | {c['peak_mb']:.0f} | "
            f"{pct(t['SEARCH scan=fp32'], 50):.1f} | {kc:.1f} / {kf:.1f} | "
            f"{pct(t['SEARCH'], 50) - kc:.1f} | "
            f"**{pct(t['SEARCH'], 50) / floor:.2f}** | {kc / kf:.2f} | {c['identical']} | "
            f"{c['stats'].get('widened', 0)} of {c['stats'].get('scans', 0)} scans |")
    lines += _scale_ivf.report(rows, pct)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, json.loads(args.spec))), flush=True)
        return
    command = "python benchmarks/search_scale.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.generate_only:
        for data in args.data:
            print(dataset(args, data), flush=True)
        return
    rows = []
    for data in args.data:
        rows.append(measure(args, data))
        print(report(rows[-1:], command).splitlines()[-1], flush=True)
    text = report(rows, command.strip())
    print(text)
    if not args.no_write:
        write_section(args.section, text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
