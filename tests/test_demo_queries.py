"""The demo's transformed queries: what each transformation does, the files, the metric."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from pixql.demo import write_digits
from pixql.demo_queries import (
    SCALE,
    TRANSFORMS,
    precision_against,
    query_name,
    transform_of,
    write_queries,
)

if TYPE_CHECKING:
    from pathlib import Path


def _bar() -> np.ndarray:
    img = np.zeros((28, 28), np.uint8)
    img[6:22, 12:16] = 255
    return img


def test_shift_moves_the_ink_without_changing_it() -> None:
    img = _bar()
    out = TRANSFORMS["shifted"](img, np.random.default_rng(1))
    ys, xs = np.nonzero(out)
    y0, x0 = np.nonzero(img)
    dy, dx = ys.min() - y0.min(), xs.min() - x0.min()
    assert 3 <= abs(dy) <= 4
    assert 3 <= abs(dx) <= 4
    assert out.sum() == img.sum()  # the bar stays inside the frame


def test_rotation_and_scale_keep_the_centre_and_shrink() -> None:
    img = _bar()
    rng = np.random.default_rng(2)
    rot = TRANSFORMS["rotated"](img, rng)
    assert rot.shape == img.shape
    assert rot[14, 14] > 0  # rotated about the centre
    assert not np.array_equal(rot, img)
    small = TRANSFORMS["scaled"](img, rng)
    rows = np.nonzero(small.max(axis=1))[0]
    assert SCALE[0] * 16 - 2 <= rows.max() - rows.min() + 1 <= SCALE[1] * 16 + 2


def test_noise_is_seeded() -> None:
    img = _bar()
    a = TRANSFORMS["noisy"](img, np.random.default_rng(3))
    b = TRANSFORMS["noisy"](img, np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert (a != img).mean() > 0.5


def test_write_queries_takes_turns_and_keeps_labels(tmp_path: Path) -> None:
    write_digits(tmp_path / "digits", limit=12)
    assert write_queries(tmp_path / "digits", tmp_path / "queries") == 12
    files = sorted((tmp_path / "queries").glob("*/*.png"))
    assert len(files) == 12
    for path in files:
        index = int(path.name.split("_")[0])
        assert transform_of(path.as_posix()) == list(TRANSFORMS)[index % 4]
        assert (tmp_path / "digits" / path.parent.name / f"{index:04d}.png").is_file()
        with Image.open(path) as img:
            assert (img.size, img.mode) == ((28, 28), "L")
    stamp = files[0].stat().st_mtime_ns
    write_queries(tmp_path / "digits", tmp_path / "queries")
    assert files[0].stat().st_mtime_ns == stamp


def test_query_names_round_trip() -> None:
    assert transform_of("queries/3/" + query_name(13, "rotated")) == "rotated"


def test_precision_against_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    gallery, queries = rng.normal(size=(40, 4)), rng.normal(size=(15, 4))
    g_labels, q_labels = rng.integers(0, 3, 40), rng.integers(0, 3, 15)
    exclude = rng.integers(-1, 40, 15)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    sims = unit(queries) @ unit(gallery).T
    expected = []
    for i in range(15):
        if exclude[i] >= 0:
            sims[i, exclude[i]] = -np.inf
        expected.append(np.mean(g_labels[np.argsort(-sims[i])[:10]] == q_labels[i]))
    got = precision_against(queries, q_labels, gallery, g_labels, exclude=exclude, k=10)
    assert got == pytest.approx(np.mean(expected))
