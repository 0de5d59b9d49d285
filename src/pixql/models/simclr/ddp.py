"""SimCLR on Ray Train: ``BUILD MODEL m USING SimCLR OPTIONS (engine='ray', num_workers=2)``.

Each of the ``num_workers`` Ray Train workers decodes its own shard of the training images
(every shard the same size, so all take the same steps), and trains a copy of the network
wrapped in PyTorch's DistributedDataParallel on ``batch_size // num_workers`` images a
step. NT-Xent sees the negatives of the **global** batch: the projections are gathered from
every worker *with* their gradients (``torch.distributed.nn.functional.all_gather``), each
worker's anchors meet all ``2N - 2`` negatives, and averaging the workers' gradients (what
DDP does) gives the gradient of the one-process loss of that global batch
(:meth:`~pixql.models.simclr.loss.NTXentLoss.global_loss`). Plain DDP would silently train
on local negatives only (loss ≈ ln of the local batch). The learning-rate schedule runs on
global steps, and the workers agree on the elapsed time (their maximum) each step, so they
take the same learning rate and stop together under a ``time_budget``.

After each epoch but the last, rank 0 saves the training state (weights, optimizer,
statistics) in a folder next to the staging folder, and all workers wait for it; when a
worker dies, Ray Train restarts all of them (at most ``max_retries`` times) and they
continue from that epoch (the state is this folder's, not a Ray Train checkpoint: Ray
Train registers a reported checkpoint only once its controller has polled it, which a
worker dying right after the report can precede). At the end, rank 0
saves the backbone as a Ray Train checkpoint, which the driver copies into the
build's staging folder (the same atomic commit as a local build). Workers read the images
at the paths the driver resolved, and the checkpoint goes through a folder next to the
staging folder: on several machines, the workspace must be on storage all of them mount.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from pixql.distributed.cluster import check_resources, connect
from pixql.errors import ExecutionError, ModelError
from pixql.models.simclr.backbone import build_backbone, feature_dim, save_backbone
from pixql.models.simclr.data import decode_all
from pixql.models.simclr.heads import ProjectionHead
from pixql.models.simclr.loss import NTXentLoss
from pixql.models.simclr.train import SimCLRNet, TrainConfig, train_simclr
from pixql.models.simclr.transforms import AugmentConfig, MultiViewTransform, SimCLRTransform
from pixql.models.simclr.weights import load_pretrained

#: the file the backbone is saved to (kind.WEIGHTS_FILE)
WEIGHTS_FILE = "weights.safetensors"
#: an epoch checkpoint's training state (train._state)
STATE_FILE = "state.pt"
#: tests only: make training workers die (see fault())
FAULT_ENV = "PIXQL_TEST_TRAIN_FAULT"


@dataclass(frozen=True)
class RayJob:
    """Everything a worker needs, as plain values (it is shipped to the workers)."""

    paths: list[str]
    spec: dict[str, Any]
    image_size: int
    grayscale: bool
    mean: list[float]
    std: list[float]
    projection_dim: int
    pretrained: bool
    augment: dict[str, Any]
    train: dict[str, Any]  # TrainConfig's fields; batch_size is the global batch
    cpus_per_worker: float
    views: int = 2  # augmented views per image and step
    state_dir: str = ""  # where rank 0 leaves each epoch's training state
    fault: str | None = None  # tests only: $PIXQL_TEST_TRAIN_FAULT (see fault())


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Every worker's ``t`` concatenated in rank order; gradients flow back to each."""
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t))  # type: ignore[no-untyped-call]


