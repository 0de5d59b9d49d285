"""Pretrained ImageNet weights, through torchvision's weights API and torch hub's cache.

``pretrained=True`` loads ``ResNet18_Weights.IMAGENET1K_V1``. torchvision keeps downloaded
weights in ``torch.hub.get_dir()/checkpoints/<file name from the URL>`` (by default
``~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth``; ``TORCH_HOME`` moves it). When
the file is there it is used as is; when it is not, torchvision downloads it, unless
``PIXQL_OFFLINE=1`` is set or there is no network, in which case a
:class:`~pixql.errors.WeightsNotFoundError` says which file to put in which folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pixql.errors import ModelError, WeightsNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

#: environment variable that forbids downloads (``1``/``true``)
OFFLINE_ENV = "PIXQL_OFFLINE"


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a backbone's ImageNet weights come from and how inputs must be normalised."""

    enum_name: str  # e.g. "ResNet18_Weights.IMAGENET1K_V1"
    url: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def filename(self) -> str:
        """The file name torch hub caches the weights under."""
        return os.path.basename(urlparse(self.url).path)


def _resnet18_weights() -> Any:
    from torchvision.models import ResNet18_Weights

    return ResNet18_Weights.IMAGENET1K_V1


#: backbone name → the torchvision weights enum member it loads
WEIGHTS: dict[str, Callable[[], Any]] = {"resnet18": _resnet18_weights}


def pretrained_info(backbone: str) -> PretrainedWeights:
    """The ImageNet weights for ``backbone``; ModelError when there are none."""
    try:
        weights = WEIGHTS[backbone]()
    except KeyError:
        raise ModelError(f"no pretrained weights for backbone {backbone!r}; pretrained=True "
                         f"works with backbone: {', '.join(sorted(WEIGHTS))}") from None
    tf = weights.transforms()
    return PretrainedWeights(enum_name=f"{type(weights).__name__}.{weights.name}", url=weights.url,
                             mean=tuple(tf.mean), std=tuple(tf.std))


def cache_dir() -> Path:
    """torch hub's checkpoint folder (honours ``TORCH_HOME`` at call time)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    """Whether downloads are forbidden by ``PIXQL_OFFLINE``."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def load_pretrained(backbone_name: str, net: nn.Module, *,
                    progress: bool = False) -> dict[str, Any]:
    """Copy ImageNet weights into ``net`` (its classifier is absent and skipped).

    Returns a JSON-ready record of what was loaded (weights name and file).

    Raises:
        WeightsNotFoundError: the file is not cached and cannot be downloaded; the message
            names the file and the folder to put it in.
        ModelError: the cached file is unreadable or does not fit the network.
    """
    info = pretrained_info(backbone_name)
    path = cache_dir() / info.filename
    if not path.is_file() and offline():
        raise _not_found(info, path, f"{OFFLINE_ENV} is set, so nothing is downloaded")
    weights = WEIGHTS[backbone_name]()
    try:
        state = weights.get_state_dict(progress=progress, check_hash=True)
    except (OSError, ConnectionError) as e:  # URLError and socket errors are OSErrors
        if path.is_file():
            raise ModelError(f"cannot read cached weights {path}: {e}; delete the file "
                             f"to download it again") from e
        raise _not_found(info, path, f"the download failed ({e})") from e
    except Exception as e:
        raise ModelError(f"cannot read cached weights {path}: {type(e).__name__}: {e}; "
                         f"delete the file to download it again") from e
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"weights in {path} do not fit {backbone_name}: {e}") from e
    return {"weights": info.enum_name, "file": info.filename}


def _not_found(info: PretrainedWeights, path: Path, why: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"pretrained=True needs torchvision's {info.enum_name} weights, file {info.filename!r}, "
        f"in folder {path.parent} ({why}). Download {info.url} on a machine with internet "
        f"and copy it to {path} (TORCH_HOME changes the folder), or use pretrained=False."
    )
