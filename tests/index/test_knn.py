"""Batched top-k: the same answers as one exact search per query, and as numpy."""

from __future__ import annotations

import numpy as np
import pytest

from pixql.index import knn as knn_mod
from pixql.index.exact import dot_scores, rank, unit_rows
from pixql.index.knn import knn, margin


def _data(n: int = 3000, d: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[100:110] = x[5]  # exact duplicates: ties
    return unit_rows(x)


def _one_by_one(units: np.ndarray, queries: np.ndarray, top_k: int | None,
                cand: np.ndarray | None, exclude: np.ndarray | None,
                min_score: float | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """What a loop of single exact searches returns (the contract knn keeps)."""
    out = []
    for i, q in enumerate(queries):
        pos = np.arange(len(units)) if cand is None else cand
        if exclude is not None:
            pos = pos[pos != exclude[i]]
        s = dot_scores(units, q, pos)
        idx = rank(s, top_k)
        if min_score is not None:
            idx = idx[s[idx] >= min_score]
        out.append((pos[idx], s[idx]))
    return out


@pytest.fixture
def small_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles much smaller than the data, so every merge path runs."""
    monkeypatch.setattr(knn_mod, "ROW_BLOCK", 256)
    monkeypatch.setattr(knn_mod, "QUERY_BLOCK", 7)


@pytest.mark.usefixtures("small_tiles")
@pytest.mark.parametrize("top_k", [1, 5, 40, None])
@pytest.mark.parametrize("with_cand", [False, True])
@pytest.mark.parametrize("with_exclude", [False, True])
@pytest.mark.parametrize("min_score", [None, 0.3])
def test_equals_a_loop_of_single_exact_searches(top_k: int | None, with_cand: bool,
                                                with_exclude: bool,
                                                min_score: float | None) -> None:
    units = _data()
    qpos = np.array([5, 7, 100, 2999, 0, 1234, 5, 17, 18, 19, 20])
    queries = units[qpos]
    cand = np.flatnonzero(np.arange(len(units)) % 3 != 1)[::-1].copy() if with_cand else None
    exclude = qpos if with_exclude else None
    got = knn(units, queries, top_k, cand=cand, exclude=exclude, min_score=min_score)
    want = _one_by_one(units, queries, top_k, cand, exclude, min_score)
    for i, (rows, scores) in enumerate(want):
        mine = got.query == i
        assert np.array_equal(got.row[mine], rows)  # same rows, same order (ties too)
        assert np.array_equal(got.score[mine], scores)  # same scores, bit for bit
    assert (np.diff(got.query) >= 0).all()


def test_matches_a_float64_numpy_reference() -> None:
    units = _data(n=5000, d=64, seed=1)
    queries = unit_rows(np.random.default_rng(2).standard_normal((30, 64)).astype(np.float32))
    got = knn(units, queries, 10)
    ref = units.astype(np.float64) @ queries.astype(np.float64).T
    for i in range(len(queries)):
        rows, scores = got.row[got.query == i], got.score[got.query == i]
        assert len(rows) == 10
        np.testing.assert_allclose(scores, ref[rows, i], atol=1e-5)
        best = np.sort(ref[:, i])[::-1][:10]
        np.testing.assert_allclose(scores, best, atol=1e-5)  # the 10 best scores


def test_exclude_never_returns_the_excluded_row_but_keeps_its_duplicates() -> None:
    units = _data()
    got = knn(units, units[[5]], 11, exclude=np.array([5]))
    assert 5 not in got.row
    assert sorted(got.row[:10]) == list(range(100, 110))  # the ten exact copies of row 5


def test_empty_inputs_give_empty_results() -> None:
    units = _data(n=50)
    assert len(knn(units, units[:0], 5)) == 0
    assert len(knn(units, units[:3], 5, cand=np.zeros(0, np.int64))) == 0


def test_min_score_above_everything_returns_nothing() -> None:
    units = _data(n=200)
    got = knn(units, units[:4], None, min_score=1.0, exclude=np.arange(4))
    assert len(got) == 0


def test_margin_grows_with_dimension() -> None:
    assert margin(512) > margin(64) > 0
    assert margin(512) < 1e-3