def agree_max(value: float) -> float:
    """The largest ``value`` of all workers."""
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def shard(paths: list[str], rank: int, world: int) -> list[str]:
    """Worker ``rank``'s images: every ``world``-th one, all shards the same size."""
    return paths[rank::world][:len(paths) // world]


def fault(spec: str | None, rank: int, world: int, when: str) -> None:
    """The test hook of ``$PIXQL_TEST_TRAIN_FAULT``: ``always`` kills the last worker as
    each attempt starts; ``once:FILE`` kills it after the first epoch's checkpoint of the
    first attempt (the one finding no FILE; it creates FILE)."""
    if not spec or rank != world - 1:
        return
    if spec == "always" and when == "start":
        os._exit(3)
    if spec.startswith("once:") and when == "epoch" and not os.path.exists(spec[5:]):
        Path(spec[5:]).write_text(str(os.getpid()), encoding="utf-8")
        os._exit(3)


def resume_state(folder: str) -> dict[str, Any] | None:
    """The training state the last epoch left in ``folder`` (a restarted attempt), else None."""
    state = Path(folder) / STATE_FILE
    return torch.load(state, weights_only=True) if state.is_file() else None


def epoch_saver(rank: int, world: int, job: RayJob) -> Any:
    """``on_epoch`` of the workers: rank 0 saves the state into ``job.state_dir``
    (atomically), then all wait for it, so a worker dying afterwards resumes from it."""
    import torch.distributed as dist

    def save(state: dict[str, Any]) -> None:
        if rank == 0:
            path = Path(job.state_dir) / STATE_FILE
            torch.save(state, path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
        dist.barrier()
        fault(job.fault, rank, world, "epoch")

    return save


def worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker (see the module docstring)."""
    import ray.train
    from torch.nn.parallel import DistributedDataParallel

    job = RayJob(**config)
    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    fault(job.fault, rank, world, "start")
    torch.set_num_threads(max(1, int(job.cpus_per_worker)))
    torch.manual_seed(job.train["seed"])  # the same initial weights everywhere
    backbone = build_backbone(job.spec)
    if job.pretrained:
        load_pretrained(job.spec["name"], backbone)
    images = decode_all([Path(p) for p in shard(job.paths, rank, world)],
                        image_size=job.image_size, grayscale=job.grayscale,
                        workers=max(1, int(job.cpus_per_worker)), progress=False)
    dim = feature_dim(backbone)
    net = SimCLRNet(backbone, ProjectionHead(dim, max(512, dim), job.projection_dim))
    net = net.to(memory_format=torch.channels_last)
    views = MultiViewTransform(SimCLRTransform(AugmentConfig(**job.augment), mean=job.mean,
                                               std=job.std), n_views=job.views)
    cfg = TrainConfig(**{**job.train, "batch_size": job.train["batch_size"] // world,
                         "seed": job.train["seed"] + 1000 * rank})
    resume = resume_state(job.state_dir)
    stats = train_simclr(DistributedDataParallel(net), images, views, cfg, progress=False,
                         loss_fn=NTXentLoss(cfg.temperature, gather=gather_with_grad,
                                            rank=rank), agree=agree_max,
                         on_epoch=epoch_saver(rank, world, job), resume=resume)
    summary = stats.summary()
    if resume is not None:
        summary["resumed_from_epoch"] = int(resume["epoch"])
    metrics = {"summary": json.dumps(summary), "rank": rank}
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="pixql-simclr-") as folder:
        save_backbone(backbone, Path(folder) / WEIGHTS_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def train_on_ray(job: RayJob, *, address: str | None, num_workers: int, gpus_per_worker: float,
                 staging: Path, max_retries: int = 2) -> dict[str, Any]:
    """Train on ``num_workers`` Ray Train workers; write the backbone's weights into
    ``staging``; return rank 0's training summary. A worker failure restarts all workers
    from the last epoch's checkpoint, at most ``max_retries`` times."""
    if job.train["batch_size"] // num_workers < 2:
        raise ModelError(f"batch_size={job.train['batch_size']} gives fewer than 2 images a "
                         f"step to each of num_workers={num_workers}: raise batch_size")
    if len(job.paths) // num_workers < 2:
        raise ModelError(f"{len(job.paths)} training images are too few for "
                         f"num_workers={num_workers}")
    ray = connect(address, num_cpus=num_workers * job.cpus_per_worker,
                  num_gpus=num_workers * gpus_per_worker)
    check_resources(ray, num_workers, job.cpus_per_worker, gpus_per_worker)
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    store = staging.parent / f"{staging.name}-ray"  # a .tmp-* folder: repair() removes it
    (store / "state").mkdir(parents=True, exist_ok=True)
    job = replace(job, state_dir=str(store / "state"), fault=os.environ.get(FAULT_ENV) or None)
    trainer = TorchTrainer(
        worker_loop, train_loop_config=asdict(job),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker={"CPU": job.cpus_per_worker,
                                                           "GPU": gpus_per_worker}),
        run_config=RunConfig(name="pixql-simclr", storage_path=str(store),
                             failure_config=FailureConfig(max_failures=max_retries)))
    try:
        result = trainer.fit()
        if result.checkpoint is None:  # pragma: no cover - rank 0 always reports one
            raise ExecutionError("the Ray Train run returned no checkpoint")
        with result.checkpoint.as_directory() as folder:
            shutil.copy2(Path(folder) / WEIGHTS_FILE, staging / WEIGHTS_FILE)
        summary: dict[str, Any] = json.loads((result.metrics or {})["summary"])
    except (ModelError, ExecutionError):
        raise
    except Exception as e:
        cause = str(e).strip().splitlines()[0][:400] if str(e).strip() else ""
        raise ExecutionError(f"SimCLR training on Ray failed after {max_retries} "
                             f"retries: {type(e).__name__}: {cause}. Nothing was "
                             "changed.") from e
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return summary
