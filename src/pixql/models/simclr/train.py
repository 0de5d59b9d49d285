"""The SimCLR training loop: V views per image, NT-Xent, AdamW, warm-up + cosine schedule.

The schedule runs on *progress*, the larger of the share of steps done and the share of the
time budget spent, so a run cut short by its time budget still ends with a decayed learning
rate instead of stopping mid-way at the peak.

Reproducibility: the weights' initialisation (the caller seeds torch), the shuffling and the
augmentations all come from generators seeded with ``seed``, so the same seed, data, options
and machine (same torch build and thread count) give the same weights. ``deterministic=True``
also makes torch refuse nondeterministic kernels (``torch.use_deterministic_algorithms``,
which on CUDA needs ``CUBLAS_WORKSPACE_CONFIG``, set here when missing) and takes the time
budget out of the schedule (a time-dependent learning rate cannot repeat).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pixql.models.simclr.loss import NTXentLoss
from pixql.progress import progress_bar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pixql.models.simclr.transforms import MultiViewTransform


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (validated by the BUILD options)."""

    max_epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    warmup: float = 0.05  # share of the run spent warming the learning rate up
    time_budget: float | None = None  # seconds
    seed: int = 0
    mixed_precision: bool = False  # bfloat16 autocast
    device: str = "cpu"
    deterministic: bool = False


@dataclass
class TrainStats:
    """What happened during training (becomes the build summary)."""

    epochs: int = 0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    final_loss: float | None = None  # mean loss of the last (up to) 20 steps
    stopped_by_time_budget: bool = False
    epoch_losses: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary, rounded for people."""
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        return {
            "epochs": self.epochs,
            "steps": self.steps,
            "final_loss": None if self.final_loss is None else round(self.final_loss, 4),
            "images": self.images,
            "seconds": round(self.seconds, 2),
            "images_per_s": round(rate, 1),
            "stopped_by_time_budget": self.stopped_by_time_budget,
            "epoch_losses": [round(v, 4) for v in self.epoch_losses],
        }


class SimCLRNet(nn.Module):
    """Backbone ``f`` followed by projection head ``g``; ``forward`` returns projections."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, c, s, s)`` → ``(n, projection_dim)``."""
        return self.head(self.backbone(x))


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up to 1 over ``warmup`` of the run, then cosine decay to 0."""
    if progress < warmup:
        return max(progress / warmup, 0.01)
    rest = (progress - warmup) / max(1e-8, 1.0 - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, rest)))


class _Run:
    """State of one training run (keeps :func:`train_simclr` short)."""

    def __init__(self, net: nn.Module, n_images: int, cfg: TrainConfig,
                 loss_fn: nn.Module | None = None,
                 agree: Callable[[float], float] | None = None) -> None:
        self.cfg = cfg
        self.net = net
        self.loss_fn = loss_fn or NTXentLoss(cfg.temperature)
        #: data-parallel runs: every worker's elapsed time → their maximum, so all take
        #: the same learning rate and stop at the same step
        self.agree = agree
        self.clock = 0.0
        decay = [p for p in net.parameters() if p.ndim > 1]
        no_decay = [p for p in net.parameters() if p.ndim <= 1]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate)
        self.batch = min(cfg.batch_size, n_images)
        self.steps_per_epoch = max(1, n_images // self.batch)
        self.total_steps = self.steps_per_epoch * cfg.max_epochs
        self.start = time.perf_counter()
        self.stats = TrainStats()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def tick(self) -> None:
        """Read the clock for this step (agreed between workers when data-parallel)."""
        now = self.elapsed()
        self.clock = self.agree(now) if self.agree is not None and self.cfg.time_budget else now

    def progress(self) -> float:
        p = self.stats.steps / self.total_steps
        if self.cfg.time_budget and not self.cfg.deterministic:
            p = max(p, self.clock / self.cfg.time_budget)
        return p

    def postfix(self, loss: float) -> dict[str, str]:
        """What the progress bar shows next to its rate and ETA."""
        shown = {"loss": f"{loss:.3f}"}
        if self.cfg.time_budget:
            shown["budget_left"] = f"{max(0.0, self.cfg.time_budget - self.clock):.0f}s"
        return shown

    def out_of_time(self) -> bool:
        return bool(self.cfg.time_budget) and self.clock >= float(self.cfg.time_budget or 0)

    def step(self, views: list[torch.Tensor]) -> float:
        self.tick()
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.learning_rate * lr_factor(self.progress(), self.cfg.warmup)
        n = views[0].shape[0]
        x = torch.cat(views).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16,
                            enabled=self.cfg.mixed_precision):
            z = self.net(x)
        loss = self.loss_fn(*z.float().split(n))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.stats.steps += 1
        self.stats.images += n
        self.tick()
        return float(loss.detach())


def train_simclr(net: nn.Module, images: torch.Tensor, views: MultiViewTransform,
                 cfg: TrainConfig, *, progress: bool = True, loss_fn: nn.Module | None = None,
                 agree: Callable[[float], float] | None = None,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None,
                 resume: dict[str, Any] | None = None) -> TrainStats:
    """Train ``net`` on ``images`` (``uint8 (n, c, s, s)``, n >= 2) and return what happened.

    Stops after ``cfg.max_epochs`` epochs or once ``cfg.time_budget`` seconds have passed,
    whichever comes first (the step that crosses the budget finishes). Data-parallel
    workers (:mod:`.ddp`) pass their shard, the per-worker batch, a ``loss_fn`` over the
    global batch and ``agree`` (see :class:`_Run`).

    ``on_epoch`` gets the run's state after each epoch (:func:`_state`: weights, optimizer,
    statistics, elapsed time); ``resume`` is such a state to continue from, at the next
    epoch (its shuffling and augmentations are seeded by ``seed`` and that epoch, so they
    are not those an uninterrupted run would have drawn).
    """
    if images.shape[0] < 2:
        raise ValueError(f"SimCLR needs at least 2 training images, got {images.shape[0]}")
    with deterministic_algorithms(cfg.deterministic):
        return _train(net, images, views, cfg, progress=progress, loss_fn=loss_fn, agree=agree,
                      on_epoch=on_epoch, resume=resume)


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """While active (and ``enabled``), torch uses deterministic kernels only; restores the
    previous setting afterwards."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _state(run: _Run, epoch: int) -> dict[str, Any]:
    """What :func:`train_simclr` resumes from after ``epoch`` (0-based) is done."""
    return {"epoch": epoch + 1, "net": run.net.state_dict(), "opt": run.opt.state_dict(),
            "stats": dataclasses.asdict(run.stats), "elapsed": run.elapsed()}


