"""The ``ann`` section of RESULTS.md from ``benchmarks/ann.py``'s measurements."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING, Any

import _ann_data as data

from pixql.index import ann

if TYPE_CHECKING:
    import argparse

#: breadth option of each kind
BREADTH = {"hnsw": "ef_search", "ivf": "nprobe"}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds >= 0.01 else f"{seconds * 1000:.2f}"


def loads_text(out: dict[str, Any]) -> str:
    (a, b) = out["loads"]
    return f"{a[0]:.1f}/{a[1]:.1f}/{a[2]:.1f} → {b[0]:.1f}/{b[1]:.1f}/{b[2]:.1f}"


def summary(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "**End to end** — `ws.sql(\"SEARCH ... top_k=10\")` p50 (parse, catalog, query "
        "embedding, ranking, fetching the 10 rows), exact and index queries interleaved; "
        "recall@10 against the exact SEARCH's rows:", "",
        "| rows | exact SEARCH p50 ms | index | recall@10 | SEARCH p50 ms | "
        "**speed-up end to end** | kernel p50 ms (exact → index) | kernel speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for out in results:
        ex_sql, ex_k = out["sql"]["exact"][0], out["kernel"]["exact"][0]
        fixed = []
        for name, (t, r) in out["sql"].items():
            if name == "exact":
                continue
            kind, breadth = name.split(" ")[0], int(name.split("=")[1])
            kt = out["kernel"][(kind, breadth)][0]
            fixed.append(t - kt)
            default = " (default)" if breadth == ann.SEARCH_DEFAULTS[kind][BREADTH[kind]] \
                else ""
            lines.append(f"| {out['rows']:,} | {ms(ex_sql)} | {kind} {name.split(' ')[1]}"
                         f"{default} | {r:.3f} | {ms(t)} | **{ex_sql / t:.1f}×** | {ms(ex_k)} "
                         f"→ {ms(kt)} | {ex_k / kt:.1f}× |")
        cost = float(sorted(fixed)[len(fixed) // 2])
        notes.append(f"- {out['rows']:,} rows: an index SEARCH spends ~{ms(cost)} ms outside "
                     "the ranking kernel (SEARCH p50 − kernel p50; parse, catalog, read "
                     "snapshot, query embedding, fetching the 10 rows), which caps the "
                     f"end-to-end speed-up near exact SEARCH ÷ that = {ex_sql / cost:.0f}×.")
    return [*lines, "", *notes]


def kernel_table(out: dict[str, Any]) -> list[str]:
    ex_k = out["kernel"]["exact"][0]
    lines = ["| index | breadth | recall@10 | kernel p50 ms | kernel speed-up vs exact |",
             "|---|---|---|---|---|"]
    for key, (t, r) in out["kernel"].items():
        if key == "exact":
            continue
        kind, breadth = key
        lines.append(f"| {kind} | {BREADTH[kind]}={breadth} | {r:.3f} | {ms(t)} | "
                     f"**{ex_k / t:.1f}×** |")
    return lines


def build_lines(out: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = ["| index | build s (first use) | incl. checksum + saving s | build params |",
             "|---|---|---|---|"]
    for kind, b in out["build"].items():
        how = "loaded; build time recorded when built" if b["loaded"] else f"{b['wall']:.1f}"
        lines.append(f"| {kind} | {b['seconds']:.1f} | {how} | {b['params']} |")
    probe = out.get("hnsw_probe")
    if probe:
        lines += ["", f"HNSW is not built for this table (`--hnsw-max-rows "
                  f"{args.hnsw_max_rows:,}`): with the index module's fixed build parameters "
                  f"{probe['params']} it took {probe['seconds']:.0f} s on the first "
                  f"{probe['rows']:,} rows, which extrapolates (n·log n) to "
                  f"~{probe['estimate'] / 60:.0f} min for {out['rows']:,} rows, against "
                  f"{out['elapsed_s'] / 60:.1f} min for everything else measured on this "
                  "table; its build parameters cannot be lowered through SEARCH OPTIONS. "
                  "`--hnsw-max-rows 2000000` builds it anyway."]
    return lines


def where_lines(out: dict[str, Any]) -> list[str]:
    lines = []
    for where, runs in out["where"].items():
        ft = runs["exact"][0]
        for kind, (t, r, least, note) in runs.items():
            if kind == "exact":
                continue
            how = "answered exactly: " + note.split("(", 1)[1].rstrip(")") \
                if "exact search used" in note else f"answered by the {kind} index"
            lines.append(f"- `WHERE {where}` ({out['filters'][where]}) with `index='{kind}'`, "
                         f"{out['filter_queries']} queries: every query returned ≥ {least} rows "
                         f"(top_k=10), recall@10 {r:.3f}, p50 {ms(t)} ms vs exact {ms(ft)} "
                         f"ms; {how}.")
    return lines


def size_section(out: dict[str, Any], args: argparse.Namespace) -> list[str]:
    rows = out["rows"]
    if out["augmented"]:
        copies = rows // data.MNIST_ROWS - 1
        title = f"### {rows:,} rows: the 70,000 MNIST digits + {copies} augmented copies of each"
        made = (f"Table `digits(image_path, label, split, aug, convert_result FLOAT[{out['dim']}])`"
                f": `aug` 0 = the original digit, 1–{copies} = a copy ({data.recipe_text()}); "
                "every row embedded by the `Pixels` model's forward + postprocess (checked bit "
                "for bit against embedding the copies written as PNGs), inserted through Arrow "
                "in batches of 70,000, then CHECKPOINT; kept on disk between runs")
    else:
        title = f"### {rows:,} rows: the MNIST digits, embedded by CONVERT"
        made = "Table `digits(image_path, label, split, convert_result)` made by `CONVERT USING px`"
    t = out["table"]
    took = "" if t["seconds"] is None else f"{t['seconds']:.0f} s"
    if t["this_run"]:
        made += f" (built in this run{': ' + took if took else ''})."
    else:
        made += f" (kept from an earlier run{' that built it in ' + took if took else ''})."
    ex_k, ex_sql = out["kernel"]["exact"][0], out["sql"]["exact"][0]
    return [
        title, "", made + f" Exact kernel p50 {ms(ex_k)} ms; exact SEARCH p50 {ms(ex_sql)} ms; "
        f"first SEARCH (loads {rows:,} × {out['dim']} vectors into the cache) "
        f"{out['load_s']:.1f} s. Load average (1/5/15 min) start → end of this size: "
        f"{loads_text(out)}.", "",
        *kernel_table(out), "", *build_lines(out, args), "", *where_lines(out), "",
    ]


def report(results: list[dict[str, Any]], command: str, args: argparse.Namespace) -> str:
    cores = len(os.sched_getaffinity(0))
    lines = [
        "## Approximate SEARCH on MNIST raw pixels (`benchmarks/ann.py`)", "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {cores} usable cores (load "
        "averages per size below). Real embeddings: MNIST digits embedded with `Pixels` "
        f"(image_size=28, 784 dims). {args.queries} queries per size, random test digits "
        "(their PNG files; each is also a row of the table, as an original). recall@10 is "
        "against the exact top 10 of the same query. Kernel = ranking over the cached matrix "
        f"(exact: scores + top-k; index: graph/list search + exact re-rank of "
        f"{ann.OVERFETCH}×k candidates), exact and every index breadth interleaved query by "
        "query. Through SQL: each index at its default breadth and "
        f"at the cheapest swept breadth with kernel recall ≥ 0.95 (the next wider one when "
        "that is the default).", "",
        *summary(results), "",
    ]
    for out in results:
        lines += size_section(out, args)
    return "\n".join(lines).rstrip() + "\n"
