"""Fixtures for SimCLR tests: generated shape images, and no network access for weights."""

from __future__ import annotations

import urllib.error
from typing import TYPE_CHECKING

import pytest
import torch

from tests.conftest import SHAPES, draw_shape

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def torch_home(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME of the test's own, and torch hub downloads that always fail: weights
    cached on this machine, or the network, must not change what the tests see."""
    home = tmp_path_factory.mktemp("torch-home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("TORCH_HUB", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    def blocked(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(f"network blocked in tests: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", blocked)
    return home


def shape_tensor(per_class: int = 16, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """``uint8 (4 * per_class, 1, size, size)`` images of 4 shapes, and their labels."""
    import numpy as np

    imgs, labels = [], []
    for c, shape in enumerate(SHAPES):
        for i in range(per_class):
            imgs.append(np.array(draw_shape(shape, size=size, seed=1000 * c + i)))
            labels.append(c)
    return torch.from_numpy(np.stack(imgs)).unsqueeze(1), torch.tensor(labels)


@pytest.fixture(scope="module")
def shapes() -> tuple[torch.Tensor, torch.Tensor]:
    """64 generated 28x28 grey images (4 shapes × 16) and their labels."""
    return shape_tensor()