def _resumed(run: _Run, state: dict[str, Any]) -> int:
    """Load ``state`` into ``run``; the epoch to continue with."""
    run.net.load_state_dict(state["net"])
    run.opt.load_state_dict(state["opt"])
    run.stats = TrainStats(**state["stats"])
    run.start -= float(state["elapsed"])
    return int(state["epoch"])


def _train(net: nn.Module, images: torch.Tensor, views: MultiViewTransform,
           cfg: TrainConfig, *, progress: bool, loss_fn: nn.Module | None,
           agree: Callable[[float], float] | None,
           on_epoch: Callable[[dict[str, Any]], None] | None = None,
           resume: dict[str, Any] | None = None) -> TrainStats:
    device = torch.device(cfg.device)
    net.to(device).to(memory_format=torch.channels_last).train()
    run = _Run(net, images.shape[0], cfg, loss_fn, agree)
    first = _resumed(run, resume) if resume else 0
    seed = cfg.seed + 7919 * first  # a resumed run: fresh draws for the epochs left
    gen = torch.Generator(device="cpu").manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)
    for epoch in range(first, cfg.max_epochs):
        order = torch.randperm(images.shape[0], generator=gen)
        losses: list[float] = []
        with progress_bar(total=run.steps_per_epoch * run.batch, unit="img", enabled=progress,
                          desc=f"SimCLR epoch {epoch + 1}/{cfg.max_epochs}") as bar:
            for i in range(run.steps_per_epoch):
                idx = order[i * run.batch:(i + 1) * run.batch]
                losses.append(run.step(views(images[idx].to(device), aug_gen)))
                bar.update(len(idx))
                bar.set_postfix(run.postfix(losses[-1]), refresh=False)
                if run.out_of_time():
                    run.stats.stopped_by_time_budget = True
                    break
        run.stats.epochs = epoch + 1
        run.stats.epoch_losses.append(sum(losses) / len(losses))
        tail = losses[-20:]
        run.stats.final_loss = sum(tail) / len(tail)
        if run.stats.stopped_by_time_budget:
            break
        if on_epoch is not None and epoch + 1 < cfg.max_epochs:
            on_epoch(_state(run, epoch))
    net.eval()
    run.stats.seconds = run.elapsed()
    return run.stats
