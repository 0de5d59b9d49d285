"""The ``SimCLR`` model kind: ``BUILD MODEL m USING SimCLR OPTIONS (...) AS SELECT ...``.

Example:
    >>> import pixql
    >>> db = pixql.connect("ws")
    >>> db.sql("BUILD MODEL digits USING SimCLR OPTIONS (max_epochs=1) "
    ...        "AS SELECT * FROM mnist_train")                          # doctest: +SKIP

Training decodes the images once, trains a backbone and projection head with NT-Xent on
``views`` augmented views per image (:mod:`.train`; every view of an image is a positive of
the others), and saves the *backbone* to ``weights.safetensors``: embeddings are the
backbone's pooled features (before the head). ``views='auto'`` spends about eight augmented
views per image over the whole run (``8 // max_epochs``, from 2 to 8), so the tutorial's
single epoch still gets a strong model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator

from pixql.errors import ModelError
from pixql.images import default_workers
from pixql.models.base import (
    BuildContext,
    BuildOptions,
    BuildResult,
    Embedder,
    ModelKind,
    require_artifacts,
)
from pixql.models.registry import register
from pixql.models.simclr.backbone import (
    backbone_spec,
    build_backbone,
    feature_dim,
    save_backbone,
)
from pixql.models.simclr.data import (
    channel_stats,
    decode_all,
    image_paths,
    image_to_array,
    probe_images,
)
from pixql.models.simclr.heads import ProjectionHead
from pixql.models.simclr.train import SimCLRNet, TrainConfig, train_simclr
from pixql.models.simclr.transforms import AugmentConfig, MultiViewTransform, SimCLRTransform
from pixql.models.simclr.weights import load_pretrained, pretrained_info

if TYPE_CHECKING:
    from collections.abc import Sequence

#: file holding the backbone's weights inside the artifact folder
WEIGHTS_FILE = "weights.safetensors"
#: version of the config layout written by :meth:`SimCLR.build`
CONFIG_FORMAT = 1
#: largest side ``image_size='auto'`` picks, per device type
AUTO_MAX_SIDE = {"cpu": 96, "cuda": 224}
#: smallest side used with ImageNet weights
PRETRAINED_MIN_SIDE = 64
#: images channel_stats measures (its default)
STATS_SAMPLE = 10_000
#: views per image over the whole run that ``views='auto'`` aims for
AUTO_VIEWS = 8
#: range of the ``views`` option
MIN_VIEWS, MAX_VIEWS = 2, 16


class SimCLROptions(BuildOptions):
    """BUILD MODEL options of ``SimCLR`` (ThanoSQL's five, then pixql's extras)."""

    image_col: str = Field(default="image_path", description="column holding the image paths")
    batch_size: int = Field(default=256, ge=2, le=65536,
                            description="images per training step (each seen in `views` views)")
    max_epochs: int = Field(default=5, ge=1, le=100_000, description="passes over the data")
    pretrained: bool = Field(default=False,
                             description="start from torchvision's ImageNet ResNet-18 weights")
    backbone: Literal["auto", "small_resnet", "resnet18"] = Field(
        default="auto", description="'auto': resnet18 when pretrained or images > 64 px, "
        "else small_resnet (a narrow residual net that trains fast on a CPU)")
    image_size: int | Literal["auto"] = Field(
        default="auto", description="training/embedding side in pixels; 'auto': the images' "
        "median shorter side (28 for MNIST), at most 96 on CPU / 224 on GPU")
    grayscale: bool | Literal["auto"] = Field(
        default="auto",
        description="train on grey images; 'auto': when the sampled images are grey")
    projection_dim: int = Field(default=128, ge=2, le=8192,
                                description="projection head output size")
    learning_rate: float = Field(default=2e-3, gt=0, le=10, description="peak AdamW learning rate")
    weight_decay: float = Field(default=1e-4, ge=0, le=1, description="AdamW weight decay")
    views: int | Literal["auto"] = Field(
        default="auto", description="augmented views of each image per step, all positives of "
        "each other in NT-Xent; 'auto': 8 // max_epochs, from 2 to 8 (8 views for "
        "max_epochs=1, 2 from max_epochs=4)")
    temperature: float = Field(default=0.2, gt=0, le=10, description="NT-Xent temperature")
    augmentation: float = Field(default=1.0, ge=0, le=3,
                                description="augmentation strength (0: none, 1: default)")
    flips: bool = Field(default=False, description="random horizontal flips (off: digits "
                        "and text must not be mirrored)")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="random seed (reproducible runs)")
    workers: int | None = Field(default=None, ge=1, le=64,
                                description="image decoding threads (default: usable cores)")
    time_budget: float | None = Field(default=None, gt=0, description="seconds; training stops "
                                      "once exceeded (recorded in the summary)")
    mixed_precision: bool | Literal["auto"] = Field(
        default="auto", description="bfloat16 autocast; 'auto': where the hardware supports it")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto",
                                                   description="'auto': cuda if available")
    engine: Literal["local", "ray"] | None = Field(
        default=None, description="'ray': data-parallel training on Ray Train with the "
        "global batch's negatives (pixql[ray]; docs/scale-out.md); default: the workspace's, "
        "$PIXQL_ENGINE, 'local'")
    ray_address: str | None = Field(default=None, description="engine='ray': the cluster "
                                    "to join ('auto', 'host:port'); default: the workspace's, "
                                    "$PIXQL_RAY_ADDRESS, a local Ray")
    num_workers: int = Field(default=2, ge=1, le=4096,
                             description="engine='ray': training workers (batch_size is "
                             "split between them)")
    cpus_per_worker: float = Field(default=1.0, gt=0, le=1024,
                                   description="engine='ray': CPUs (and torch threads) a worker")
    gpus_per_worker: float = Field(default=0.0, ge=0, le=64,
                                   description="engine='ray': GPUs a worker")
    max_retries: int = Field(default=2, ge=0, le=100,
                             description="engine='ray': restarts of the workers after one "
                             "fails, each continuing from the last epoch's checkpoint")
    deterministic: bool = Field(
        default=False, description="only deterministic torch kernels, so the same seed, data and "
        "options on the same machine give byte-identical weights (cannot be combined with "
        "time_budget)")

    @field_validator("image_size")
    @classmethod
    def _check_size(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 8 <= value <= 1024:
            raise ValueError(f"image_size must be 'auto' or an integer from 8 to 1024, got {value}")
        return value

    @field_validator("views")
    @classmethod
    def _check_views(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not MIN_VIEWS <= value <= MAX_VIEWS:
            raise ValueError(f"views must be 'auto' or an integer from {MIN_VIEWS} to "
                             f"{MAX_VIEWS}, got {value}")
        return value

    @field_validator("deterministic")
    @classmethod
    def _check_deterministic(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("time_budget") is not None:
            raise ValueError("deterministic=True cannot be combined with time_budget: how many "
                             "steps fit in a time budget is not reproducible")
        return value

    def n_views(self) -> int:
        """The number of views per image (``'auto'`` resolved)."""
        if self.views == "auto":
            return max(MIN_VIEWS, min(AUTO_VIEWS, AUTO_VIEWS // self.max_epochs))
        return int(self.views)

    @field_validator("backbone")
    @classmethod
    def _check_backbone(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("pretrained") and value == "small_resnet":
            raise ValueError("pretrained=True needs backbone='resnet18' or 'auto' "
                             "(there are no ImageNet weights for small_resnet)")
        return value

    @field_validator("grayscale")
    @classmethod
    def _check_grayscale(cls, value: bool | str, info: ValidationInfo) -> bool | str:
        if info.data.get("pretrained") and value is True:
            raise ValueError("pretrained=True needs RGB input: leave grayscale='auto' or set "
                             "grayscale=False (grey images are then converted to RGB)")
        return value


class SimCLREmbedder(Embedder):
    """A trained SimCLR backbone: image → pooled features (L2-normalised by postprocess)."""

    modalities = frozenset({"image"})

    def __init__(self, backbone: torch.nn.Module, *, image_size: int, grayscale: bool,
                 mean: Sequence[float], std: Sequence[float], dim: int, model_id: str,
                 device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.backbone = backbone.to(self.device).eval()
        if self.device.type == "cpu":
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        self.image_size = image_size
        self.grayscale = grayscale
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
        self.dim = dim
        self.model_id = model_id

    def preprocess(self, item: Any, modality: str) -> torch.Tensor:
        """PIL image → normalised ``float32 (c, s, s)`` on the CPU (thread-safe)."""
        arr = image_to_array(item, image_size=self.image_size, grayscale=self.grayscale)
        return (torch.from_numpy(arr).float() / 255.0 - self.mean) / self.std

    def forward(self, batch: Sequence[torch.Tensor], modality: str) -> torch.Tensor:
        """Preprocessed images → backbone features ``(n, dim)``."""
        x = torch.stack(list(batch)).to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.backbone(x).float()


def _pick_device(choice: str) -> str:
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ModelError("device='cuda' but no CUDA GPU is available; use device='cpu' or 'auto'")
    return choice


def _bf16_supported(device: str) -> bool:
    if device == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - older builds
        return False


def _usable_cores() -> int:
    return default_workers()


@register
class SimCLR(ModelKind):
    """Model kind ``SimCLR``: self-supervised image embeddings (Chen et al. 2020)."""

    name: ClassVar[str] = "simclr"
    display_name: ClassVar[str] = "SimCLR"
    build_options = SimCLROptions
    needs_data: ClassVar[bool] = True
    convert_defaults: ClassVar[dict[str, Any]] = {"batch_size": 256}

    @classmethod
    def build(cls, ctx: BuildContext, options: BuildOptions) -> BuildResult:
        """Decode the images, train, save the backbone; see the module docstring."""
        if not isinstance(options, SimCLROptions):
            options = SimCLROptions.model_validate(options.model_dump())
        plan = _plan(ctx, options)
        if options.engine == "ray":
            return _build_on_ray(ctx, options, plan)
        torch.set_num_threads(_usable_cores())
        torch.manual_seed(options.seed)
        backbone = build_backbone(plan["spec"])
        # weights first: a missing weights file fails before minutes of decoding
        pretrained = load_pretrained(plan["spec"]["name"], backbone) if options.pretrained else None
        images = decode_all(plan["paths"], image_size=plan["image_size"],
                            grayscale=plan["grayscale"], workers=options.workers or _usable_cores(),
                            progress=ctx.progress)
        mean, std = plan["norm"] or channel_stats(images)
        dim = feature_dim(backbone)
        head = ProjectionHead(dim, max(512, dim), options.projection_dim)
        net = SimCLRNet(backbone, head)
        aug = AugmentConfig.from_strength(options.augmentation, flips=options.flips,
                                          image_size=plan["image_size"])
        views = MultiViewTransform(SimCLRTransform(aug, mean=mean, std=std),
                                   n_views=options.n_views())
        stats = train_simclr(net, images, views, _train_config(options, plan),
                             progress=ctx.progress)
        save_backbone(backbone, ctx.artifact_dir / WEIGHTS_FILE)
        return _result(options, plan, (mean, std), dim, pretrained, stats.summary())

    @classmethod
    def load(cls, artifact_dir: Path | None, config: dict[str, Any]) -> Embedder:
        """Rebuild the backbone from ``config`` and load ``weights.safetensors``."""
        from safetensors.torch import load_file

        folder = require_artifacts(cls.display_name, artifact_dir)
        path = Path(folder) / str(config.get("weights_file", WEIGHTS_FILE))
        if not path.is_file():
            raise ModelError(f"SimCLR weights file is missing: {path}")
        backbone = build_backbone(config["backbone"])
        try:
            backbone.load_state_dict(load_file(str(path)), strict=True)
        except (RuntimeError, OSError) as e:
            raise ModelError(f"cannot load SimCLR weights {path}: {e}") from e
        spec = config["backbone"]
        return SimCLREmbedder(
            backbone, image_size=int(config["image_size"]), grayscale=bool(config["grayscale"]),
            mean=config["mean"], std=config["std"], dim=int(config["feature_dim"]),
            model_id=f"simclr/{spec['name']}-{config['image_size']}",
            device=_pick_device("auto"))


def _plan(ctx: BuildContext, options: SimCLROptions) -> dict[str, Any]:
    """Decide paths, size, colour, device, backbone and normalisation before decoding
    (``norm`` is None when it is to be measured on the training images)."""
    paths = image_paths(ctx.rows, options.image_col, ctx.resolve)
    if len(paths) < 2:
        raise ModelError(f"SimCLR needs at least 2 training images, the AS query gave {len(paths)}")
    device = _pick_device(options.device)
    probe = probe_images(paths)
    size = options.image_size
    if size == "auto":
        size = max(16, min(probe.size, AUTO_MAX_SIDE[device]))
        if options.pretrained:
            size = max(size, PRETRAINED_MIN_SIDE)
    grey = (not options.pretrained) and (probe.grayscale if options.grayscale == "auto"
                                         else bool(options.grayscale))
    spec = backbone_spec(options.backbone, image_size=int(size), in_channels=1 if grey else 3,
                         pretrained=options.pretrained)
    mp = options.mixed_precision
    mixed = _bf16_supported(device) if mp == "auto" else bool(mp)
    norm = None
    if options.pretrained:
        info = pretrained_info(spec["name"])
        norm = (list(info.mean), list(info.std))
    return {"paths": paths, "image_size": int(size), "grayscale": grey, "device": device,
            "spec": spec, "mixed_precision": mixed, "norm": norm}


def _result(options: SimCLROptions, plan: dict[str, Any], norm: tuple[list[float], list[float]],
            dim: int, pretrained: Any, stats: dict[str, Any]) -> BuildResult:
    mean, std = norm
    config = {"format": CONFIG_FORMAT, "backbone": plan["spec"], "weights_file": WEIGHTS_FILE,
              "image_size": plan["image_size"], "grayscale": plan["grayscale"],
              "channels": 1 if plan["grayscale"] else 3, "mean": list(mean), "std": list(std),
              "feature_dim": dim, "pretrained": pretrained,
              "projection_dim": options.projection_dim}
    summary = {**stats, "backbone": plan["spec"]["name"], "image_size": plan["image_size"],
               "device": plan["device"], "mixed_precision": plan["mixed_precision"],
               "views": options.n_views()}
    return BuildResult(config=config, dim=dim, summary=summary)


def _build_on_ray(ctx: BuildContext, options: SimCLROptions, plan: dict[str, Any]) -> BuildResult:
    """Data-parallel training on Ray Train (:mod:`.ddp`); the normalisation is measured
    here on the images a local build measures it on (so both see the same inputs)."""
    from pixql.models.simclr.ddp import RayJob, train_on_ray

    backbone = build_backbone(plan["spec"])
    pretrained = load_pretrained(plan["spec"]["name"], backbone) if options.pretrained else None
    norm = plan["norm"] or _sampled_stats(plan, options)
    aug = AugmentConfig.from_strength(options.augmentation, flips=options.flips,
                                      image_size=plan["image_size"])
    job = RayJob(paths=[str(p) for p in plan["paths"]], spec=plan["spec"],
                 image_size=plan["image_size"], grayscale=plan["grayscale"], mean=norm[0],
                 std=norm[1], projection_dim=options.projection_dim,
                 pretrained=options.pretrained, augment=dataclasses.asdict(aug),
                 train=dataclasses.asdict(_train_config(options, plan)),
                 cpus_per_worker=options.cpus_per_worker, views=options.n_views())
    stats = train_on_ray(job, address=options.ray_address, num_workers=options.num_workers,
                         gpus_per_worker=options.gpus_per_worker, staging=ctx.artifact_dir,
                         max_retries=options.max_retries)
    w = options.num_workers
    stats.update(engine="ray", num_workers=w, global_batch=(options.batch_size // w) * w,
                 images=stats["images"] * w, images_per_s=round(stats["images_per_s"] * w, 1))
    return _result(options, plan, norm, feature_dim(backbone), pretrained, stats)


def _sampled_stats(plan: dict[str, Any], options: SimCLROptions) -> tuple[list[float], list[float]]:
    """:func:`channel_stats` of the images a local build samples, decoded here alone."""
    paths = plan["paths"]
    idx = torch.linspace(0, len(paths) - 1, min(STATS_SAMPLE, len(paths))).long().tolist()
    images = decode_all([paths[i] for i in idx], image_size=plan["image_size"],
                        grayscale=plan["grayscale"], workers=options.workers or _usable_cores(),
                        progress=False)
    return channel_stats(images, sample=len(idx))


def _train_config(options: SimCLROptions, plan: dict[str, Any]) -> TrainConfig:
    return TrainConfig(max_epochs=options.max_epochs, batch_size=options.batch_size,
                       learning_rate=options.learning_rate, weight_decay=options.weight_decay,
                       temperature=options.temperature, time_budget=options.time_budget,
                       seed=options.seed, mixed_precision=plan["mixed_precision"],
                       device=plan["device"], deterministic=options.deterministic)

