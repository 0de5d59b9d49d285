"""SEARCH IMAGE USING m OPTIONS (...) AS SELECT ...: rank rows by cosine similarity.

Semantics (ThanoSQL's, reference §1.6): every column of the AS query in order plus
``result_col`` last; sorted by similarity descending, ties in the query's row order; the
first ``top_k`` rows (default 1000, None = all); the query item is not excluded. Rows whose
embedding is NULL are never ranked.

Two paths give the same rows, order and scores (docs/performance.md):

* **fast** — the AS query is ``SELECT * FROM t [WHERE ...]`` on a base table: the column's
  vectors come from the workspace's :class:`~pixql.execution.vectors.VectorCache`, DuckDB
  only evaluates the WHERE clause (``SELECT rowid ...``) and fetches the ``top_k`` winners;
* **general** — any other query: its rows are materialised and scored block by block.

``index='hnsw'`` or ``'ivf'`` asks for an approximate search (fast path only), re-ranked
exactly; the default ``index='exact'`` scores every row.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from pixql.catalog import provenance as prov
from pixql.errors import CatalogError, ModelError, NotFoundError
from pixql.execution.freshness import Freshness, freshness, result_status, status_counts
from pixql.execution.options import SearchOptions, validate
from pixql.execution.result import Result
from pixql.execution.search_hot import (
    SELECTION_MAX,
    Prepared,
    Selection,
    fetch_rows,
    hot_search,
    memo_of,
)
from pixql.execution.search_plan import QueryPlan, deterministic, plan_query
from pixql.execution.vectors import (
    ColumnVectors,
    Stamp,
    arrow_vectors,
    read_snapshot,
)
from pixql.index.exact import BLOCK_ROWS, dot_scores, query_unit, unit_rows
from pixql.index.exact import rank as rank_scores
from pixql.models.inputs import InputSource, raw_input

if TYPE_CHECKING:
    from pixql.catalog.store import ColumnRecord, ModelRecord
    from pixql.execution.context import ExecContext
    from pixql.models.base import Embedder
    from pixql.sql.nodes import Query, Search

_names = itertools.count()


class SearchIndexOptions(SearchOptions):
    """SEARCH options plus the choice of exact or approximate (ANN) ranking."""

    index: Literal["exact", "hnsw", "ivf"] = Field(
        default="exact", description="'exact' scores every row; 'hnsw'/'ivf' use an "
        "approximate index (built on first use, saved under indexes/), re-ranked exactly")
    ef_search: int | None = Field(default=None, ge=1, le=1_000_000,
                                  description="HNSW search breadth (default 128)")
    nprobe: int | None = Field(default=None, ge=1, le=1_000_000,
                               description="IVF lists probed (default 16)")
    scan: Literal["auto", "fp32"] = Field(
        default="auto", description="exact search: 'auto' scans the column's 8-bit codes "
        "when it has them (large columns) and re-ranks a provably complete shortlist in "
        "fp32, same answer; 'fp32' scans the fp32 vectors (for comparison)")


def run_search(ctx: ExecContext, node: Search, opts: SearchIndexOptions | None = None) -> Result:
    """One query embedded from ``search_input`` (the executor of SEARCH,
    :func:`pixql.execution.search_rows.run_any_search`, sends the other forms elsewhere);
    ``opts``: the node's options, when the caller has validated them."""
    if node.target == "audio":
        raise ModelError("SEARCH AUDIO is not supported: no pixql model embeds audio")
    if opts is None:
        opts = validate(SearchIndexOptions, node, what=f"SEARCH {node.target.upper()}")
    result_col = opts.column_name or opts.result_col
    memo = memo_of(ctx.ws)
    prep = None if memo is None else memo.get(ctx.cur, node.query.text, node.model,
                                               opts.emb_col)
    if prep is not None:
        plan, rec, col = prep.plan, prep.rec, prep.col
    else:
        plan = plan_query(ctx, node.query)
        rec, col = _model_and_column(ctx, node, plan, opts.emb_col)
    embedder = ctx.ws.load_embedder(rec.name, rec)
    embedder.check_modality(opts.search_by)
    rows = None
    if plan is None or opts.emb_col not in plan.table.columns:
        rows = _query_rows(ctx, node.query, opts.emb_col)
    _check_model(col, rec)
    q = query_unit(query_vector(ctx, embedder, opts.search_by, str(opts.search_input)))
    if rows is None:
        assert plan is not None
        found = fast_search(ctx, plan, opts, rec.dim, q,
                            freshness(col, rec, plan.table.columns),
                            hot=None if prep is None else prep.stamp,
                            selection=None if prep is None else prep.selection)
        if found is not None:
            if memo is not None and prep is None:
                memo.put(ctx.cur, node.query.text, node.model, opts.emb_col,
                         Prepared(plan, rec, col, selection=Selection()
                                  if deterministic(ctx.cur, plan) else None))
            return _result(*found, result_col)
        if memo is not None and prep is not None:  # look everything up again
            memo.forget()
            return run_search(ctx, node, opts)
        rows = _query_rows(ctx, node.query, opts.emb_col)
    table_cols = plan.table.columns if plan is not None else rows.column_names
    if plan is None and col is not None:
        table_cols = tuple(prov.table_columns(ctx.cur, col.table_name)) or table_cols
    fr = freshness(col, rec, rows.column_names)
    status = None if fr is None else result_status(ctx, fr, rows, table_cols)
    order, scores = general_rank(rows.column(opts.emb_col), rec.dim, opts.emb_col, q,
                                 opts.top_k, None if status is None else status == prov.CURRENT)
    notes = [] if opts.index == "exact" else \
        [f"index={opts.index!r} needs SELECT * FROM <table> [WHERE ...]: exact search used"]
    if fr is not None and status is not None:
        notes.insert(0, fr.note(status_counts(status)))
    return _result(rows.take(pa.array(order, type=pa.int64())), scores,
                   "; ".join(n for n in notes if n), result_col)


