"""Tables of real embeddings for ``benchmarks/ann.py``: MNIST digits embedded with ``Pixels``.

* 70,000 rows: the MNIST digits (train + test) embedded by ``CONVERT USING px``;
* ``70,000 × c`` rows: the same originals plus ``c - 1`` augmented copies of every digit — a
  random affine warp per image (shift up to ±``SHIFT_PX`` px, rotation up to ±``ROTATE_DEG``°,
  scale in [1 - ``SCALE``, 1 + ``SCALE``]) applied with ``torch.nn.functional.affine_grid`` /
  ``grid_sample`` (bilinear, black outside) in batches, seeded per copy, then rounded to 8-bit
  grey levels as a PNG would hold them. Every row (original or copy) is embedded by the
  ``Pixels`` model's own ``forward`` + ``postprocess``, so the stored vectors are what CONVERT
  would store for those images (checked on a sample: written as PNGs, embedded through the
  normal path, compared bit for bit).

Tables are kept on disk between runs and rebuilt only when their row count or recipe changed.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import unpack_mnist

import pixql

#: MNIST digits (60,000 train + 10,000 test)
MNIST_ROWS = 70_000
#: side of the Pixels grid (MNIST's own size: no resizing)
SIDE = 28
#: augmentation recipe (stored with the table: a changed recipe rebuilds it)
SHIFT_PX = 3.0
ROTATE_DEG = 12.0
SCALE = 0.10
SEED = 1234
RECIPE = {"shift_px": SHIFT_PX, "rotate_deg": ROTATE_DEG, "scale": SCALE, "seed": SEED,
          "interpolation": "bilinear", "quantize": "uint8", "version": 1}


def recipe_text() -> str:
    """The augmentation recipe in words (for the report)."""
    return (f"shift uniform in ±{SHIFT_PX:g} px (x and y), rotation uniform in ±{ROTATE_DEG:g}°, "
            f"scale uniform in [{1 - SCALE:g}, {1 + SCALE:g}], bilinear `affine_grid`/"
            f"`grid_sample` with black outside, rounded to 8-bit grey; torch seed {SEED} + copy")


def prepare(folder: Path, rows: int, progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """(workspace, how the table was made): the model ``px`` (Pixels, image_size=28) and
    the table ``digits`` of ``rows`` embedded MNIST digits (a multiple of 70,000). The
    dict says ``this_run`` (built now, else kept from an earlier run) and ``seconds`` (the
    build's, when known)."""
    if rows < MNIST_ROWS or rows % MNIST_ROWS:
        raise ValueError(f"rows must be a multiple of {MNIST_ROWS:,}, not {rows:,}")
    if rows == MNIST_ROWS:
        return convert_table(folder, progress)
    return augmented_table(folder, rows // MNIST_ROWS, progress)


# -- 70,000 rows, by CONVERT --------------------------------------------------------------
def convert_table(folder: Path, progress: bool) -> tuple[Any, dict[str, Any]]:
    """``digits`` (70,000 rows) with its Pixels embeddings made by CONVERT."""
    ws = pixql.connect(folder, progress=progress)
    done = ws.sql("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'digits' "
                  "AND column_name = 'convert_result'").fetchone()
    if done and done[0] and ws.sql("SELECT count(convert_result) FROM digits").fetchone()[0] \
            == MNIST_ROWS:
        return ws, {"this_run": False, "seconds": None}
    root = unpack_mnist()
    for split in ("train", "test"):
        ws.sql(f"COPY mnist_{split} OPTIONS (if_exists='replace', resolve_paths='filepath') "
               f"FROM '{(root / f'{split}.csv').as_posix()}'")
    ws.sql("CREATE OR REPLACE TABLE digits AS SELECT filepath AS image_path, label, "
           "'train' AS split FROM mnist_train UNION ALL SELECT filepath, label, 'test' "
           "FROM mnist_test")
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=28, overwrite=True)")
    t0 = time.perf_counter()
    ws.sql("CONVERT USING px AS SELECT * FROM digits")
    took = time.perf_counter() - t0
    print(f"CONVERT of 70,000 digits: {took:.1f} s", flush=True)
    return ws, {"this_run": True, "seconds": took}


# -- originals + augmented copies ---------------------------------------------------------
def augmented_table(folder: Path, copies: int, progress: bool) -> tuple[Any, dict[str, Any]]:
    """``digits(image_path, label, split, aug, convert_result FLOAT[784])``: the 70,000
    originals (``aug`` = 0) then ``copies - 1`` augmented copies of each (``aug`` = 1, 2, ...),
    ``image_path`` being the source PNG."""
    ws = pixql.connect(folder, progress=progress)
    rows = MNIST_ROWS * copies
    marker = folder / "digits_recipe.json"
    want = {**RECIPE, "rows": rows}
    have = ws.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'digits'").fetchone()
    kept = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
    if have and have[0] and {k: kept.get(k) for k in want} == want \
            and ws.sql("SELECT count(*) FROM digits").fetchone()[0] == rows:
        return ws, {"this_run": False, "seconds": kept.get("build_seconds")}
    marker.unlink(missing_ok=True)
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=28, overwrite=True)")
    emb = ws.load_embedder("px")
    t0 = time.perf_counter()
    meta, pixels = mnist_pixels(emb)
    print(f"decoded {len(pixels):,} PNGs: {time.perf_counter() - t0:.1f} s", flush=True)
    cur = ws.cursor()
    cur.execute(f"CREATE OR REPLACE TABLE digits (image_path VARCHAR, label INTEGER, "
                f"split VARCHAR, aug INTEGER, convert_result FLOAT[{SIDE * SIDE}])")
    for aug in range(copies):
        t1 = time.perf_counter()
        images = pixels if aug == 0 else augment(pixels, SEED + aug)
        if aug == 1:
            check_same_as_convert(emb, images[:16])
        insert(cur, meta, aug, embed(emb, images))
        print(f"copy {aug}/{copies - 1}: {time.perf_counter() - t1:.1f} s", file=sys.stderr,
              flush=True)
    cur.execute("CHECKPOINT")
    took = time.perf_counter() - t0
    marker.write_text(json.dumps({**want, "build_seconds": round(took, 1)}))
    print(f"built {rows:,} rows in {took:.0f} s", flush=True)
    return ws, {"this_run": True, "seconds": took}


