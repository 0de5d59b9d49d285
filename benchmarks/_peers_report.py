"""The ``peers`` section of RESULTS.md from ``benchmarks/peers.py``'s results."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING, Any

import _peers_data as data

if TYPE_CHECKING:
    import argparse

#: recall a method needs to count as exact / as a usable ANN setting in the summary
EXACT_RECALL, ANN_RECALL = 0.999, 0.95


def vss_note() -> str:
    """Whether DuckDB's vss extension (HNSW) loads here, in words."""
    try:
        import duckdb
    except ImportError:
        return "DuckDB is not installed"
    con = duckdb.connect()
    for stmt in ("LOAD vss", "INSTALL vss"):
        try:
            con.execute(stmt)
            if stmt == "INSTALL vss":
                con.execute("LOAD vss")
            return f"DuckDB's `vss` extension loads here ({stmt}) but is not measured yet"
        except Exception as e:  # noqa: BLE001  (any failure means: not available)
            err = str(e).splitlines()[0]
    return (f"DuckDB's `vss` extension (HNSW) is not measured: it is not bundled with the "
            f"Python wheel and `INSTALL vss` downloads it, which fails offline ({err[:90]}…)")


def num(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "–"
    return f"{x:.2f}" if digits == 1 and x < 1 else f"{x:,.{digits}f}"


def method_rows(name: str, res: dict[str, Any]) -> list[str]:
    if "skipped" in res or "error" in res:
        return [f"| {name} | {res.get('skipped') or res.get('error')} |" + " |" * 13]
    b, s = res["build"], res["search"]
    if "error" in s:
        return [f"| {name} | search: {s['error']} |" + " |" * 13]
    lines = []
    for i, (mname, m) in enumerate(s["methods"].items()):
        f = m.get("filtered")
        filt = (f"{f['rows_min']} | {f['recall']:.3f} | {num(f['p50'])}" if f
                else "not offered | – | –")
        first = i == 0
        lines.append(
            f"| {name if first else ''} | {mname} | {m['kind']} | {num(m['p50'])} / "
            f"{num(m['p95'])} | {m['recall']:.3f} | {filt} | "
            f"{num(b['build_s']) if first else ''} | "
            f"{num(b['rss_peak_mb'], 0) if first else ''} | "
            f"{num(s['rss_peak_mb'], 0) if first else ''} | "
            f"{num(b['disk_mb'], 0) if first else ''} | {m['n']} | "
            f"{num(res.get('load'), 1) if first else ''} | "
            f"{num(s.get('probe_ms')) if first else ''} |")
    return lines


def best(results: dict[str, Any], kind: str, floor: float,
         key: str = "p50") -> tuple[str, float] | None:
    """(system · method, value) of the fastest method of ``kind`` with recall ≥ floor."""
    cands = []
    for name, res in results.items():
        for mname, m in res.get("search", {}).get("methods", {}).items():
            if m["kind"] == kind and m["recall"] >= floor:
                cands.append((m[key], f"{name} · {mname}"))
    if not cands:
        return None
    v, who = min(cands)
    return who, v


def summary(key: str, results: dict[str, Any]) -> list[str]:
    out = []
    ex = best(results, "exact", EXACT_RECALL)
    ann = best(results, "ann", ANN_RECALL)
    pix = results.get("pixql", {}).get("search", {}).get("methods", {}).get("SEARCH exact")
    peer = best({n: r for n, r in results.items() if not n.startswith("pixql")}, "exact",
                EXACT_RECALL)
    if ex:
        line = f"fastest exact (recall ≥ {EXACT_RECALL}): **{ex[0]}** {num(ex[1])} ms"
        if pix and peer:
            line += (f"; pixql exact SEARCH {num(pix['p50'])} ms = {pix['p50'] / peer[1]:.2f}× "
                     f"the fastest exact peer ({peer[0]})")
        out.append(line)
    if ann:
        line = f"fastest ANN with recall@10 ≥ {ANN_RECALL}: **{ann[0]}** {num(ann[1])} ms"
        mine = best({n: r for n, r in results.items() if n.startswith("pixql")}, "ann",
                    ANN_RECALL)
        if mine and not ann[0].startswith("pixql"):
            line += f"; pixql's: {mine[0]} {num(mine[1])} ms"
        out.append(line)
    else:
        out.append(f"no ANN setting reached recall@10 {ANN_RECALL}")
    rss = [(r["search"]["rss_peak_mb"], n) for n, r in results.items()
           if "rss_peak_mb" in r.get("search", {})]
    if rss:
        lo = min(rss)
        out.append(f"smallest searching process: **{lo[1]}** {lo[0]:,.0f} MB peak RSS")
    short = sorted({f"{n} · {mn} (≥ {m['filtered']['rows_min']} rows, recall "
                    f"{m['filtered']['recall']:.2f})"
                    for n, r in results.items()
                    for mn, m in r.get("search", {}).get("methods", {}).items()
                    if m.get("filtered") and m["filtered"]["rows_min"] < 10})
    out.append("filtered top_k short of 10 rows: " + ("; ".join(short) if short else "none"))
    weak = sorted({f"{n} · {mn} ({m['filtered']['recall']:.2f} vs {m['recall']:.2f} unfiltered)"
                   for n, r in results.items()
                   for mn, m in r.get("search", {}).get("methods", {}).items()
                   if m.get("filtered") and m["filtered"]["rows_min"] >= 10
                   and m["recall"] >= ANN_RECALL and m["filtered"]["recall"] < ANN_RECALL})
    if weak:
        out.append(f"filtered recall below {ANN_RECALL} where the unfiltered one is not: "
                   + "; ".join(weak))
    return [f"- **{key}**: " + "; ".join(out) + "."]


def set_section(key: str, results: dict[str, Any]) -> list[str]:
    by_command: dict[str, list[str]] = {}
    for name, r in results.items():
        by_command.setdefault(r.get("command", "?"), []).append(name)
    lines = [f"### {key}", "",
             *(f"Command: `{c}` ({', '.join(names)})  " for c, names in by_command.items()),
             "",
             "| system | method | kind | p50 / p95 ms | recall@10 | filtered: fewest rows "
             "(of 10) | filtered recall@10 | filtered p50 ms | build s | build peak RSS MB | "
             "search peak RSS MB | disk MB | queries | load | probe ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        lines += method_rows(name, res)
    notes = []
    for name, res in results.items():
        ms = res.get("search", {}).get("methods", {})
        if ms:
            first = next(iter(ms.values()))
            if first.get("note"):
                notes.append(f"{name}: {first['note']}")
        if res.get("build", {}).get("note"):
            notes.append(f"{name} build: {res['build']['note']}")
    return [*lines, "", *(f"- {n}" for n in notes), ""]


def report(allres: dict[str, Any], command: str, args: argparse.Namespace) -> str:
    cores = len(os.sched_getaffinity(0))
    abouts: dict[str, str] = {}
    for res in allres.values():
        for name, r in res.items():
            abouts.setdefault(name, r.get("about", ""))
    lines = [
        "## pixql vs peers: the same vectors and queries through each system "
        "(`benchmarks/peers.py`)", "",
        f"Command: `{command}` (each set below names the run that measured it)  ",
        f"Machine: {platform.machine()}, {cores} usable cores (how busy: the *load* and "
        "*probe* columns; systems run one after another, each in its own processes — a build "
        "process, then a search process, so each peak RSS is that system's own, imports "
        "included). Data "
        f"(`benchmarks/_peers_data.py`): unit vectors, *random* (Gaussian) or *clustered* "
        f"({data.CLUSTERS} centres, noise norm {data.NOISE}); queries are fresh draws of the same "
        f"kind; `label = id % 10`, the filter `label = {data.FILTER_LABEL}` keeps 10% of the "
        "rows. One query at a time, top_k=10, after 3 warm-up queries (*load*: the 1-minute load "
        "average when the system finished searching; *probe*: the median time of a fixed "
        "single-threaded task, 10 scans of a 4 MB matrix, run between its queries — about "
        "1 ms on a quiet core, so it shows how much CPU that system got); recall@10 against "
        "numpy's exact float32 top 10 (filtered: the exact top 10 among the filtered rows). "
        "HNSW everywhere M=16, ef_construction=100; IVF nlist ≈ sqrt(rows).", "",
        "Systems:", "", *(f"- **{n}**: {a}" for n, a in abouts.items()), "",
        f"- {vss_note()}.", "", "**Who wins where**", "",
    ]
    for key, res in allres.items():
        lines += summary(key, res)
    lines.append("")
    for key, res in allres.items():
        lines += set_section(key, res)
    return "\n".join(lines).rstrip() + "\n"