def _query_rows(ctx: ExecContext, query: Query, emb_col: str) -> pa.Table:
    rows = ctx.query_arrow(query)
    if emb_col not in rows.column_names:
        raise NotFoundError(f"emb_col {emb_col!r} is not a column of the AS query; "
                            f"columns: {', '.join(rows.column_names)}. Run CONVERT first.")
    return rows


def _result(rows: pa.Table, scores: np.ndarray, note: str, result_col: str) -> Result:
    hidden = [c for c in rows.column_names if c == result_col or prov.is_companion(c)]
    if hidden:
        rows = rows.drop_columns(hidden)
    # float32 rounding can put a self-match a hair above 1: cosine lives in [-1, 1]
    out = rows.append_column(result_col, pa.array(np.clip(scores.astype(np.float64), -1, 1)))
    return Result(table=out, message=note)


def _model_and_column(ctx: ExecContext, node: Search, plan: QueryPlan | None,
                      emb_col: str) -> tuple[ModelRecord, ColumnRecord | None]:
    """The model's catalog row and, when the AS query reads one base table, the catalog
    row of its ``emb_col`` (one round trip on the fast path)."""
    if plan is not None:
        return ctx.catalog.model_and_column(node.model, plan.label, emb_col)
    rec = ctx.catalog.get_model(node.model)
    table = ctx.base_table(node.query)
    return rec, ctx.catalog.find_column(table, emb_col) if table else None


def _check_model(col: ColumnRecord | None, rec: ModelRecord) -> None:
    """The column must come from the searching model (which rows are current, per version,
    is the business of :mod:`pixql.execution.freshness`)."""
    if col is None or col.model_name == rec.name:
        return
    raise CatalogError(
        f"{col.table_name}.{col.column_name} holds embeddings of model {col.model_name!r}, "
        f"not {rec.name!r}: search it USING {col.model_name}, or CONVERT USING {rec.name} "
        f"into another result_col")


