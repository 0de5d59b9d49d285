"""Approximate SEARCH (HNSW / IVF indexes) vs exact, on real embeddings: MNIST raw pixels.

All 70,000 MNIST digits are embedded with ``Pixels`` (image_size=28 → 784 dims) by CONVERT;
random test digits are the queries. For each index kind and search breadth, in one run:

* recall@10 against the exact top 10 (same query, same rows);
* the ranking kernel's latency (exact scores + top-k over the cached matrix vs the index
  search + exact re-rank of its candidates) and the ratio;
* end-to-end ``ws.sql("SEARCH ...")`` latency (parse, catalog, query embedding, ranking,
  fetching the 10 rows), where fixed costs dilute the ratio;
* a WHERE filter (``label = 3``, 10% of rows): rows returned and recall;
* index build time (the first SEARCH with ``index=...`` builds and saves it).

    .venv/bin/python benchmarks/ann.py
    .venv/bin/python benchmarks/ann.py --queries 50 --no-write
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, machine, unpack_mnist, write_section  # noqa: E402

import pixql  # noqa: E402
from pixql.index import ann, store  # noqa: E402
from pixql.index.exact import dot_scores, rank  # noqa: E402

SWEEP = {"hnsw": [16, 32, 64, 128, 256], "ivf": [4, 8, 16, 32]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=200, help="query digits (200)")
    p.add_argument("--workspace", type=Path, default=CACHE / "bench" / "ann_mnist")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    return p.parse_args(argv)


def prepare(folder: Path) -> Any:
    """Workspace with ``digits`` (70,000 rows) and its Pixels embeddings (kept between runs)."""
    ws = pixql.connect(folder, progress=sys.stderr.isatty())
    done = ws.sql("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'digits' "
                  "AND column_name = 'convert_result'").fetchone()
    if done and done[0] and ws.sql("SELECT count(convert_result) FROM digits").fetchone()[0] \
            == 70_000:
        return ws
    root = unpack_mnist()
    for split in ("train", "test"):
        ws.sql(f"COPY mnist_{split} OPTIONS (if_exists='replace', resolve_paths='filepath') "
               f"FROM '{(root / f'{split}.csv').as_posix()}'")
    ws.sql("CREATE OR REPLACE TABLE digits AS SELECT filepath AS image_path, label, "
           "'train' AS split FROM mnist_train UNION ALL SELECT filepath, label, 'test' "
           "FROM mnist_test")
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=28, overwrite=True)")
    t0 = time.perf_counter()
    ws.sql("CONVERT USING px AS SELECT * FROM digits")
    print(f"CONVERT of 70,000 digits: {time.perf_counter() - t0:.1f} s", flush=True)
    return ws


def search_sql(path: str, extra: str = "", where: str = "") -> str:
    return ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='" + path +
            "', emb_col='convert_result', top_k=10" + extra + ") AS SELECT * FROM digits " + where)


def kernel_run(ws: Any, vecs: Any, qs: np.ndarray, kind: str, breadth: int | None,
               truth: list[set[int]]) -> tuple[float, float]:
    """(median seconds, recall@10) of the ranking kernel alone."""
    from pixql.execution.vectors import TableRef

    table = TableRef("main", "digits", ())
    times, hits = [], 0
    for q, want in zip(qs, truth, strict=True):
        t0 = time.perf_counter()
        if kind == "exact":
            pos = rank(dot_scores(vecs.units, q), 10)
        else:
            key = "ef_search" if kind == "hnsw" else "nprobe"
            got = ann.approximate_search(ws, table, "convert_result", vecs, q, None, 10,
                                         kind, {key: breadth})
            assert not isinstance(got, str), got
            pos = got[0]
        times.append(time.perf_counter() - t0)
        hits += len(set(pos.tolist()) & want)
    return float(np.median(times)), hits / (10 * len(qs))


def sql_run(ws: Any, paths: list[str], extra: str,
            where: str = "") -> tuple[float, list[list[str]]]:
    times, found = [], []
    for p in paths:
        t0 = time.perf_counter()
        res = ws.sql(search_sql(p, extra, where))
        times.append(time.perf_counter() - t0)
        found.append(res.table.column("image_path").to_pylist())
    return float(np.median(times)), found


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True))
    return hits / sum(len(t) for t in truth)


def run(args: argparse.Namespace) -> dict[str, Any]:
    ws = prepare(args.workspace)
    rng = np.random.default_rng(0)
    tests = [r[0] for r in ws.sql("SELECT image_path FROM digits WHERE split = 'test' "
                                  "ORDER BY image_path").fetchall()]
    paths = [tests[i] for i in rng.choice(len(tests), args.queries, replace=False)]
    store.remove_saved(ws.root / "indexes", "digits", None)  # measure the builds
    ws.sql(search_sql(paths[0]))  # loads the cache
    vecs = next(iter(ws._vector_cache._entries.values()))
    emb = ws.load_embedder("px")
    from pixql.images import load_image
    from pixql.index.exact import query_unit

    qs = np.stack([query_unit(emb.embed([load_image(ws.resolve(p))], "image")[0])
                   for p in paths])
    truth_pos = [set(rank(dot_scores(vecs.units, q), 10).tolist()) for q in qs]
    out: dict[str, Any] = {"rows": len(vecs.units), "dim": vecs.units.shape[1], "kernel": {},
                           "build": {}}
    out["kernel"]["exact"] = kernel_run(ws, vecs, qs, "exact", None, truth_pos)
    for kind in ("hnsw", "ivf"):
        t0 = time.perf_counter()
        index = ann.get_index(ws, vecs_table(), "convert_result", vecs, kind)
        out["build"][kind] = (index.build_seconds, time.perf_counter() - t0, index.params)
        for breadth in SWEEP[kind]:
            out["kernel"][(kind, breadth)] = kernel_run(ws, vecs, qs, kind, breadth, truth_pos)
    exact_t, exact_found = sql_run(ws, paths, "")
    out["sql"] = {"exact": (exact_t, 1.0)}
    for kind, extra in (("hnsw", ", index='hnsw'"), ("ivf", ", index='ivf'")):
        t, found = sql_run(ws, paths, extra)
        out["sql"][kind] = (t, recall(found, exact_found))
    where = "WHERE label = 3"
    ft, ffound = sql_run(ws, paths[:50], "", where)
    for kind in ("hnsw", "ivf"):
        t, found = sql_run(ws, paths[:50], f", index='{kind}'", where)
        out[f"where_{kind}"] = (t, ft, recall(found, ffound), min(len(f) for f in found))
    ws.close()
    return out


def vecs_table() -> Any:
    from pixql.execution.vectors import TableRef

    return TableRef("main", "digits", ())


def report(out: dict[str, Any], command: str) -> str:
    ex_k = out["kernel"]["exact"][0]
    ex_sql = out["sql"]["exact"][0]
    lines = [
        "## Approximate SEARCH on MNIST raw pixels (`benchmarks/ann.py`)", "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}. {out['rows']:,} MNIST digits embedded by CONVERT with "
        f"`Pixels` (image_size=28, {out['dim']} dims); queries are test digits; recall@10 is "
        "against the exact top 10 of the same query. Kernel = ranking over the cached "
        "matrix (exact: scores + top-k; index: graph/list search + exact re-rank of "
        f"2×k candidates). Exact kernel p50: {ex_k * 1000:.2f} ms; exact SEARCH through "
        f"SQL p50: {ex_sql * 1000:.1f} ms.", "",
        "| index | breadth | recall@10 | kernel p50 ms | kernel speed-up vs exact |",
        "|---|---|---|---|---|",
    ]
    for key, (t, r) in out["kernel"].items():
        if key == "exact":
            continue
        kind, breadth = key
        name = "ef_search" if kind == "hnsw" else "nprobe"
        lines.append(f"| {kind} | {name}={breadth} | {r:.3f} | {t * 1000:.2f} | "
                     f"**{ex_k / t:.1f}×** |")
    lines += ["", "| through SQL (defaults) | recall@10 | SEARCH p50 ms | vs exact SEARCH | "
              "build s (first use, incl. saving) | build params |", "|---|---|---|---|---|---|"]
    for kind in ("hnsw", "ivf"):
        t, r = out["sql"][kind]
        b, wall, params = out["build"][kind]
        lines.append(f"| {kind} | {r:.3f} | {t * 1000:.1f} | {ex_sql / t:.1f}× | "
                     f"{b:.1f} ({wall:.1f}) | {params} |")
    lines.append("")
    for kind in ("hnsw", "ivf"):
        t, ft, r, least = out[f"where_{kind}"]
        lines.append(f"- `WHERE label = 3` (10% of rows) with `index='{kind}'`: every query "
                     f"returned ≥ {least} rows (top_k=10), recall@10 {r:.3f}, p50 "
                     f"{t * 1000:.1f} ms vs exact {ft * 1000:.1f} ms.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python benchmarks/ann.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    text = report(run(args), command.strip())
    print(text)
    if not args.no_write:
        write_section("ann", text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