def mnist_pixels(emb: Any) -> tuple[dict[str, list[Any]], np.ndarray]:
    """(columns image_path/label/split, (70000, 784) float32 grey levels) of the MNIST PNGs
    in the order CONVERT's table has them (train then test), decoded by ``emb.preprocess``."""
    from pixql.images import load_image, map_ordered

    root = unpack_mnist()
    meta: dict[str, list[Any]] = {"image_path": [], "label": [], "split": []}
    for split in ("train", "test"):
        with open(root / f"{split}.csv", newline="") as f:
            for rec in csv.DictReader(f):
                meta["image_path"].append((root / rec["filepath"]).as_posix())
                meta["label"].append(int(rec["label"]))
                meta["split"].append(split)
    out = np.empty((len(meta["image_path"]), SIDE * SIDE), dtype=np.float32)
    i = 0
    for chunk in map_ordered(lambda p: emb.preprocess(load_image(p), "image"),
                             meta["image_path"], workers=2, chunk=4096):
        out[i : i + len(chunk)] = np.stack(chunk)
        i += len(chunk)
    return meta, out


def augment(pixels: np.ndarray, seed: int) -> np.ndarray:
    """One random affine warp per image of ``pixels`` ((n, 784) grey levels in [0, 1]),
    rounded to 8-bit levels; (n, 784) float32."""
    import math

    import torch
    import torch.nn.functional as F

    n = len(pixels)
    gen = torch.Generator().manual_seed(seed)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    angle = uniform(-ROTATE_DEG, ROTATE_DEG) * (math.pi / 180)
    scale = uniform(1 - SCALE, 1 + SCALE)
    shift = torch.stack([uniform(-SHIFT_PX, SHIFT_PX), uniform(-SHIFT_PX, SHIFT_PX)], 1)
    # theta maps output coordinates to input ones (normalised to [-1, 1]): the inverse of
    # "scale, rotate, then shift"
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    rot = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
    move = -(rot @ (shift * (2 / SIDE)).unsqueeze(2))
    theta = torch.cat([rot, move], 2)
    x = torch.from_numpy(pixels).reshape(n, 1, SIDE, SIDE)
    grid = F.affine_grid(theta, [n, 1, SIDE, SIDE], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    levels = torch.round(out.clamp(0, 1) * 255)
    return (levels.reshape(n, -1).numpy() / np.float32(255)).astype(np.float32)


def embed(emb: Any, images: np.ndarray) -> np.ndarray:
    """What CONVERT stores for preprocessed images: the embedder's forward + postprocess."""
    return np.asarray(emb.postprocess(emb.forward(list(images), "image")), dtype=np.float32)


def check_same_as_convert(emb: Any, images: np.ndarray) -> None:
    """Write ``images`` as PNGs and embed them the way CONVERT does (decode, preprocess,
    forward, postprocess): the vectors must equal :func:`embed`'s bit for bit."""
    from PIL import Image

    from pixql.images import load_image

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, img in enumerate(images):
            grey = np.round(img.reshape(SIDE, SIDE) * 255).astype(np.uint8)
            paths.append(Path(tmp) / f"{i}.png")
            Image.fromarray(grey).save(paths[-1])
        via_png = emb.embed([load_image(p) for p in paths], "image")
    if not np.array_equal(via_png, embed(emb, images)):
        raise SystemExit("augmented vectors differ from what CONVERT computes for the PNGs")


def insert(cur: Any, meta: dict[str, list[Any]], aug: int, vectors: np.ndarray) -> None:
    """Append one copy of every digit (Arrow registration, one INSERT)."""
    import pyarrow as pa

    n, d = vectors.shape
    cur.register("new_digits", pa.table({
        "image_path": pa.array(meta["image_path"]),
        "label": pa.array(meta["label"], type=pa.int32()),
        "split": pa.array(meta["split"]),
        "aug": pa.array(np.full(n, aug, dtype=np.int32)),
        "convert_result": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), d)}))
    try:
        cur.execute("INSERT INTO digits SELECT * FROM new_digits")
    finally:
        cur.unregister("new_digits")
