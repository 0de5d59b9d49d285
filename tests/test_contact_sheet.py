"""Contact sheets: layout, captions, placeholders for unreadable files, argument checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from pixql.contact_sheet import GAP, make_contact_sheet

if TYPE_CHECKING:
    from pathlib import Path


def _images(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.new("RGB", (20 + i, 30), (40 * i % 255, 100, 200)).save(path)
        paths.append(path)
    return paths


def test_grid_size_follows_tiles_and_columns(tmp_path: Path) -> None:
    paths = _images(tmp_path, 7)
    out = make_contact_sheet(paths, [f"#{i}\n0.9{i}" for i in range(7)], tmp_path / "s" / "a.png",
                             tile=64, columns=3)
    with Image.open(out) as sheet:
        assert sheet.width == 3 * (64 + GAP) + GAP
        assert sheet.height > 3 * 64  # three rows, plus caption bands
        pixels = np.asarray(sheet.convert("RGB"))
    assert (pixels[GAP + 32, GAP + 32] == (0, 100, 200)).all()  # first tile, enlarged


def test_captions_are_drawn(tmp_path: Path) -> None:
    paths = _images(tmp_path, 2)
    plain = np.asarray(Image.open(make_contact_sheet(paths, ["", ""], tmp_path / "p.png")))
    text = np.asarray(Image.open(make_contact_sheet(paths, ["query", "0.987"], tmp_path / "t.png")))
    assert plain.shape == text.shape
    assert (plain != text).any()


def test_unreadable_image_gets_a_placeholder(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = make_contact_sheet([bad, tmp_path / "missing.png"], ["a", "b"], tmp_path / "o.png",
                             tile=80, title="results")
    assert out.is_file()


@pytest.mark.parametrize(("n_paths", "n_captions", "tile"), [(0, 0, 64), (2, 1, 64), (1, 1, 0)])
def test_rejects_bad_arguments(tmp_path: Path, n_paths: int, n_captions: int, tile: int) -> None:
    paths = _images(tmp_path, n_paths)
    with pytest.raises(ValueError, match="one caption per image"):
        make_contact_sheet(paths, ["x"] * n_captions, tmp_path / "o.png", tile=tile)
