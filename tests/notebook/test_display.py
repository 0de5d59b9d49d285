"""The HTML views: thumbnails (size, mode, placeholders), captions, escaping, caps."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pixql.execution.result import Result
from pixql.notebook.display import (
    format_value,
    image_grid,
    pictures,
    thumbnail_png,
    thumbnail_table,
)


def save(ws, name: str, size: tuple[int, int], mode: str = "RGB") -> str:
    path = ws.root / name
    Image.new(mode, size, 1 if mode == "P" else (10, 20, 30)).save(path)
    return name


def test_thumbnails_shrink_to_fit_and_never_enlarge(ws):
    data, original = thumbnail_png(ws.resolve(save(ws, "wide.png", (1000, 500))), 240)
    assert original == (1000, 500)
    assert Image.open(io.BytesIO(data)).size == (240, 120)
    data, _ = thumbnail_png(ws.resolve(save(ws, "tiny.png", (20, 10))), 240)
    assert Image.open(io.BytesIO(data)).size == (20, 10)
    data, _ = thumbnail_png(ws.resolve(save(ws, "pal.gif", (30, 30), "P")), 240)
    assert Image.open(io.BytesIO(data)).format == "PNG"


def test_grid_in_row_order_with_captions_and_placeholders(ws):
    big, small = save(ws, "big.png", (600, 600)), save(ws, "small.png", (28, 28))
    table = pa.table({
        "image_path": [big, None, small, "missing.png"],
        "label": ["a", "b", "<c>", "d"],
        "score": [0.5, 0.25, 0.125, 0.0],
        "vec": [[0.1] * 8] * 4,
    })
    html = image_grid(Result(table=table, images=[], image_col="image_path"), ws)
    assert re.findall(r'data-row="(\d+)"', html) == ["0", "2", "3"]  # NULL rows have none
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)" style="([^"]+)"', html)
    assert len(imgs) == 2
    assert "pixelated" not in imgs[0][1]
    assert "pixelated" in imgs[1][1]
    assert Image.open(io.BytesIO(base64.b64decode(imgs[0][0]))).size == (240, 240)
    assert "label=a<br>score=0.500000" in html
    assert "vec=" not in html
    assert "label=&lt;c&gt;" in html
    assert "<c>" not in html
    assert "image not found" in html


def test_pictures_cap_and_count(ws):
    table = pa.table({"image_path": [f"f{i}.png" for i in range(7)]})
    pics, total = pictures(Result(table=table), ws, limit=3)
    assert [p.row for p in pics] == [0, 1, 2]
    assert total == 7
    assert pics[0].path == ws.root / "f0.png"
    assert pics[0].caption == []
    assert "showing the first 3 of 7 images" in image_grid(Result(table=table), ws,
                                                           max_images=3)
    assert "no images" in image_grid(Result(table=pa.table({"x": [1]})), ws)


def test_thumbnail_table_keeps_every_column(ws):
    name = save(ws, "one.png", (50, 40))
    table = pa.table({"image_path": [name, None], "n": [1, 2],
                      "emb": [np.ones(5, dtype=np.float32).tolist()] * 2})
    html = thumbnail_table(Result(table=table), ws, max_rows=1)
    assert html.count("<img ") == 1
    assert html.count("<tr>") == 2
    assert "[1.0000, 1.0000, 1.0000, … (5)]" in html
    assert "showing the first 1 of 2 rows" in html


@pytest.mark.parametrize(("value", "text"), [
    (None, "NULL"), (0.1234567, "0.123457"), (float("nan"), "NaN"), (3, "3"),
    ("x" * 100, "x" * 59 + "…"),
    (np.arange(10, dtype=np.float32), "[0.0000, 1.0000, 2.0000, … (10)]"),
    (b"\x00" * 16, "<16 bytes>"), ([1, 2], "[1, 2]"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_large_jpeg_is_drafted_and_exif_orientation_applied(ws):
    path = ws.root / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.new("RGB", (1200, 600), (200, 10, 10)).save(path, exif=exif.tobytes())
    data, original = thumbnail_png(path, 240)
    assert original == (1200, 600)
    assert Image.open(io.BytesIO(data)).size == (120, 240)  # upright: taller than wide


def test_corrupt_file_becomes_a_placeholder(ws):
    (ws.root / "bad.png").write_bytes(b"\x89PNG not really")
    html = image_grid(Result(table=pa.table({"image_path": ["bad.png"]})), ws)
    assert "unreadable image" in html
    assert "<img " not in html
