"""The demo, end to end on scikit-learn's digits (a very short training run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixql.demo import precision_at_k, run_demo, write_digits


def test_run_demo_builds_searches_and_draws(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = run_demo(tmp_path / "demo", max_epochs=1, time_budget=5, show=True, top_k=4, limit=200)
    root = tmp_path / "demo"
    assert out["images"] == 200
    assert len(list((root / "digits").rglob("*.png"))) == 200
    assert len(list((root / "queries").rglob("*.png"))) == 200
    assert out["query"].startswith("queries/3/")
    assert out["query"].endswith("_shifted.png")
    original = "digits/3/" + out["query"].split("/")[-1].split("_")[0] + ".png"
    for found in (out["matches"], out["pixel_matches"]):
        assert len(found) == 4
        assert all(m["image_path"].startswith("digits/") for m in found)
        assert all(m["image_path"] != original for m in found)  # its own original left out
        scores = [m["score"] for m in found]
        assert scores == sorted(scores, reverse=True)
    p = out["precision_at_10"]
    kinds = ["clean", "shifted", "rotated", "scaled", "noisy", "transformed"]
    for column in ("simclr", "pixels"):
        assert list(p[column]) == kinds
        assert all(0.0 <= v <= 1.0 for v in p[column].values())
    assert p["pixels"]["clean"] > 0.7
    assert out["build"]["kind"] == "SimCLR"
    assert out["build"]["epochs"] == 1
    with Image.open(out["contact_sheet"]) as sheet:
        assert Path(out["contact_sheet"]) == root / "demo_results.png"
        assert sheet.width > 5 * 112
        assert sheet.height > 2 * 112  # SimCLR's row and raw pixels' row
    printed = capsys.readouterr().out
    assert "precision@10" in printed
    assert "best matches" in printed
    assert "transformed" in printed


def test_digits_are_written_once_as_mnist_like_pngs(tmp_path: Path) -> None:
    assert write_digits(tmp_path, limit=30) == 30
    threes = sorted(p.name for p in (tmp_path / "3").iterdir())
    assert threes == ["0003.png", "0013.png", "0023.png"]
    first = tmp_path / "0" / "0000.png"
    with Image.open(first) as img:
        assert img.size == (28, 28)
        assert img.mode == "L"
        arr = np.asarray(img)
    assert arr[14, 14] < arr.max()  # a zero: dark centre, bright ink around it
    stamp = first.stat().st_mtime_ns
    write_digits(tmp_path, limit=30)
    assert first.stat().st_mtime_ns == stamp


def test_precision_at_k_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(60, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    expected = []
    for i in range(60):
        sims = unit @ unit[i]
        sims[i] = -np.inf
        expected.append(np.mean(labels[np.argsort(-sims)[:10]] == labels[i]))
    assert precision_at_k(vecs, labels, k=10, chunk=7) == pytest.approx(np.mean(expected))
