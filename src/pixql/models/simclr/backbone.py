"""The SimCLR encoder ``f``: a residual network whose globally pooled features are the
embeddings.

Two architectures are registered in :data:`BACKBONES`:

- ``small_resnet`` – a narrow ResNet (one basic block per stage, 32-64-128 channels by
  default) that works at the images' native resolution. On a CPU it trains ~50x faster than
  ResNet-18 on 28x28 images, which is what makes MNIST learnable in minutes.
- ``resnet18`` – torchvision's ResNet-18 (He et al. 2016, arXiv:1512.03385) without its
  classifier. ``small_stem=True`` swaps the 7x7/stride-2 stem and max-pool for a 3x3/stride-1
  conv (the usual CIFAR variant); ImageNet weights need the original stem.

A backbone is described by a JSON-ready *spec* dict (stored in the model's config), so
:func:`build_backbone` rebuilds the same network at load time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: image side up to which ``backbone='auto'`` picks the narrow residual net
SMALL_IMAGE_MAX = 64


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (ResNet's basic block).

    Shapes: ``(n, in_ch, h, w)`` → ``(n, out_ch, ceil(h / stride), ceil(w / stride))``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block."""
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class SmallResNet(nn.Module):
    """A narrow residual network for small images.

    Args:
        in_channels: 1 for grey images, 3 for RGB.
        widths: channels of each stage; every stage after the first halves the resolution.
        blocks: basic blocks per stage.
        stem_stride: stride of the 3x3 stem conv (2 takes 28x28 digits to 14x14 at once).

    Shapes: ``(n, in_channels, s, s)`` → ``(n, widths[-1])`` (ReLU features, global mean).
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128),
                 blocks: int = 1, stem_stride: int = 2) -> None:
        super().__init__()
        if not widths or min(widths) < 1 or blocks < 1 or stem_stride < 1:
            raise ValueError(
                f"SmallResNet needs positive widths, blocks and stem_stride, got widths={widths}, "
                f"blocks={blocks}, stem_stride={stem_stride}"
            )
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, width in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, width, 2 if (i > 0 and b == 0) else 1))
                cin = width
        self.stages = nn.Sequential(*layers)
        self.feature_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features."""
        return torch.flatten(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1)


def _small_resnet(spec: dict[str, Any]) -> nn.Module:
    return SmallResNet(in_channels=int(spec["in_channels"]), widths=tuple(spec["widths"]),
                       blocks=int(spec.get("blocks", 1)), stem_stride=int(spec["stem_stride"]))


def _resnet18(spec: dict[str, Any]) -> nn.Module:
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    in_ch = int(spec["in_channels"])
    if spec.get("small_stem", False):
        net.conv1 = nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_ch != 3:
        net.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
    net.fc = nn.Identity()
    net.feature_dim = 512
    return net


#: backbone name → builder taking the spec dict
BACKBONES: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "small_resnet": _small_resnet,
    "resnet18": _resnet18,
}


def build_backbone(spec: dict[str, Any]) -> nn.Module:
    """The network described by ``spec`` (randomly initialised); has ``feature_dim``."""
    try:
        builder = BACKBONES[spec["name"]]
    except KeyError:
        raise ValueError(
            f"unknown backbone {spec.get('name')!r}; known: {', '.join(sorted(BACKBONES))}"
        ) from None
    return builder(spec)


def feature_dim(net: nn.Module) -> int:
    """The width of the features a network from :func:`build_backbone` outputs (every
    builder records it as ``net.feature_dim``)."""
    dim = getattr(net, "feature_dim", None)
    if not isinstance(dim, int):
        raise TypeError(f"{type(net).__name__} is not a pixql backbone: no integer feature_dim")
    return dim


def backbone_spec(name: str, *, image_size: int, in_channels: int,
                  pretrained: bool) -> dict[str, Any]:
    """The spec for backbone option ``name`` (``'auto'`` picks by image size and weights).

    ``auto`` picks ``resnet18`` for pretrained weights or images larger than
    :data:`SMALL_IMAGE_MAX` pixels, else ``small_resnet``.
    """
    if name == "auto":
        name = "resnet18" if pretrained or image_size > SMALL_IMAGE_MAX else "small_resnet"
    if name == "small_resnet":
        stride = 1 if image_size < 24 else 2 if image_size <= 48 else 4
        return {"name": name, "in_channels": in_channels, "widths": [32, 64, 128], "blocks": 1,
                "stem_stride": stride}
    if name == "resnet18":
        return {"name": name, "in_channels": in_channels,
                "small_stem": (not pretrained) and image_size <= SMALL_IMAGE_MAX}
    raise ValueError(f"unknown backbone {name!r}; known: auto, {', '.join(sorted(BACKBONES))}")


def save_backbone(backbone: nn.Module, path: Path) -> None:
    """Write the backbone's weights to ``path`` (safetensors)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    # one metadata entry only: safetensors writes the metadata map in hash order, which
    # changes between calls, so a second entry would make identical weights differ in bytes
    save_file(state, str(path), metadata={"format": "pt"})
