"""Exact top-k over 8-bit codes: the same answer as the fp32 kernel, by construction."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from pixql.index import compressed, compressed_build
from pixql.index.exact import dot_scores, query_unit, rank, unit_rows

if TYPE_CHECKING:
    from pathlib import Path

pytest.importorskip("faiss")


def _codes(x: np.ndarray, valid: np.ndarray) -> compressed.SQ8Codes:
    return compressed_build.build(lambda s, e: x[s:e], len(x), x.shape[1], valid)


def _fp32(units: np.ndarray, q: np.ndarray, k: int,
          cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = dot_scores(units, q, cand)
    idx = rank(scores, k)
    return cand[idx], scores[idx]


def _data(kind: str, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "random":
        x = rng.standard_normal((n, d))
    elif kind == "clustered":
        centres = rng.standard_normal((8, d)) * 3
        x = centres[rng.integers(0, 8, n)] + rng.standard_normal((n, d)) * 0.2
    else:  # near-ties below the code resolution, and exact duplicates
        base = rng.standard_normal(d)
        x = base + rng.standard_normal((n, d)) * 1e-4
        x[::7] = base  # exact duplicates of one vector: ties
        x[n // 2 :] = rng.standard_normal((n - n // 2, d))
    return unit_rows(x.astype(np.float32))


@pytest.mark.parametrize("kind", ["random", "clustered", "near_ties"])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_exact_top_equals_fp32_kernel(kind: str, k: int) -> None:
    rng = np.random.default_rng(len(kind) * 100 + k)
    units = _data(kind, 3000, 24, rng)
    valid = np.ones(len(units), bool)
    valid[[5, 77, 2999]] = False
    units[~valid] = 0.0
    codes = _codes(units, valid)
    everything = np.flatnonzero(valid)
    for i in range(8):
        q = query_unit(units[rng.integers(0, 3000)] + (0 if i % 2 else
                                                       rng.standard_normal(24) * 0.05))
        for cand in (None, everything[everything % 3 == 0]):
            got = compressed.exact_top(codes, units, q, k, cand, valid)
            want = _fp32(units, q, k, everything if cand is None else cand)
            if got is None:  # the shortlist did not pay: the caller scans fp32
                assert kind != "random"
                continue
            assert np.array_equal(got[0], want[0])
            assert np.array_equal(got[1], want[1])  # same scores, bit for bit


def test_the_bound_holds_for_every_row() -> None:
    """|code score - (fp32 score - q·lo)| <= the bound the shortlist uses, row by row."""
    rng = np.random.default_rng(3)
    units = _data("clustered", 5000, 32, rng)
    codes = _codes(units, np.ones(len(units), bool))
    decoded = np.concatenate([s.sa_decode(s.sa_encode(np.ascontiguousarray(
        ((units[a : a + s.ntotal] - codes.lo) / codes.span).astype(np.float32))))
        for s, a in zip(codes.shards, codes.starts, strict=True)])
    for _ in range(20):
        q = query_unit(rng.standard_normal(32))
        q2, half = codes.bound(q)
        approx = decoded.astype(np.float64) @ q2.astype(np.float64)
        exact = dot_scores(units, q).astype(np.float64) - float(q.astype(np.float64)
                                                                @ codes.lo)
        assert np.abs(approx - exact).max() <= half


def test_near_ties_widen_the_shortlist_until_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    """300 rows that share their codes (differences far below one code step) but not their
    fp32 scores: top 3 must come from all of them, so the scan widens past its first
    shortlist."""
    monkeypatch.setattr(compressed, "SHORTLIST_EXTRA", 16)
    rng = np.random.default_rng(7)
    d = 16
    base = rng.standard_normal(d)
    x = np.concatenate([base + rng.standard_normal((300, d)) * 1e-5,
                        rng.standard_normal((3700, d))])
    units = unit_rows(x.astype(np.float32))
    valid = np.ones(len(units), bool)
    codes = _codes(units, valid)
    q = query_unit(base)
    got = compressed.exact_top(codes, units, q, 3, None, valid)
    assert got is not None
    assert codes.stats.get("widened", 0) >= 1
    want = _fp32(units, q, 3, np.arange(len(units)))
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])


def test_shards_cover_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compressed_build, "SHARD_MIN_ROWS", 100)
    monkeypatch.setattr(compressed_build, "_threads", lambda: 3)
    rng = np.random.default_rng(1)
    units = _data("random", 1001, 8, rng)
    valid = np.ones(len(units), bool)
    codes = _codes(units, valid)
    assert len(codes.shards) == 3
    assert codes.n == 1001
    q = query_unit(rng.standard_normal(8))
    got = compressed.exact_top(codes, units, q, 50, None, valid)
    want = _fp32(units, q, 50, np.arange(1001))
    assert got is not None
    assert np.array_equal(got[0], want[0])


def test_big_codes_are_mapped_shard_by_shard(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Codes larger than PIXQL_CODES_MEMORY_MB stay on disk: each scan maps its shards."""
    monkeypatch.setattr(compressed_build, "SHARD_MIN_ROWS", 100)
    monkeypatch.setattr(compressed_build, "SHARD_MAX_BYTES", 64 * 300)
    monkeypatch.setenv("PIXQL_CODES_MEMORY_MB", "0.01")
    rng = np.random.default_rng(4)
    units = _data("clustered", 2000, 64, rng)
    valid = np.ones(len(units), bool)
    codes = compressed_build.build(lambda s, e: units[s:e], 2000, 64, valid, folder=tmp_path)
    assert codes.mapped
    assert len(codes.shards) == 7
    for _ in range(5):
        q = query_unit(units[rng.integers(0, 2000)])
        got = compressed.exact_top(codes, units, q, 10, None, valid)
        want = _fp32(units, q, 10, np.arange(2000))
        assert got is not None
        assert np.array_equal(got[0], want[0])
        assert np.array_equal(got[1], want[1])
