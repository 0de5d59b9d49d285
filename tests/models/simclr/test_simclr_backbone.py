"""Backbones and the projection head: shapes, specs, and the choices ``auto`` makes."""

from __future__ import annotations

import pytest
import torch

from pixql.models.simclr.backbone import SmallResNet, backbone_spec, build_backbone
from pixql.models.simclr.heads import ProjectionHead


@pytest.mark.parametrize(("size", "channels"), [(16, 1), (28, 1), (32, 3), (64, 3)])
def test_small_resnet_pools_to_feature_dim(size: int, channels: int) -> None:
    spec = backbone_spec("auto", image_size=size, in_channels=channels, pretrained=False)
    net = build_backbone(spec).eval()
    assert spec["name"] == "small_resnet"
    out = net(torch.randn(3, channels, size, size))
    assert out.shape == (3, net.feature_dim) == (3, 128)
    assert (out >= 0).all()  # pooled ReLU features


def test_resnet18_small_stem_keeps_resolution() -> None:
    spec = backbone_spec("resnet18", image_size=16, in_channels=1, pretrained=False)
    assert spec["small_stem"] is True
    net = build_backbone(spec).eval()
    assert net.conv1.kernel_size == (3, 3)
    assert net.conv1.in_channels == 1
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 512)


@pytest.mark.parametrize(("size", "pretrained", "expected"), [
    (28, False, "small_resnet"), (64, False, "small_resnet"), (65, False, "resnet18"),
    (28, True, "resnet18"), (224, True, "resnet18"),
])
def test_auto_picks_by_size_and_weights(size: int, pretrained: bool, expected: str) -> None:
    spec = backbone_spec("auto", image_size=size, in_channels=3, pretrained=pretrained)
    assert spec["name"] == expected
    if pretrained:
        assert spec["small_stem"] is False  # ImageNet weights need the original stem


def test_unknown_backbone_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"known: .*resnet18.*small_resnet"):
        build_backbone({"name": "vgg"})
    with pytest.raises(ValueError, match="unknown backbone"):
        backbone_spec("vgg", image_size=28, in_channels=1, pretrained=False)


def test_small_resnet_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="positive widths"):
        SmallResNet(widths=())


def test_projection_head_shapes_and_validation() -> None:
    head = ProjectionHead(128, 256, 32)
    assert head(torch.randn(5, 128)).shape == (5, 32)
    with pytest.raises(ValueError, match="output_dim must be a positive integer"):
        ProjectionHead(128, 256, 0)
