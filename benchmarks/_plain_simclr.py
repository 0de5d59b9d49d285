"""The baseline of ``benchmarks/training.py``: SimCLR on MNIST written the textbook way.

The network is literally pixql's (``small_resnet`` backbone built from the same spec, the
same projection head, NT-Xent loss, AdamW parameter groups and warm-up + cosine schedule,
all imported from :mod:`pixql.models.simclr`), and so are the hyperparameters (the
``SimCLR`` BUILD defaults, batch size and temperature from the caller). Everything *around*
the network is the way tutorials write it:

- a map-style :class:`~torch.utils.data.Dataset` that opens each PNG with PIL when asked;
- ``torchvision.transforms.v2`` applied per sample to PIL images: the standard SimCLR
  recipe (random resized crop, colour jitter, Gaussian blur) adapted to grey digits (no
  flips, no saturation/hue/greyscale; rotation, shear and noise added), with the same
  magnitudes as pixql's default augmentation, then ``Normalize`` with the usual MNIST
  constants;
- a :class:`~torch.utils.data.DataLoader` (shuffle, ``drop_last``), float32, contiguous
  (NCHW) tensors, no autocast.

``num_workers`` defaults to 1 (``--workers``). Producing one batch (64 PNGs opened and
augmented twice) costs about 0.1 CPU-second, a sizeable share of a training step (0.15-0.3
CPU-seconds on the 2-core development machine), so with ``num_workers=0`` the model waits
for it every step; one worker process overlaps it with the step, and on 2 cores, next to the
main process's torch threads, one is the most that can run in parallel (more would only
compete for the same cores). Workers are forked so that their CPU time is charged to this
process (``RUSAGE_CHILDREN`` once the loader's iterator has joined them).
"""

from __future__ import annotations

import csv
import gc
import resource
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pixql.models.simclr.backbone import backbone_spec, build_backbone
from pixql.models.simclr.heads import ProjectionHead
from pixql.models.simclr.kind import SimCLROptions
from pixql.models.simclr.loss import NTXentLoss
from pixql.models.simclr.train import SimCLRNet, TrainConfig, lr_factor

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

#: the usual MNIST normalisation constants (mean and std of the training pixels)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
#: MNIST's side in pixels
SIDE = 28


@dataclass(frozen=True)
class PlainConfig:
    """One plain run: the BUILD defaults of ``SimCLR`` unless the caller overrides them."""

    batch_size: int = 64
    temperature: float = 0.1
    time_budget: float = 180.0
    max_epochs: int = 100
    seed: int = 0
    num_workers: int = 1
    threads: int = 2  # torch intra-op threads in the main process (pixql uses usable cores)


def read_split(path: Path) -> tuple[list[Path], np.ndarray]:
    """Absolute image paths and labels from one of the dataset's CSVs (``filepath,label``)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [path.parent / r["filepath"] for r in rows], np.array([int(r["label"]) for r in rows])


def simclr_augment() -> Callable[[Any], torch.Tensor]:
    """The per-sample SimCLR augmentation (torchvision v2, PIL in, normalised tensor out)."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomResizedCrop(SIDE, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
        v2.RandomAffine(degrees=15, shear=10),
        v2.ColorJitter(brightness=0.3, contrast=0.4),
        v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.0))], p=0.5),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomApply([v2.GaussianNoise(sigma=0.05)], p=0.5),
        v2.Normalize(MNIST_MEAN, MNIST_STD),
    ])


def plain_preprocess() -> Callable[[Any], torch.Tensor]:
    """Test-time preprocessing: PIL → normalised float tensor, nothing random."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(MNIST_MEAN, MNIST_STD)])


class ImageFiles(Dataset):
    """Opens ``paths[i]`` as a grey PIL image and returns ``views`` transformed copies
    (a tuple when ``views > 1``, else one tensor)."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Any], torch.Tensor],
                 views: int = 1) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.views = views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            img = im.convert("L")
        if self.views == 1:
            return self.transform(img)
        return tuple(self.transform(img) for _ in range(self.views))


