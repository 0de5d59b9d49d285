"""Training benchmark: pixql's SimCLR pipeline against a plain PyTorch loop, same network.

Both arms train the *same* network (pixql's ``small_resnet`` backbone at 28 px and its
projection head, NT-Xent, AdamW, warm-up + cosine schedule, batch 64, temperature 0.1) on
the MNIST training digits for the same time budget ``T``, then embed the 10,000 test digits
and score precision@10 (share of each test image's 10 nearest *other* test images with its
label, :func:`common.precision_at_k`):

- **pixql**: ``BUILD MODEL ... USING SimCLR OPTIONS (batch_size=64, temperature=0.1,
  time_budget=T, ...)`` then ``CONVERT`` of the test table. pixql decodes every image once
  into a ``uint8`` tensor (outside ``T``, reported separately), augments whole batches as
  tensors, trains channels-last under bfloat16 autocast.
- **plain**: ``benchmarks/_plain_simclr.py`` — per-sample torchvision v2 augmentation of
  PIL images in a ``DataLoader``, float32, NCHW, no autocast (see that module's docstring).

Each arm runs in a fresh subprocess, one after the other, with the load average recorded
before and after. Measured per arm: images seen in training / training wall seconds
(images/s; each image is seen in two views), CPU seconds consumed by training (user +
system of the process and its reaped children, so DataLoader workers count; pixql's CPU is
taken around its training loop, and its up-front decoding is reported on its own), the
final loss and precision@10. The section reports the ratios pixql / plain for images/s and
images per CPU-second, and p@10 with the CPU minutes it cost. The raw-pixel ``Pixels``
baseline is built in the pixql arm for reference (``--no-pixels`` skips it).

Run from the repository root::

    .venv/bin/python benchmarks/training.py                    # T = 180 s, writes RESULTS.md
    .venv/bin/python benchmarks/training.py --time-budget 20 --train-limit 2000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, machine, precision_at_k, unpack_mnist, write_section

ARMS = ("pixql", "plain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time-budget", type=float, default=180.0,
                   help="training seconds per arm (180)")
    p.add_argument("--max-epochs", type=int, default=100, help="epoch cap (100)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (64)")
    p.add_argument("--temperature", type=float, default=0.1, help="NT-Xent temperature (0.1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--train-limit", type=int, default=None,
                   help="train on a seeded random sample of N training digits (smoke runs)")
    p.add_argument("--workers", type=int, default=1,
                   help="DataLoader num_workers of the plain loop (1; see _plain_simclr.py)")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                   help="arms to run, in this order (default: pixql plain)")
    p.add_argument("--no-pixels", action="store_true", help="skip the raw-pixel baseline")
    p.add_argument("--workspace", type=Path, default=CACHE / "bench" / "training")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    p.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # internal: one arm
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)  # internal: its JSON
    return p.parse_args(argv)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def training_csv(root: Path, limit: int | None, seed: int) -> Path:
    """``train.csv``, or a CSV of ``limit`` rows sampled with ``seed`` next to it (the CSV
    is sorted by label, so its first rows would all be zeros). Both arms read this file."""
    full = root / "train.csv"
    if not limit:
        return full
    subset = root / f"train_sample{limit}_seed{seed}.csv"
    if not subset.is_file():
        header, *rows = full.read_text(encoding="utf-8").splitlines()
        picked = random.Random(seed).sample(rows, min(limit, len(rows)))
        subset.write_text("\n".join([header, *picked]) + "\n")
    return subset


def cpu_seconds() -> float:
    from _plain_simclr import cpu_seconds as measure

    return measure()


# ---------------------------------------------------------------- the pixql arm

def instrument_training(record: dict[str, float]) -> None:
    """Wrap pixql's training loop to record the CPU seconds it consumes (behaviour unchanged;
    ``kind.py`` calls ``train_simclr`` through its module global)."""
    from pixql.models.simclr import kind

    train = kind.train_simclr

    def timed_train(*args: Any, **kwargs: Any) -> Any:
        cpu0 = cpu_seconds()
        try:
            return train(*args, **kwargs)
        finally:
            record["train_cpu_s"] = cpu_seconds() - cpu0

    kind.train_simclr = timed_train


def run_pixql(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """BUILD SimCLR, CONVERT the test digits, p@10; optionally the Pixels baseline."""
    from simclr_mnist import embeddings, timed

    import pixql

    record: dict[str, float] = {}
    instrument_training(record)
    db = pixql.connect(args.workspace, progress=sys.stderr.isatty())
    for table, csv in (("mnist_train", training_csv(root, args.train_limit, args.seed)),
                       ("mnist_test", root / "test.csv")):
        db.sql(f"COPY {table} OPTIONS (if_exists='replace', resolve_paths='filepath') "
               f"FROM '{csv.as_posix()}'")
        db.sql(f"ALTER TABLE {table} RENAME filepath TO image_path")
    build_sql = (f"BUILD MODEL mnist_training USING SimCLR OPTIONS (batch_size={args.batch_size}, "
                 f"temperature={args.temperature}, time_budget={args.time_budget}, "
                 f"max_epochs={args.max_epochs}, seed={args.seed}, overwrite=True) "
                 f"AS SELECT image_path FROM mnist_train")
    cpu0 = cpu_seconds()
    build, build_s = timed(db, build_sql)
    build_cpu = cpu_seconds() - cpu0
    b = build.iloc[0].to_dict()
    _, embed_s = timed(db, "CONVERT USING mnist_training OPTIONS (result_col='simclr') "
                           "AS SELECT * FROM mnist_test")
    out = {"images": int(b["images"]), "steps": int(b["steps"]), "epochs": int(b["epochs"]),
           "seconds": float(b["seconds"]), "final_loss": float(b["final_loss"]),
           "cpu_s": record["train_cpu_s"], "build_s": build_s,
           "decode_cpu_s": build_cpu - record["train_cpu_s"], "embed_s": embed_s,
           "p10": precision_at_k(*embeddings(db, "simclr"), k=10), "build_sql": build_sql,
           "setup": f"pixql BUILD (mixed_precision={b.get('mixed_precision')}, channels-last, "
                    f"batched tensor augmentation)"}
    if not args.no_pixels:
        timed(db, "BUILD MODEL mnist_pixels USING Pixels OPTIONS (overwrite=True)")
        timed(db, "CONVERT USING mnist_pixels OPTIONS (result_col='pixels') "
                  "AS SELECT * FROM mnist_test")
        out["p10_pixels"] = precision_at_k(*embeddings(db, "pixels"), k=10)
    db.close()
    return out


def run_plain_arm(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from _plain_simclr import PlainConfig, run_plain

    cfg = PlainConfig(batch_size=args.batch_size, temperature=args.temperature,
                      time_budget=args.time_budget, max_epochs=args.max_epochs,
                      seed=args.seed, num_workers=args.workers, threads=usable_cores())
    return run_plain(training_csv(root, args.train_limit, args.seed), root / "test.csv", cfg,
                     lambda v, y: precision_at_k(v, y, k=10))


#: arm name → function running it in this process
RUNNERS = {"pixql": run_pixql, "plain": run_plain_arm}


# ---------------------------------------------------------------- orchestration

def run_arm_subprocess(name: str, argv: list[str]) -> dict[str, Any]:
    """Run one arm in a fresh interpreter; its result, with the load average around it."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, __file__, *argv, "--arm", name, "--result-file", str(result)]
        load_before = os.getloadavg()[0]
        print(f"--- {name} arm (load average {load_before:.1f})", flush=True)
        code = subprocess.call(cmd)
        if code or not result.is_file():
            raise SystemExit(f"the {name} arm failed (exit {code}): {shlex.join(cmd)}")
        out = json.loads(result.read_text(encoding="utf-8"))
    out["load_before"], out["load_after"] = load_before, os.getloadavg()[0]
    out["images_per_s"] = out["images"] / out["seconds"]
    out["images_per_cpu_s"] = out["images"] / out["cpu_s"]
    print(f"--- {name}: {out['images']:,} images in {out['seconds']:.1f} s "
          f"({out['images_per_s']:.0f}/s), {out['cpu_s']:.1f} CPU s, p@10 {out['p10']:.4f}",
          flush=True)
    return out


