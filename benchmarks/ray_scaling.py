"""CONVERT and BUILD on Ray vs in this process (issue 13), side by side in one run.

CONVERT of MNIST test PNGs with three models: ``Pixels`` (cheap: decoding dominates),
``SimCLR`` (a small_resnet, compute-bound on the CPU) and ``TestPixels sleep_ms=...`` (waits
a fixed time per batch: a model bound by an accelerator, whose host process mostly waits).
Each runs locally and with ``engine='ray'`` on 1, 2, 4 actors (``refresh='all'``, one chunk).
Also measured: Ray's start time, the fixed overhead of a Ray CONVERT (a 16-row table, first
run on a fresh Ray and warm), the driver's commit rate (time inside the chunk writes), the
break-even row count, and a 2-worker Ray BUILD of SimCLR vs a 1-process BUILD with the same
global batch (precision@10 on the test subset). Writes the ``ray`` section of RESULTS.md.
(Not named ``ray.py``: a script's folder comes first on ``sys.path``, and a ``ray.py`` there
would shadow the ``ray`` package, for this script and for Ray's workers.)

    .venv/bin/python benchmarks/ray_scaling.py
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, machine, precision_at_k, unpack_mnist, write_section

import pixql
import pixql.testing.faulty
from pixql.execution import incremental

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4000, help="test images CONVERT embeds")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--sleep-ms", type=float, default=100.0,
                   help="TestPixels wait per batch of 256 (the accelerator stand-in)")
    p.add_argument("--train-rows", type=int, default=6000, help="SimCLR training images")
    p.add_argument("--test-rows", type=int, default=2000, help="images scored by p@10")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="SimCLR seeds (each builds both ways: the spread is the noise)")
    p.add_argument("--workspace", type=Path, default=CACHE / "bench" / "ray")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    p.add_argument("--pool-only", action="store_true",
                   help="only the per-statement vs per-chunk actor pool comparison "
                   "(section ray_pool)")
    p.add_argument("--pool-rows", type=int, default=1600, help="rows of the pool comparison")
    p.add_argument("--pool-chunks", type=int, default=8, help="chunks of the pool comparison")
    p.add_argument("--pool-rounds", type=int, default=2, help="rounds of the pool comparison")
    return p.parse_args(argv)


def timed(db: Any, sql: str) -> tuple[Any, float]:
    t0 = time.perf_counter()
    res = db.sql(sql)
    return res, time.perf_counter() - t0


class CommitClock:
    """Time spent in ChunkWriter.write (the driver's DuckDB commits) and rows written."""

    def __init__(self) -> None:
        self.seconds, self.rows = 0.0, 0
        real = incremental.ChunkWriter.write

        def write(writer: Any, keys: list[Any], emb: Any, sigs: Any) -> None:
            t0 = time.perf_counter()
            real(writer, keys, emb, sigs)
            self.seconds += time.perf_counter() - t0
            self.rows += len(keys)

        incremental.ChunkWriter.write = write  # type: ignore[method-assign]


def setup(db: Any, root: Path, args: argparse.Namespace) -> None:
    for split, n in (("train", args.train_rows), ("test", max(args.rows, args.test_rows))):
        db.sql(f"COPY m_{split} OPTIONS (if_exists='replace', resolve_paths='filepath') "
               f"FROM '{(root / f'{split}.csv').as_posix()}'")
        db.sql(f"ALTER TABLE m_{split} RENAME filepath TO image_path")
        db.sql(f"CREATE OR REPLACE TABLE m_{split} AS SELECT * FROM m_{split} "
               f"ORDER BY hash(image_path) LIMIT {n}")
    db.sql(f"CREATE OR REPLACE TABLE digits AS SELECT * FROM m_test LIMIT {args.rows}")
    db.sql("CREATE OR REPLACE TABLE tiny AS SELECT * FROM m_test LIMIT 16")
    db.sql(f"CREATE OR REPLACE TABLE m_eval AS SELECT * FROM m_test LIMIT {args.test_rows}")
    db.sql("BUILD MODEL px USING Pixels OPTIONS (overwrite=True, image_size=28)")
    db.sql(f"BUILD MODEL wait USING TestPixels OPTIONS (overwrite=True, image_size=28, "
           f"sleep_ms={args.sleep_ms})")
    db.sql("BUILD MODEL sc USING SimCLR OPTIONS (overwrite=True, max_epochs=1, "
           "time_budget=5, batch_size=128) AS SELECT * FROM m_train LIMIT 512")


def setup_pool(db: Any, root: Path, args: argparse.Namespace) -> None:
    """Only what :func:`pool_effect` needs: ``digits`` and the Pixels model."""
    db.sql(f"COPY m_test OPTIONS (if_exists='replace', resolve_paths='filepath') "
           f"FROM '{(root / 'test.csv').as_posix()}'")
    db.sql("ALTER TABLE m_test RENAME filepath TO image_path")
    db.sql(f"CREATE OR REPLACE TABLE digits AS SELECT * FROM m_test ORDER BY hash(image_path) "
           f"LIMIT {args.pool_rows}")
    db.sql("BUILD MODEL px USING Pixels OPTIONS (overwrite=True, image_size=28)")


@contextmanager
def pool_per_chunk(on: bool) -> Iterator[None]:
    """While the block runs (``on``), the Ray engine runs a pipeline (and a pool of actors,
    each loading the model) per chunk, as before pixql 0.3; the engine itself runs one per
    statement."""
    from pixql.execution.raydata.engine import RayEngine

    real = RayEngine.stream

    def per_chunk(engine: RayEngine, chunks: Iterable[Any]) -> Iterator[Any]:
        for chunk in chunks:
            yield from engine.run([chunk])

    if on:
        RayEngine.stream = per_chunk  # type: ignore[method-assign]
    try:
        yield
    finally:
        RayEngine.stream = real  # type: ignore[method-assign]


def pool_effect(db: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same Ray CONVERT (Pixels, 2 actors) in 1 chunk and in ``--pool-chunks`` chunks,
    with one actor pool per statement (now) and one per chunk (before; :func:`pool_per_chunk`),
    interleaved, warm. Extra seconds per chunk = (many − one) / (chunks − 1)."""
    n, chunks = args.pool_rows, args.pool_chunks
    sql = ("CONVERT USING px OPTIONS (result_col='e_pool', refresh='all', chunk_size={c}"
           + ray_opts(2) + ") AS SELECT * FROM digits")
    timed(db, sql.format(c=n))  # warm: Ray's workers started once
    out = []
    for rnd in range(args.pool_rounds):
        for per_chunk in (True, False):
            with pool_per_chunk(per_chunk):
                one = timed(db, sql.format(c=n))[1]
                many = timed(db, sql.format(c=-(-n // chunks)))[1]
            out.append({"round": rnd, "pool": "chunk" if per_chunk else "statement",
                        "one_s": one, "many_s": many,
                        "per_chunk_s": (many - one) / max(1, chunks - 1)})
            print(out[-1], flush=True)
    return out


def pool_table(args: argparse.Namespace, pool: list[dict[str, Any]]) -> list[str]:
    lines = [f"One actor pool per statement vs one per chunk: {args.pool_rows:,} MNIST PNGs, "
             f"Pixels, 2 actors × 1 CPU, warm Ray, in 1 chunk and in {args.pool_chunks} "
             f"chunks; the two ways interleaved, {args.pool_rounds} rounds (median). *Extra s "
             "per chunk* = (many chunks s − 1 chunk s) / (chunks − 1): the fixed price a chunk "
             "adds.", "",
             "| actor pool | 1 chunk s | many chunks s | extra s per chunk | ÷ per statement |",
             "|---|---|---|---|---|"]
    med = {k: {f: float(np.median([r[f] for r in pool if r["pool"] == k]))
               for f in ("one_s", "many_s", "per_chunk_s")} for k in ("chunk", "statement")}
    base = med["statement"]["many_s"]
    for k, label in (("chunk", "per chunk (before)"), ("statement", "per statement (now)")):
        m = med[k]
        lines.append(f"| {label} | {m['one_s']:.1f} | {m['many_s']:.1f} | "
                     f"{m['per_chunk_s']:.2f} | {m['many_s'] / base:.2f} |")
    return [*lines, ""]


def ray_opts(actors: int) -> str:
    return f", engine='ray', num_workers={actors}, cpus_per_worker=1"


def overheads(db: Any) -> dict[str, float]:
    from pixql.distributed.cluster import connect

    t0 = time.perf_counter()
    connect(None, num_cpus=8)  # logical CPUs: room for 4 actors and Ray Data's tasks
    out = {"start": time.perf_counter() - t0}
    sql = "CONVERT USING px OPTIONS (result_col='e', refresh='all'{o}) AS SELECT * FROM tiny"
    out["first"] = timed(db, sql.format(o=ray_opts(1)))[1]
    out["warm"] = min(timed(db, sql.format(o=ray_opts(1)))[1] for _ in range(2))
    out["local"] = min(timed(db, sql.format(o=""))[1] for _ in range(2))
    return out


def throughput(db: Any, args: argparse.Namespace, clock: CommitClock) -> list[dict[str, Any]]:
    rows = []
    for model in ("px", "sc", "wait"):
        for actors in [0, *args.actors]:
            extra = ray_opts(actors) if actors else ""
            sql = (f"CONVERT USING {model} OPTIONS (result_col='e_{model}', refresh='all', "
                   f"chunk_size={args.rows}{extra}) AS SELECT * FROM {{table}}")
            _, tiny = timed(db, sql.format(table="tiny"))  # this configuration's overhead
            before = (clock.seconds, clock.rows)
            _, secs = timed(db, sql.format(table="digits"))
            rows.append({"model": model, "actors": actors, "seconds": secs, "tiny_s": tiny,
                         "commit_s": clock.seconds - before[0],
                         "rows": clock.rows - before[1]})
            print(rows[-1], flush=True)
    return rows


def simclr_builds(db: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    base = (f"BUILD MODEL {{name}} USING SimCLR OPTIONS (overwrite=True, max_epochs="
            f"{args.epochs}, batch_size=256, image_size=28{{extra}}) AS SELECT * FROM m_train")
    out = []
    runs = [(name, extra + f", seed={seed}", seed) for seed in args.seeds
            for name, extra in (("one", ""), ("two", ", engine='ray', num_workers=2"))]
    for name, extra, seed in runs:
        res, secs = timed(db, base.format(name=name, extra=extra))
        db.sql(f"CONVERT USING {name} OPTIONS (result_col='e_{name}', refresh='all') "
               "AS SELECT * FROM m_eval")
        df = db.sql(f"SELECT label, e_{name} FROM m_eval ORDER BY image_path").df()
        p10 = precision_at_k(np.stack(df[f"e_{name}"].to_numpy()), df["label"].to_numpy())
        summary = res.df().iloc[0].to_dict()
        out.append({"name": name, "seed": seed, "seconds": secs, "p10": p10,
                    "final_loss": summary.get("final_loss"), "steps": summary.get("steps")})
        print(out[-1], flush=True)
    return out


def net_rate(args: argparse.Namespace, r: dict[str, Any]) -> float:
    """Rows/s once running: the run less the configuration's 16-row run (0: not measurable)."""
    if not r["actors"]:
        return args.rows / r["seconds"]
    extra = r["seconds"] - r["tiny_s"]
    return (args.rows - 16) / extra if extra > 0 else 0.0


def break_even(local_rate: float, ray_rate: float, overhead: float) -> str:
    """Rows from which a Ray CONVERT (overhead + n / ray_rate) beats local (n / local_rate)."""
    if ray_rate <= local_rate:
        return "never on this machine"
    return f"{overhead / (1 / local_rate - 1 / ray_rate):,.0f}"


def report(args: argparse.Namespace, over: dict[str, float], conv: list[dict[str, Any]],
           builds: list[dict[str, Any]], command: str) -> str:
    names = {"px": "Pixels", "sc": "SimCLR small_resnet", "wait": f"TestPixels sleep_ms="
             f"{args.sleep_ms:g} per batch"}
    lines = [
        "## CONVERT and BUILD on Ray vs local (`benchmarks/ray_scaling.py`)", "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}. Ray 2.60, started by pixql in this process on 127.0.0.1 "
        "(8 logical CPUs, so 4 one-CPU actors fit; there are 2 real cores, shared). "
        f"{args.rows:,} MNIST test PNGs, one chunk, `refresh='all'`, batch_size=256. "
        "All rows of a table come from this one run; each figure is one run at the load shown, "
        "so differences under about a third are noise.", "",
        f"Ray start: **{over['start']:.1f} s**. Fixed overhead of a Ray CONVERT (16 rows, "
        f"Pixels, 1 actor): first run {over['first']:.1f} s, warm **{over['warm']:.1f} s** "
        f"(local: {over['local']:.2f} s). A statement runs one Ray Data pipeline (one actor "
        "pool) over all its chunks, so the warm overhead is paid once per statement.", "",
        "| model | engine | actors | 16 rows s | s | rows/s | ÷ local | marginal rows/s "
        "| commit rows/s | break-even rows |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for model in ("px", "sc", "wait"):
        mine = [r for r in conv if r["model"] == model]
        local = next(r for r in mine if r["actors"] == 0)
        lrate = args.rows / local["seconds"]
        for r in mine:
            rate = args.rows / r["seconds"]
            net = net_rate(args, r)
            commit = r["rows"] / r["commit_s"] if r["commit_s"] else float("nan")
            be = break_even(lrate, net, r["tiny_s"]) if r["actors"] and net else "—"
            shown = f"{net:,.0f}" if net else "n/a (overhead only)"
            lines.append(f"| {names[model]} | {'ray' if r['actors'] else 'local'} | "
                         f"{r['actors'] or '—'} | {r['tiny_s']:.1f} | {r['seconds']:.1f} | "
                         f"{rate:,.0f} | {rate / lrate:.2f} | {shown} | {commit:,.0f} | {be} |")
    lines += ["", "16 rows s: the same CONVERT on a 16-row table (the configuration's fixed "
              "overhead). Marginal rows/s: (rows − 16) / (s − 16 rows s), the rate once the "
              "pipeline runs. Commit rows/s: rows / time inside the driver's chunk writes "
              "(DuckDB UPDATE with provenance, commit). Break-even: the row count from which "
              "`overhead + n / marginal rate` is below `n / local rows/s`; \"never\" where Ray "
              "computes no faster than this process on these 2 shared cores.", ""]
    lines += simclr_table(args, builds)
    lines += projection(args, over, conv)
    return "\n".join(lines)


def simclr_table(args: argparse.Namespace, builds: list[dict[str, Any]]) -> list[str]:
    out = [f"SimCLR BUILD, {args.train_rows:,} training digits, {args.epochs} epochs, global "
           f"batch 256, precision@10 on {args.test_rows:,} test digits:", "",
           "| BUILD | seed | s | steps | final loss | precision@10 |",
           "|---|---|---|---|---|---|"]
    label = {"one": "1 process (local)", "two": "Ray Train, 2 workers × 128 (global negatives)"}
    for b in builds:
        out.append(f"| {label[b['name']]} | {b['seed']} | {b['seconds']:.1f} | {b['steps']} | "
                   f"{b['final_loss']} | {b['p10']:.3f} |")
    for name in ("one", "two"):
        p = [b["p10"] for b in builds if b["name"] == name]
        out.append(f"| {label[name]}: mean over seeds | | | | | **{np.mean(p):.3f}** "
                   f"(range {min(p):.3f}–{max(p):.3f}) |")
    return [*out, "", "The local build uses 2 torch threads, each Ray worker 1 (cpus_per_worker"
            "=1): the times compare two ways of using the same 2 cores, under the load above.",
            ""]


def projection(args: argparse.Namespace, over: dict[str, float],
               conv: list[dict[str, Any]]) -> list[str]:
    """On paper: 10 M images on N nodes, from this run's per-actor rates."""
    out = ["Projection on paper, 10,000,000 images (one statement: the warm overhead once), "
           "one actor per core, 8 cores a node, rates per actor as measured here "
           "with 1 actor (assumes images on shared storage that keeps up, and actors that "
           "scale per core); the driver's commits are serial and bound the total from below:",
           "", "| model | nodes | compute h | commit h (driver) | total h (max + overhead) |",
           "|---|---|---|---|---|"]
    for model in ("px", "sc", "wait"):
        one = next(r for r in conv if r["model"] == model and r["actors"] == 1)
        per_actor = net_rate(args, one) or args.rows / one["seconds"]
        commit = one["rows"] / one["commit_s"] if one["commit_s"] else float("inf")
        for nodes in (1, 4, 16):
            compute = 10e6 / (per_actor * 8 * nodes) / 3600
            write = 10e6 / commit / 3600
            total = max(compute, write) + over["warm"] / 3600
            out.append(f"| {model} | {nodes} | {compute:.2f} | {write:.2f} | {total:.2f} |")
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/ray_scaling.py " + " ".join(shlex.quote(a) for a in given)
    root = unpack_mnist()
    shutil.rmtree(args.workspace, ignore_errors=True)
    db = pixql.connect(args.workspace, progress=False)
    if args.pool_only:
        main_pool(db, root, args, command.strip())
        return
    setup(db, root, args)
    clock = CommitClock()
    over = overheads(db)
    print(over, flush=True)
    conv = throughput(db, args, clock)
    builds = simclr_builds(db, args)
    pool = pool_effect(db, args)
    text = report(args, over, conv, builds, command.strip()) + "\n\n" + "\n".join(
        pool_table(args, pool))
    print(text)
    if not args.no_write:
        write_section("ray", text)
    db.close()


def main_pool(db: Any, root: Path, args: argparse.Namespace, command: str) -> None:
    """``--pool-only``: the pool comparison alone, into section ``ray_pool``."""
    from pixql.distributed.cluster import connect

    setup_pool(db, root, args)
    connect(None, num_cpus=8)
    pool = pool_table(args, pool_effect(db, args))
    text = "\n".join(["## Ray CONVERT: one actor pool per statement (`benchmarks/ray_scaling.py "
                      "--pool-only`)", "", f"Command: `{command}`  ", f"Machine: {machine()}. "
                      "Ray 2.60 started by pixql in this process on 127.0.0.1 (8 logical "
                      "CPUs).", "", *pool])
    print(text)
    if not args.no_write:
        write_section("ray_pool", text)
    db.close()


if __name__ == "__main__":
    main()
