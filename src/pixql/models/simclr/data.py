"""Training data: probe a table's images, then decode them all once into a ``uint8`` tensor.

Decoding up front (60,000 MNIST digits are 47 MB) means every epoch reads from memory and
the batched augmentations in :mod:`.transforms` do the rest, so the model never waits on
image files.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pixql.errors import ImageError
from pixql.images import load_image, map_ordered
from pixql.progress import progress_bar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

#: how many images :func:`probe_images` opens
PROBE_COUNT = 32
#: how many bad paths an error names
MAX_NAMED = 5


@dataclass(frozen=True)
class ImageProbe:
    """What a sample of the training images looks like."""

    size: int  # median shorter side
    grayscale: bool  # every sampled image has equal channels


def image_to_array(img: Any, *, image_size: int, grayscale: bool) -> np.ndarray:
    """A PIL image → ``uint8 (c, s, s)``: grey (``c=1``) or RGB (``c=3``), resized (squashed)
    to ``image_size`` square with bilinear, antialiased resampling. Thread-safe."""
    from PIL import Image

    img = img.convert("L" if grayscale else "RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    return arr[None] if grayscale else np.ascontiguousarray(arr.transpose(2, 0, 1))


def _is_grey(img: Any) -> bool:
    if img.mode in ("L", "LA", "1", "I", "I;16", "F"):
        return True
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def probe_images(paths: Sequence[Path], *, count: int = PROBE_COUNT) -> ImageProbe:
    """Open up to ``count`` images spread over ``paths`` to pick a size and colour mode."""
    if not paths:
        raise ImageError("no training images: the AS query returned no rows")
    step = max(1, len(paths) // count)
    sample = [load_image(p) for p in list(paths)[::step][:count]]
    size = int(statistics.median(min(img.size) for img in sample))
    return ImageProbe(size=size, grayscale=all(_is_grey(img) for img in sample))


def image_paths(rows: Any, column: str, resolve: Callable[[str], Path]) -> list[Path]:
    """The resolved paths in ``column`` of an Arrow table; clear errors for a missing column
    or NULLs."""
    from pixql.errors import NotFoundError

    if rows is None or column not in rows.column_names:
        have = ", ".join(rows.column_names) if rows is not None else "none"
        raise NotFoundError(
            f"image column {column!r} is not in the training query (columns: {have}); "
            f"pass OPTIONS (image_col='<column with image paths>')")
    values = rows.column(column).to_pylist()
    nulls = sum(v is None for v in values)
    if nulls:
        raise ImageError(f"{nulls} row(s) have NULL in {column!r}; add "
                         f"WHERE {column} IS NOT NULL to the AS query")
    return [resolve(str(v)) for v in values]


def decode_all(paths: Sequence[Path], *, image_size: int, grayscale: bool, workers: int,
               progress: bool = True) -> torch.Tensor:
    """Decode every image into one ``uint8 (n, c, s, s)`` tensor, in order.

    Raises:
        ImageError: naming up to :data:`MAX_NAMED` missing or unreadable files.
    """
    c = 1 if grayscale else 3
    out = torch.empty((len(paths), c, image_size, image_size), dtype=torch.uint8)
    bad: list[str] = []

    def decode(path: Path) -> np.ndarray | None:
        try:
            return image_to_array(load_image(path), image_size=image_size, grayscale=grayscale)
        except ImageError as e:
            bad.append(str(e))
            return None

    done = 0
    with progress_bar(total=len(paths), desc="decoding images", unit="img",
                      enabled=progress) as bar:
        for chunk in map_ordered(decode, list(paths), workers=workers, chunk=1024):
            for i, arr in enumerate(chunk):
                if arr is not None:
                    out[done + i] = torch.from_numpy(arr)
            done += len(chunk)
            bar.update(len(chunk))
    if bad:
        more = " (and more)" if len(bad) > MAX_NAMED else ""
        raise ImageError(f"cannot train on {len(bad)} image(s): {'; '.join(bad[:MAX_NAMED])}"
                         f"{more}. Fix them or leave them out of the AS query.",
                         paths=bad[:MAX_NAMED])
    return out


def channel_stats(images: torch.Tensor, *, sample: int = 10_000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1] units) of up to ``sample`` images."""
    idx = torch.linspace(0, images.shape[0] - 1, min(sample, images.shape[0])).long()
    x = images[idx].float() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp(min=1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]
