"""Batched exact top-k (a kNN join): many queries against one matrix of unit rows, in one
pass over the rows.

:func:`knn` scores tiles of (queries × rows) with a BLAS matrix product, which reads each
block of rows once for a whole block of queries instead of once per query. BLAS does not
promise bit-identical scores for a row wherever it sits in a tile, so the product only
*selects*: every row whose tile score is within a proven error margin of the query's k-th
best is a candidate, and the candidates are re-scored with the exact kernel
(:func:`pixql.index.exact.dot_scores`), the same one a single SEARCH uses. Results are
therefore identical to running one exact search per query: same rows, same order (score
descending, ties in row order), same scores, bit for bit.

Why the margin is safe: for unit vectors of dimension d, a float32 dot product differs from
the exact value by at most about ``d * 2**-24`` (each of the d products and additions
rounds once); two such computations (BLAS and einsum) differ by at most twice that, ``e``.
If ``A`` is the k-th best tile score, at least k rows score ``>= A - e`` exactly, so the
exact k-th best is ``>= A - e`` and every exact winner has a tile score ``>= A - 2e``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixql.index.exact import dot_scores, rank

#: queries scored together (one tile's height)
QUERY_BLOCK = 256
#: rows scored together (one tile's width): 256 × 8192 float32 scores = 8 MiB
ROW_BLOCK = 8192


@dataclass(frozen=True)
class KnnResult:
    """Matches of every query, grouped by query (in query order), best first.

    ``query[i]`` is the index of the query (into the ``queries`` matrix), ``row[i]`` the
    position of the matching row in ``units`` and ``score[i]`` its cosine score.
    """

    query: np.ndarray  # int64
    row: np.ndarray  # int64
    score: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.row)


def margin(dim: int) -> float:
    """Twice the worst-case difference of two float32 dot products of unit vectors of
    dimension ``dim`` (see the module docstring), plus slack for norms a hair above 1."""
    return 4.0 * dim * 2.0**-24 + 1e-6


def knn(units: np.ndarray, queries: np.ndarray, top_k: int | None, *,
        cand: np.ndarray | None = None, exclude: np.ndarray | None = None,
        min_score: float | None = None) -> KnnResult:
    """The best ``top_k`` rows of ``units`` for each row of ``queries`` (unit rows too).

    ``cand``: the positions of ``units`` that may match, in their ranking order (ties keep
    this order; None: every row, in order). ``exclude[q]``: a position query ``q`` must not
    match (itself; -1 for none). ``min_score``: only matches scoring at least this much.
    ``top_k`` None: every candidate row (that passes ``min_score``).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n_rows = len(units) if cand is None else len(cand)
    if len(queries) == 0 or n_rows == 0:
        empty = np.zeros(0, dtype=np.int64)
        return KnnResult(empty, empty, np.zeros(0, dtype=np.float32))
    ex = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    parts = [_query_block(units, queries, s, top_k, cand, ex, min_score)
             for s in range(0, len(queries), QUERY_BLOCK)]
    return KnnResult(np.concatenate([p.query for p in parts]),
                     np.concatenate([p.row for p in parts]),
                     np.concatenate([p.score for p in parts]))


def _query_block(units: np.ndarray, queries: np.ndarray, start: int, top_k: int | None,
                 cand: np.ndarray | None, exclude: np.ndarray | None,
                 min_score: float | None) -> KnnResult:
    """:func:`knn` for the queries ``start .. start + QUERY_BLOCK``."""
    qb = queries[start : start + QUERY_BLOCK]
    ex = None if exclude is None else exclude[start : start + len(qb)]
    eps = margin(units.shape[1])
    # the k-th best excluding a query's own row is >= the (k+1)-th best including it
    need = None if top_k is None else top_k + (0 if ex is None else 1)
    floor = -np.inf if min_score is None else min_score - eps
    thr = np.full(len(qb), floor, dtype=np.float32)
    got_q, got_j, got_s = [], [], []
    n_rows = len(units) if cand is None else len(cand)
    for r in range(0, n_rows, ROW_BLOCK):
        rows = units[r : r + ROW_BLOCK] if cand is None else units[cand[r : r + ROW_BLOCK]]
        tile = qb @ rows.T  # (queries, rows): BLAS, selection only
        mask = tile >= thr[:, None]
        if need is not None and need < tile.shape[1]:
            _tighten(tile, mask, thr, need, eps)
        qi, jj = np.nonzero(mask)
        got_q.append(qi)
        got_j.append(jj + r)
        got_s.append(tile[qi, jj])
    return _exact_merge(units, qb, start, np.concatenate(got_q), np.concatenate(got_j),
                        np.concatenate(got_s), need, top_k, cand, ex, min_score, eps)


def _tighten(tile: np.ndarray, mask: np.ndarray, thr: np.ndarray, need: int,
             eps: float) -> None:
    """Raise the thresholds of the queries with many candidates in ``tile`` to their
    ``need``-th best score there, minus ``eps`` (a lower bound of the final threshold), and
    update their ``mask`` rows. Once a query's threshold is good, later tiles give it few
    candidates and cost no partition."""
    many = np.flatnonzero(mask.sum(axis=1) > 4 * need + 16)
    if not len(many):
        return
    width = tile.shape[1]
    sub = tile[many]
    kth = np.partition(sub, width - need, axis=1)[:, width - need]
    thr[many] = np.maximum(thr[many], kth - eps)
    mask[many] = sub >= thr[many, None]


def _exact_merge(units: np.ndarray, qb: np.ndarray, start: int, qi: np.ndarray,
                 jj: np.ndarray, approx: np.ndarray, need: int | None, top_k: int | None,
                 cand: np.ndarray | None, exclude: np.ndarray | None,
                 min_score: float | None, eps: float) -> KnnResult:
    """Keep each query's candidates within ``eps`` of its k-th best tile score, re-score
    them exactly and rank them (ties in candidate order)."""
    order = np.lexsort((jj, qi))  # by query, then by candidate order
    qi, jj, approx = qi[order], jj[order], approx[order]
    bounds = np.searchsorted(qi, np.arange(len(qb) + 1))
    out_q, out_j, out_s = [], [], []
    for q in range(len(qb)):
        lo, hi = bounds[q], bounds[q + 1]
        j, s = jj[lo:hi], approx[lo:hi]
        pos = j if cand is None else cand[j]
        if exclude is not None and exclude[q] >= 0:
            keep = pos != exclude[q]
            j, s, pos = j[keep], s[keep], pos[keep]
        if need is not None and len(s) > need:
            kth = np.partition(s, len(s) - need)[len(s) - need]
            keep = s >= kth - eps
            s, pos = s[keep], pos[keep]
        exact = dot_scores(units, qb[q], pos)
        idx = rank(exact, top_k)
        if min_score is not None:
            idx = idx[exact[idx] >= min_score]
        out_q.append(np.full(len(idx), start + q, dtype=np.int64))
        out_j.append(pos[idx].astype(np.int64, copy=False))
        out_s.append(exact[idx])
    return KnnResult(np.concatenate(out_q), np.concatenate(out_j), np.concatenate(out_s))