def build_net() -> SimCLRNet:
    """pixql's SimCLR network for 28x28 grey images: small_resnet + projection head."""
    d = SimCLROptions()
    spec = backbone_spec("auto", image_size=SIDE, in_channels=1, pretrained=False)
    backbone = build_backbone(spec)
    head = ProjectionHead(backbone.feature_dim, max(512, backbone.feature_dim), d.projection_dim)
    return SimCLRNet(backbone, head)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_loader(paths: Sequence[Path], cfg: PlainConfig) -> DataLoader:
    """Shuffled two-view batches of augmented digits."""
    workers = cfg.num_workers
    return DataLoader(ImageFiles(paths, simclr_augment(), views=2), batch_size=cfg.batch_size,
                      shuffle=True, drop_last=True, num_workers=workers,
                      generator=torch.Generator().manual_seed(cfg.seed),
                      multiprocessing_context="fork" if workers else None)


def make_optimizer(net: SimCLRNet, tc: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on weights only (as pixql's loop)."""
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=tc.learning_rate)


def train_plain(net: SimCLRNet, loader: DataLoader, cfg: PlainConfig) -> dict[str, Any]:
    """The textbook loop; stops after ``max_epochs`` or once the time budget is spent (the
    step crossing it finishes). The learning rate follows pixql's schedule on progress =
    max(share of steps, share of the budget)."""
    d = SimCLROptions()
    tc = TrainConfig(learning_rate=d.learning_rate, weight_decay=d.weight_decay)
    loss_fn, opt = NTXentLoss(cfg.temperature), make_optimizer(net, tc)
    total_steps = len(loader) * cfg.max_epochs
    steps = images = epochs = 0
    losses: list[float] = []
    net.train()
    start = time.perf_counter()
    while epochs < cfg.max_epochs and time.perf_counter() - start < cfg.time_budget:
        epochs += 1
        for x0, x1 in loader:
            progress = max(steps / total_steps, (time.perf_counter() - start) / cfg.time_budget)
            for group in opt.param_groups:
                group["lr"] = tc.learning_rate * lr_factor(progress, tc.warmup)
            z = net(torch.cat([x0, x1]))
            loss = loss_fn(z[:len(x0)], z[len(x0):])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps, images = steps + 1, images + len(x0)
            losses.append(float(loss.detach()))
            if time.perf_counter() - start >= cfg.time_budget:
                break
    seconds = time.perf_counter() - start
    net.eval()
    tail = losses[-20:]
    return {"images": images, "steps": steps, "epochs": epochs, "seconds": seconds,
            "final_loss": sum(tail) / max(1, len(tail))}


def embed(backbone: torch.nn.Module, paths: Sequence[Path], batch_size: int = 256) -> np.ndarray:
    """Pooled backbone features of every image, in order (eval mode, inference mode)."""
    loader = DataLoader(ImageFiles(paths, plain_preprocess()), batch_size=batch_size)
    backbone.eval()
    with torch.inference_mode():
        return torch.cat([backbone(x) for x in loader]).numpy()


def run_plain(train_csv: Path, test_csv: Path, cfg: PlainConfig,
              precision: Callable[[np.ndarray, np.ndarray], float]) -> dict[str, Any]:
    """Train on ``train_csv``, embed ``test_csv``, score with ``precision(vectors, labels)``.

    Returns training images/wall seconds/CPU seconds, final loss, embedding seconds and p@10.
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_paths, _ = read_split(train_csv)
    net = build_net()
    loader = make_loader(train_paths, cfg)
    cpu0 = cpu_seconds()
    stats = train_plain(net, loader, cfg)
    gc.collect()  # the loader's iterator is gone by now: its workers are joined and reaped
    stats["cpu_s"] = cpu_seconds() - cpu0
    test_paths, labels = read_split(test_csv)
    t0 = time.perf_counter()
    vectors = embed(net.backbone, test_paths)
    stats["embed_s"] = time.perf_counter() - t0
    stats["p10"] = precision(vectors, labels)
    stats["setup"] = (f"torchvision v2 per sample on PIL, DataLoader num_workers="
                      f"{cfg.num_workers}, float32 NCHW, {cfg.threads} torch threads")
    return stats
