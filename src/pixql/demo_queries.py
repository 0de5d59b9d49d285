"""Transformed query images for ``pixql demo``: the digits as a real search meets them.

A search engine's queries are rarely as neatly centred as the images it indexed: they are
shifted, rotated, a different size, or noisy. :func:`write_queries` writes one transformed
copy of each demo digit (the transformations take turns, see :data:`TRANSFORMS`) as
``<folder>/<label>/<i>_<transform>.png``; the demo then searches the *clean* digits with
them. Raw pixels compare images pixel by pixel, so a digit moved by four pixels stops
overlapping itself; a contrastive model trained with shifts, zooms and rotations in its
augmentation embeds it next to the original.

Example:
    >>> import numpy as np
    >>> glyph = np.zeros((28, 28), np.uint8); glyph[8:20, 12:16] = 255
    >>> moved = TRANSFORMS["shifted"](glyph, np.random.default_rng(0))
    >>> moved.shape, moved.dtype.name, bool((moved != glyph).any())
    ((28, 28), 'uint8', True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: largest shift, pixels (each direction at least half of it)
SHIFT_PX = 4
#: rotation range, degrees (either direction)
ROTATE_DEG = (20.0, 35.0)
#: zoom-out range: the digit is shrunk to this share of its side and centred
SCALE = (0.55, 0.7)
#: std of the additive Gaussian noise, in grey levels
NOISE_STD = 70.0


def _from_pil(img: object) -> np.ndarray:
    return np.asarray(img, dtype=np.uint8).copy()


def shifted(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Moved by 3-4 pixels along both axes (black comes in at the edges)."""
    dy, dx = rng.integers(SHIFT_PX // 2 + 1, SHIFT_PX + 1, 2) * rng.choice([-1, 1], 2)
    out = np.zeros_like(img)
    h, w = img.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def rotated(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotated by 20-35 degrees, either way, about the centre."""
    from PIL import Image

    angle = float(rng.uniform(*ROTATE_DEG) * rng.choice([-1, 1]))
    return _from_pil(Image.fromarray(img).rotate(angle, Image.Resampling.BILINEAR, fillcolor=0))


def scaled(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shrunk to 55-70% of its side, centred on black."""
    from PIL import Image

    h, w = img.shape
    side = max(4, round(h * float(rng.uniform(*SCALE))))
    small = Image.fromarray(img).resize((side, side), Image.Resampling.BILINEAR)
    out = Image.new("L", (w, h), 0)
    out.paste(small, ((w - side) // 2, (h - side) // 2))
    return _from_pil(out)


def noisy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heavy additive Gaussian noise (std :data:`NOISE_STD` grey levels)."""
    noise = rng.normal(0.0, NOISE_STD, img.shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)


#: transformation name → function ``(uint8 (h, w), rng) → uint8 (h, w)``; they take turns
TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "shifted": shifted,
    "rotated": rotated,
    "scaled": scaled,
    "noisy": noisy,
}


def query_name(index: int, transform: str) -> str:
    """The file name of query ``index``'s transformed copy."""
    return f"{index:04d}_{transform}.png"


def transform_of(path: str) -> str:
    """The transformation a query file was made with (from its name)."""
    return path.rsplit("_", 1)[-1].removesuffix(".png")


def write_queries(digits: Path, folder: Path, *, seed: int = 0) -> int:
    """Write one transformed copy of every ``digits/<label>/<i>.png`` as
    ``folder/<label>/<i>_<transform>.png`` (digit ``i`` gets transform ``i % 4``); files
    already there are kept. Returns the number of queries."""
    from PIL import Image

    names = list(TRANSFORMS)
    sources = sorted(digits.glob("*/*.png"))
    for path in sources:
        index = int(path.stem)
        name = names[index % len(names)]
        out = folder / path.parent.name / query_name(index, name)
        if out.is_file():
            continue
        rng = np.random.default_rng([seed, index])
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L"), dtype=np.uint8)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(TRANSFORMS[name](arr, rng)).save(out)
    return len(sources)


def precision_against(queries: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray,
                      gallery_labels: np.ndarray, *, exclude: np.ndarray | None = None,
                      k: int = 10) -> float:
    """Mean share of each query's ``k`` nearest gallery rows (cosine) sharing its label.

    ``exclude[i]`` is a gallery row that never counts for query ``i`` (the clean original a
    query was made from), or -1 for none.

    Examples:
        >>> g = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
        >>> q = np.array([[1, 0.05]], dtype=np.float32)
        >>> precision_against(q, np.array([0]), g, np.array([0, 0, 1]), k=2)
        1.0
        >>> precision_against(q, np.array([0]), g, np.array([0, 0, 1]), k=2,
        ...                   exclude=np.array([0]))
        0.5
    """
    def unit(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    sims = unit(queries) @ unit(gallery).T
    if exclude is not None:
        rows = np.flatnonzero(exclude >= 0)
        sims[rows, exclude[rows]] = -np.inf
    k = min(k, gallery.shape[0] - (0 if exclude is None else 1))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return float((np.asarray(gallery_labels)[top] == np.asarray(query_labels)[:, None]).mean())
