"""Ablation: what each change to pixql's SimCLR recipe buys at ThanoSQL's defaults.

Trains pixql's SimCLR (the same backbone, head, loss, augmentation and training loop that
``BUILD MODEL ... USING SimCLR`` runs, called directly on decoded MNIST tensors so that no
arm pays for PNG decoding) once per *arm*, each arm adding one change to the one before,
all in one run so that the machine's load hits every arm alike. Every arm uses
``batch_size=256`` and ``max_epochs=1`` (the tutorial's BUILD) unless ``--max-epochs`` says
otherwise, and reports precision@10 of the backbone's features on MNIST test digits, next to
raw pixels. Writes the ``simclr_recipe`` section of ``benchmarks/RESULTS.md``.

Run from the repository root::

    .venv/bin/python benchmarks/simclr_recipe.py                       # as in RESULTS.md
    .venv/bin/python benchmarks/simclr_recipe.py --train 5000 --test 1000 --no-write
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, precision_at_k, unpack_mnist, write_section

from pixql.models.simclr.backbone import backbone_spec, build_backbone, feature_dim
from pixql.models.simclr.data import channel_stats
from pixql.models.simclr.heads import ProjectionHead
from pixql.models.simclr.train import SimCLRNet, TrainConfig, train_simclr
from pixql.models.simclr.transforms import AugmentConfig, MultiViewTransform, SimCLRTransform


@dataclass(frozen=True)
class Arm:
    """One recipe: the options that differ from pixql's current defaults."""

    label: str
    views: int = 8
    temperature: float = 0.2
    zoom_and_shift: bool = True
    learning_rate: float = 2e-3


#: each arm adds one change to the one before (the fifth is pixql's default at max_epochs=1);
#: the last is a control that takes one change back out of the default
ARMS = (
    Arm("before (2 views, temperature 0.1, crop-only geometry)", views=2, temperature=0.1,
        zoom_and_shift=False),
    Arm("+ temperature 0.2", views=2, zoom_and_shift=False),
    Arm("+ zoom-out and shifts in the augmentation", views=2),
    Arm("+ 4 views per image", views=4),
    Arm("+ 8 views per image (views='auto' at max_epochs=1: the default)", views=8),
    Arm("control: the default without zoom-out and shifts", views=8, zoom_and_shift=False),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=20_000, help="training digits (20,000)")
    p.add_argument("--test", type=int, default=2_000, help="test digits scored (2,000)")
    p.add_argument("--max-epochs", type=int, default=1, help="epochs per arm (1)")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (256)")
    p.add_argument("--arms", type=int, nargs="+", help="run only these arm numbers (1-based)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    return p.parse_args(argv)


def load_split(root: Path, split: str, limit: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """A seeded random sample of ``limit`` digits of ``split`` as ``uint8 (n, 1, 28, 28)``."""
    from PIL import Image

    _, *rows = (root / f"{split}.csv").read_text().splitlines()
    pick = np.random.default_rng(seed).permutation(len(rows))[:limit]
    paths = [rows[i].split(",") for i in pick]
    arr = np.stack([np.array(Image.open(root / p).convert("L")) for p, _ in paths])
    return torch.from_numpy(arr).unsqueeze(1), np.array([int(lbl) for _, lbl in paths])


def augment(arm: Arm) -> AugmentConfig:
    aug = AugmentConfig.from_strength(1.0, image_size=28)
    return aug if arm.zoom_and_shift else replace(aug, zoom_out=1.0, translate=0.0)


def train_arm(arm: Arm, train: torch.Tensor, args: argparse.Namespace) -> tuple[Any, dict]:
    """Train one arm; return its backbone, normalisation and the training summary."""
    torch.manual_seed(args.seed)
    backbone = build_backbone(backbone_spec("auto", image_size=28, in_channels=1,
                                            pretrained=False))
    dim = feature_dim(backbone)
    net = SimCLRNet(backbone, ProjectionHead(dim, max(512, dim), 128))
    mean, std = channel_stats(train)
    views = MultiViewTransform(SimCLRTransform(augment(arm), mean=mean, std=std),
                               n_views=arm.views)
    cfg = TrainConfig(max_epochs=args.max_epochs, batch_size=args.batch_size,
                      learning_rate=arm.learning_rate, temperature=arm.temperature,
                      seed=args.seed, mixed_precision=_bf16())
    stats = train_simclr(net, train, views, cfg, progress=sys.stderr.isatty())
    return (backbone, mean, std), stats.summary()


def _bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover
        return False


def embed(model: Any, images: torch.Tensor) -> np.ndarray:
    backbone, mean, std = model
    x = (images.float() / 255.0 - mean[0]) / std[0]
    backbone.eval()
    with torch.inference_mode():
        return torch.cat([backbone(b.contiguous(memory_format=torch.channels_last))
                          for b in x.split(1000)]).float().numpy()


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = unpack_mnist()
    train, _ = load_split(root, "train", args.train, args.seed)
    test, labels = load_split(root, "test", args.test, args.seed + 1)
    out: dict[str, Any] = {"machine": machine(), "arms": [],
                           "pixels": precision_at_k(test.flatten(1).float().numpy(), labels)}
    chosen = [ARMS[i - 1] for i in args.arms] if args.arms else list(ARMS)
    for arm in chosen:
        t0 = time.perf_counter()
        model, summary = train_arm(arm, train, args)
        p10 = precision_at_k(embed(model, test), labels)
        row = {"arm": arm, "p10": p10, "seconds": time.perf_counter() - t0, "build": summary}
        print(f"{arm.label}: p@10 {p10:.4f} ({row['seconds']:.0f} s, "
              f"{summary['steps']} steps)", flush=True)
        out["arms"].append(row)
    return out


def report(args: argparse.Namespace, out: dict[str, Any], command: str) -> str:
    lines = [
        "## SimCLR recipe ablation (`benchmarks/simclr_recipe.py`)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {out['machine']} (shared: timings are noisy, precision is not).",
        "",
        f"{args.train:,} MNIST training digits (seeded sample), batch_size={args.batch_size}, "
        f"max_epochs={args.max_epochs}, seed {args.seed}; precision@10 of the backbone's "
        f"features over {args.test:,} test digits. Each arm adds one change to the arm above "
        "(the control takes one out of the default).",
        "",
        "| arm | precision@10 | change | train s |",
        "|---|---|---|---|",
    ]
    prev = None
    for row in out["arms"]:
        delta = "" if prev is None else f"{row['p10'] - prev:+.4f}"
        lines.append(f"| {row['arm'].label} | {row['p10']:.4f} | {delta} | "
                     f"{row['build']['seconds']:.0f} |")
        prev = row["p10"]
    lines.append(f"| raw pixels (no training) | {out['pixels']:.4f} | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python benchmarks/simclr_recipe.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    out = run(args)
    text = report(args, out, command.strip())
    print(text)
    if not args.no_write:
        write_section("simclr_recipe", text, RESULTS)
        print(f"updated {RESULTS}")


if __name__ == "__main__":
    main()
