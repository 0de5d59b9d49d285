"""``search_scale.py --ivf``: an IVF index over the 8-bit codes at scale, its lists streamed to
disk and memory-mapped (``pixql.index.ivf_file``).

Two fresh child processes after the codes run:

* ``ivf_build`` — a session whose first ``index='ivf'`` SEARCH builds the index (the vector
  files are reused): build time (the sidecar's ``build_seconds``) and the process's peak RSS;
* ``ivf`` — a new session: the index is memory-mapped from its file; per ``nprobe``, the
  queries' SEARCH p50/p95 and peak RSS (taken before any exact SEARCH), then the exact SEARCH
  of the same queries (codes + shortlist, the answer IVF is measured against): recall@10.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SearchSql = Callable[[dict[str, Any], int, int, str], str]


def _sidecar(ws_root: str) -> dict[str, Any]:
    import json

    found = sorted(Path(ws_root, "indexes").rglob("ivf.json"))
    return json.loads(found[0].read_text(encoding="utf-8")) if found else {}


def index_mb(ws_root: str) -> float:
    return sum(f.stat().st_size for f in Path(ws_root, "indexes").rglob("ivf.*")) / 2**20


def child(mode: str, ws: Any, spec: dict[str, Any], search_sql: SearchSql,
          peak_mb: Callable[[], float]) -> dict[str, Any]:
    k = spec["k"]
    if mode == "ivf_build":
        t0 = time.perf_counter()
        got = ws.sql(search_sql(spec, 0, k, ", index='ivf'"))
        assert "approximate" in got.message, got.message
        first_s, meta = time.perf_counter() - t0, _sidecar(spec["ws"])
        return {"first_s": first_s, "peak_mb": peak_mb(), "build_s": meta.get("build_seconds"),
                "nlist": meta.get("params", {}).get("nlist"), "index_mb": index_mb(spec["ws"])}
    queries = range(1, spec["reps"] + 1)
    out: dict[str, Any] = {"nprobe": {}}
    t0 = time.perf_counter()
    first = ws.sql(search_sql(spec, 0, k, ", index='ivf'"))
    out["load_s"] = time.perf_counter() - t0
    assert "approximate" in first.message, first.message
    ids: dict[int, list[list[Any]]] = {}
    for nprobe in spec["nprobe"]:
        times, ids[nprobe] = [], []
        for i in queries:
            t1 = time.perf_counter()
            got = ws.sql(search_sql(spec, i, k, f", index='ivf', nprobe={nprobe}"))
            times.append(time.perf_counter() - t1)
            ids[nprobe].append(got.table.column(0).to_pylist())
        out["nprobe"][nprobe] = {"t": times}
    out["peak_mb"] = peak_mb()  # before any exact scan
    exact_t, exact = [], []
    for i in queries:
        t1 = time.perf_counter()
        exact.append(ws.sql(search_sql(spec, i, k, "")).table.column(0).to_pylist())
        exact_t.append(time.perf_counter() - t1)
    out["exact_t"] = exact_t
    for nprobe, found in ids.items():
        out["nprobe"][nprobe]["recall"] = float(np.mean(
            [len(set(a) & set(b)) / len(b) for a, b in zip(found, exact, strict=True)]))
    return out


def report(rows: list[dict[str, Any]], pct: Callable[[list[float], float], float]) -> list[str]:
    lines = [
        "", "IVF over the 8-bit codes (`--ivf`): lists streamed to the index file at build, "
        "memory-mapped when searched. *build* = the sidecar's `build_seconds` (training on "
        "64 rows a list + two streaming passes) and the building process's peak RSS (the "
        "vector files reused); *search* = a new session, SEARCH `index='ivf'` end to end; "
        "peak RSS before any exact SEARCH; recall@10 against the exact SEARCH of the same "
        "queries, whose p50 is the last column.", "",
        "| data | rows × dims | nlist | build s / peak RSS MB | index file MB | nprobe | "
        "IVF SEARCH p50 / p95 ms | recall@10 | search peak RSS MB | exact ÷ IVF (p50) | "
        "exact SEARCH p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "ivf" not in r:
            continue
        s, b, v = r["spec"], r["ivf_build"], r["ivf"]
        exact = pct(v["exact_t"], 50)
        for nprobe, m in v["nprobe"].items():
            p50 = pct(m["t"], 50)
            lines.append(
                f"| {s['data']} | {s['rows']:,} × {s['dim']} | {b['nlist']} | "
                f"{b['build_s']:.0f} / {b['peak_mb']:.0f} | {b['index_mb']:.0f} | {nprobe} | "
                f"{p50:.1f} / {pct(m['t'], 95):.1f} | {m['recall']:.3f} | "
                f"{v['peak_mb']:.0f} | **{exact / p50:.0f}×** | {exact:.1f} |")
    return lines