def query_vector(ctx: ExecContext, embedder: Embedder, search_by: str, value: str) -> np.ndarray:
    """Embed ``search_input``: a workspace-relative or absolute path, or a text."""
    item = raw_input(value, search_by, InputSource(resolve=ctx.ws.resolve, urls=ctx.ws.urls))
    vec: np.ndarray = embedder.embed([item], search_by)[0]
    return vec


# -- general path ---------------------------------------------------------------------------
def general_rank(col: pa.ChunkedArray | pa.Array, dim: int, name: str, q: np.ndarray,
                 top_k: int | None,
                 keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the best ``top_k`` non-NULL rows (among ``keep`` when given) of an
    embedding column and their scores, scoring block by block (memory: one block of unit
    rows at a time)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    scores, rows, offset = [], [], 0
    for chunk in chunks:
        x, ok = arrow_vectors(chunk, dim, name)
        for s in range(0, len(x), BLOCK_ROWS):
            part_ok = ok[s : s + BLOCK_ROWS]
            if keep is not None:
                part_ok = part_ok & keep[offset + s : offset + s + len(part_ok)]
            units = unit_rows(x[s : s + BLOCK_ROWS], part_ok)
            keep = np.flatnonzero(part_ok)
            scores.append(dot_scores(units, q)[keep])
            rows.append(keep + offset + s)
        offset += len(chunk)
    all_scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    all_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    idx = rank_scores(all_scores, top_k)
    return all_rows[idx], all_scores[idx]


def column_matrix(col: pa.ChunkedArray | pa.Array, dim: int,
                  name: str) -> tuple[np.ndarray, np.ndarray]:
    """An embedding column as a contiguous (n, dim) float32 matrix (zeros for NULL) and its
    validity mask."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    matrix = np.zeros((sum(len(c) for c in chunks), dim), dtype=np.float32)
    valid = np.zeros(len(matrix), dtype=bool)
    i = 0
    for chunk in chunks:
        x, ok = arrow_vectors(chunk, dim, name)
        matrix[i : i + len(x)][ok] = x[ok]
        valid[i : i + len(x)] = ok
        i += len(x)
    return matrix, valid


def cosine_scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row with ``query`` (zero rows score 0); the same values
    SEARCH reports."""
    return dot_scores(unit_rows(matrix), query_unit(query))


def rank(scores: np.ndarray, valid: np.ndarray, top_k: int | None) -> np.ndarray:
    """Indices of valid rows by score descending, ties in row order, at most ``top_k``."""
    idx = np.flatnonzero(valid)
    return idx[rank_scores(scores[idx], top_k)]


# -- fast path ------------------------------------------------------------------------------
def fast_search(ctx: ExecContext, plan: QueryPlan, opts: SearchIndexOptions, dim: int,
                q: np.ndarray, fresh: Freshness | None = None, *, hot: Stamp | None = None,
                selection: Selection | None = None,
                ) -> tuple[pa.Table, np.ndarray, str] | None:
    """Rank with the cached vectors of ``plan.table``: (rows, scores, note), or None when
    the cache cannot answer (the caller then takes the general path). ``hot``: the write
    stamp at which the SEARCH memo recognised this SEARCH
    (:mod:`pixql.execution.search_hot`); ``selection``: where that SEARCH's deterministic
    WHERE clause keeps its row ids for that committed state."""
    cache = getattr(ctx.ws, "_vector_cache", None)
    if cache is None:
        return None
    read = Selection()

    def ranked(vecs: ColumnVectors, known: Selection | None = None,
               ) -> tuple[np.ndarray, np.ndarray, str] | None:
        selected = _selected(ctx, plan, vecs, known, read)
        if selected is False:
            return None
        left_out = "" if fresh is None or vecs.status is None else \
            fresh.note(vecs.status_counts(selected))
        cand = _candidates(vecs, selected)
        positions, scores, note = _select(ctx, vecs, q, cand, opts, plan)
        return positions, scores, "; ".join(n for n in (left_out, note) if n)

    found = None if hot is None else \
        hot_search(ctx, cache, plan, opts.emb_col, fresh, lambda v: ranked(v, selection), hot)
    if found is not None:
        if selection is not None and selection.rowids is None and read.rowids is not None \
                and len(read.rowids) <= SELECTION_MAX:
            selection.rowids = read.rowids  # read at the memo's state
        return found
    with read_snapshot(ctx.cur) as ok:
        if not ok:
            return None
        vecs = cache.lookup(ctx.cur, plan.table, opts.emb_col, dim,
                            None if fresh is None else fresh.status_sql())
        done = None if vecs is None else ranked(vecs)
        if vecs is None or done is None:
            return None
        rows = fetch_rows(ctx, plan.table, vecs.rowids[done[0]])
    if rows is None:  # pragma: no cover - the snapshot changed under us
        return None
    return rows, done[1], done[2]


def _selected(ctx: ExecContext, plan: QueryPlan, vecs: ColumnVectors,
              known: Selection | None = None,
              read: Selection | None = None) -> np.ndarray | Literal[False] | None:
    """Cache positions the AS query selects, in its row order (None: every row); False when
    a selected row is not in the cache. ``known``: the WHERE clause's row ids when already
    read at this committed state; ``read``: where the row ids read now are put."""
    if plan.rowid_sql is None:
        return None
    rowids = None if known is None else known.rowids
    if rowids is None:
        rowids = where_rowids(ctx, plan)
        if read is not None:
            read.rowids = rowids
    pos = vecs.positions(rowids)
    return False if pos is None else pos


def where_rowids(ctx: ExecContext, plan: QueryPlan) -> np.ndarray:
    """The row ids the AS query's WHERE clause selects, read from DuckDB."""
    assert plan.rowid_sql is not None
    got = ctx.cur.sql(plan.rowid_sql).fetchnumpy()
    return np.asarray(next(iter(got.values())), dtype=np.int64)


def _candidates(vecs: ColumnVectors, selected: np.ndarray | None) -> np.ndarray | None:
    """The selected positions that can be ranked (non-NULL, current); None: every row."""
    if selected is None:
        return None if vecs.all_valid else np.flatnonzero(vecs.valid)
    return selected[vecs.valid[selected]]


def _select(ctx: ExecContext, vecs: ColumnVectors, q: np.ndarray, cand: np.ndarray | None,
            opts: SearchIndexOptions, plan: QueryPlan) -> tuple[np.ndarray, np.ndarray, str]:
    """(cache positions, scores, note) of the winners, exact or approximate."""
    note = ""
    if opts.index != "exact":
        note = f"index={opts.index!r}: exact search used (top_k=None ranks every row)"
        if opts.top_k is not None:
            from pixql.index.ann import approximate_search

            found = approximate_search(ctx.ws, plan.table, opts.emb_col, vecs, q, cand,
                                       opts.top_k, opts.index,
                                       {"ef_search": opts.ef_search, "nprobe": opts.nprobe})
            if not isinstance(found, str):
                return found
            note = f"index={opts.index!r}: exact search used ({found})"
    if vecs.codes is not None and opts.scan == "auto" and opts.top_k is not None:
        from pixql.index.compressed import exact_top

        exact = exact_top(vecs.codes, vecs.units, q, opts.top_k, cand,
                          None if vecs.all_valid else vecs.valid)
        if exact is not None:
            return exact[0], exact[1], note
    scores = dot_scores(vecs.units, q, cand)
    idx = rank_scores(scores, opts.top_k)
    positions = idx if cand is None else cand[idx]
    return positions, scores[idx], note
