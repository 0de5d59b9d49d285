"""The exact kernels: position-independent scores and top-k ranking."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pixql.index.exact import dot_scores, query_unit, rank, unit_rows


def naive_rank(scores: np.ndarray, k: int | None) -> np.ndarray:
    s = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-s, kind="stable")
    return order if k is None else order[:k]


@pytest.mark.parametrize("n", [0, 1, 5, 1000, 300_000])
@pytest.mark.parametrize("k", [None, 1, 10, 1000, 5000])
def test_rank_is_descending_with_ties_in_index_order(n: int, k: int | None) -> None:
    rng = np.random.default_rng(n)
    scores = rng.integers(0, 50, n).astype(np.float32)  # many ties
    assert np.array_equal(rank(scores, k), naive_rank(scores, k))
    smooth = rng.standard_normal(n).astype(np.float32)
    assert np.array_equal(rank(smooth, k), naive_rank(smooth, k))


def test_rank_puts_nan_last_and_handles_all_equal() -> None:
    scores = np.array([0.5, np.nan, 0.9, 0.5], dtype=np.float32)
    assert list(rank(scores, None)) == [2, 0, 3, 1]
    assert list(rank(np.ones(100_000, np.float32), 3)) == [0, 1, 2]


def test_unit_rows_zeroes_null_zero_and_non_finite_rows() -> None:
    x = np.array([[3, 4], [0, 0], [np.nan, 1], [np.inf, 1], [1, 0]], dtype=np.float32)
    valid = np.array([True, True, True, True, False])
    u = unit_rows(x, valid)
    assert np.allclose(u[0], [0.6, 0.8])
    assert not u[1:].any()
    assert np.allclose(query_unit(np.array([0, 2], np.float32)), [0, 1])


@pytest.mark.parametrize("d", [3, 13, 16, 144, 513])
def test_scores_do_not_depend_on_a_rows_position(d: int) -> None:
    rng = np.random.default_rng(d)
    u = unit_rows(rng.standard_normal((5000, d)).astype(np.float32))
    u[100:110] = u[7]  # identical rows must tie exactly
    q = query_unit(rng.standard_normal(d).astype(np.float32))
    full = dot_scores(u, q)
    assert np.unique(full[[7, *range(100, 110)]]).size == 1
    for pos in (np.arange(3, 4999, 7), np.array([4998, 0, 17]), np.arange(1, 5000)):
        assert np.array_equal(dot_scores(u, q, pos), full[pos])
    assert np.array_equal(dot_scores(u[13:29], q), full[13:29])
    assert np.allclose(full, u.astype(np.float64) @ q.astype(np.float64), atol=1e-6)


def test_gather_reads_mapped_rows_like_indexing(tmp_path: Any) -> None:
    """Rows of a vector file are read with pread: the same values as indexing the map,
    from any view of it; out-of-range rows are an error, not garbage."""
    from pixql.index.exact import _file_of, gather
    from pixql.index.vector_files import map_units

    x = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)
    (tmp_path / "u.f32").write_bytes(x.tobytes())
    mapped = map_units(tmp_path / "u.f32", 50, 6)
    assert _file_of(mapped) is not None
    pick = np.array([49, 0, 7, 7, 20])
    assert np.array_equal(gather(mapped, pick), x[pick])
    assert np.array_equal(gather(mapped[10:], pick[1:]), x[10:][pick[1:]])  # a view
    assert gather(mapped, np.zeros(0, np.int64)).shape == (0, 6)
    assert np.array_equal(gather(x, pick), x[pick])  # plain arrays: plain indexing
    with pytest.raises(IndexError):
        gather(mapped, np.array([50]))
    run = np.arange(12, 40)  # consecutive rows: one read, the same values
    assert np.array_equal(gather(mapped, run), x[run])
    assert np.array_equal(gather(mapped[5:], run[:10]), x[5:][run[:10]])
    with pytest.raises(IndexError):
        gather(mapped, np.arange(45, 51))
