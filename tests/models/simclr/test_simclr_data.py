"""Training data: probing size and colour, decoding into one tensor, statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from pixql.errors import ImageError
from pixql.models.simclr.data import channel_stats, decode_all, image_to_array, probe_images

if TYPE_CHECKING:
    from pathlib import Path


def _save(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def test_probe_reads_size_and_colour(tmp_path: Path) -> None:
    grey = [_save(tmp_path / f"g{i}.png", np.full((30 + i, 20), 9, np.uint8)) for i in range(3)]
    assert probe_images(grey).size == 20
    assert probe_images(grey).grayscale
    rgb_grey = _save(tmp_path / "rg.png", np.full((20, 20, 3), 77, np.uint8))  # RGB, equal bands
    assert probe_images([rgb_grey]).grayscale
    colour = np.zeros((20, 20, 3), np.uint8)
    colour[..., 0] = 255
    assert not probe_images([*grey, _save(tmp_path / "c.png", colour)]).grayscale


def test_image_to_array_shapes_and_writable() -> None:
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    grey = image_to_array(img, image_size=16, grayscale=True)
    rgb = image_to_array(img, image_size=16, grayscale=False)
    assert grey.shape == (1, 16, 16)
    assert rgb.shape == (3, 16, 16)
    assert rgb.dtype == np.uint8
    assert list(rgb[:, 0, 0]) == [10, 20, 30]
    assert grey.flags.writeable


def test_decode_all_keeps_order_and_names_bad_files(tmp_path: Path) -> None:
    paths = [_save(tmp_path / f"{i}.png", np.full((28, 28), i * 10, np.uint8)) for i in range(5)]
    out = decode_all(paths, image_size=28, grayscale=True, workers=2, progress=False)
    assert out.dtype == torch.uint8
    assert out.shape == (5, 1, 28, 28)
    assert [int(out[i, 0, 0, 0]) for i in range(5)] == [0, 10, 20, 30, 40]
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(ImageError, match=r"bad\.png") as err:
        decode_all([*paths, tmp_path / "bad.png", tmp_path / "gone.png"], image_size=28,
                   grayscale=True, workers=2, progress=False)
    assert "2 image(s)" in str(err.value)
    assert "gone.png" in str(err.value)


def test_channel_stats() -> None:
    images = torch.zeros(4, 2, 8, 8, dtype=torch.uint8)
    images[:, 1] = 255
    images[:2, 0] = 255
    mean, std = channel_stats(images)
    assert mean == pytest.approx([0.5, 1.0])
    assert std[0] == pytest.approx(0.501, abs=1e-3)
    assert std[1] == pytest.approx(1e-3)  # constant channel: clamped, never zero