def ratio(results: dict[str, dict[str, Any]], key: str) -> str:
    return f"{results['pixql'][key] / results['plain'][key]:.2f}x"


def arm_row(name: str, r: dict[str, Any]) -> str:
    cpu_min = r["cpu_s"] / 60
    return (f"| {name} | {r['images']:,} | {r['seconds']:.0f} | {r['images_per_s']:.0f} | "
            f"{r['cpu_s']:.0f} ({r['cpu_s'] / r['seconds']:.2f}/s) | "
            f"{r['images_per_cpu_s']:.0f} | {r['final_loss']:.3f} | **{r['p10']:.4f}** | "
            f"{r['p10'] / cpu_min:.3f} | {r['load_before']:.1f} → {r['load_after']:.1f} |")


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], command: str,
           machine_line: str, wall_s: float) -> str:
    data = f"{args.train_limit:,} sampled" if args.train_limit else "60,000"
    lines = [
        "## Training: pixql SimCLR vs a plain PyTorch loop (`benchmarks/training.py`)", "",
        f"Command: `{command}`  ",
        f"Machine at the start: {machine_line}. Same network (small_resnet 28 px + projection "
        f"head), batch {args.batch_size}, temperature {args.temperature}, AdamW + warm-up/cosine, "
        f"time budget {args.time_budget:.0f} s per arm on {data} training digits; precision@10 "
        "on the 10,000 test digits. Arms ran one after the other in fresh processes.", "",
        "| arm | images seen | train s | images/s | train CPU s (per wall s) | images per "
        "CPU-s | final loss | p@10 | p@10 per CPU-min | load 1-min before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [arm_row(name, r) for name, r in results.items()]
    lines.append("")
    if set(ARMS) <= results.keys():
        lines.append(f"- pixql / plain: **{ratio(results, 'images_per_s')}** images/s, "
                     f"**{ratio(results, 'images_per_cpu_s')}** images per CPU-second.")
    for name, r in results.items():
        lines.append(f"- {name}: {r['setup']}; {r['epochs']} epoch(s) started, {r['steps']} "
                     f"steps; embedding the test set took {r['embed_s']:.1f} s.")
    if "pixql" in results:
        p = results["pixql"]
        lines.append(f"- pixql decodes the training PNGs once before training (outside the "
                     f"budget): BUILD took {p['build_s']:.0f} s wall, decoding etc. "
                     f"{p['decode_cpu_s']:.1f} CPU s on top of training's {p['cpu_s']:.0f}.")
        if "p10_pixels" in p:
            lines.append(f"- Pixels (raw-pixel baseline) p@10: {p['p10_pixels']:.4f}.")
    lines.append(f"- Whole benchmark wall time: {wall_s / 60:.1f} min.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    root = unpack_mnist()
    if args.arm:  # inside one arm's subprocess
        out = RUNNERS[args.arm](args, root)
        args.result_file.write_text(json.dumps(out))
        return
    started, machine_line = time.perf_counter(), machine()
    print(f"machine at the start: {machine_line}", flush=True)
    training_csv(root, args.train_limit, args.seed)  # written once, before the arms
    results = {name: run_arm_subprocess(name, argv) for name in args.arms}
    command = "python benchmarks/training.py " + shlex.join(argv)
    text = report(args, results, command.strip(), machine_line, time.perf_counter() - started)
    print(text)
    if not args.no_write:
        write_section("training", text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
