"""SEARCH's executor: ThanoSQL's single search (:func:`pixql.execution.search.run_search`),
search by a stored row, and batches of queries answered by one scan (a kNN join).

A batch returns one row per (query, match): ``search_query`` (the query's input: its path,
text or key; in a self-join the row's ``key_col`` value), ``search_rank`` (1 = best match
of that query), then every column of the AS query and ``result_col`` last. Rows come by
query (in input order), then by score descending with ties in the AS query's row order.
One query by a stored row keeps ThanoSQL's shape (the AS query's columns and
``result_col``). Scores are those a single SEARCH gives, bit for bit
(:mod:`pixql.index.knn`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pixql.catalog import provenance as prov
from pixql.errors import ExecutionError, ModelError, ProgrammingError
from pixql.execution import search_inputs as si
from pixql.execution.engine import executes
from pixql.execution.freshness import Freshness, freshness, result_status, status_counts
from pixql.execution.options import validate
from pixql.execution.result import Result
from pixql.execution.search import (
    SearchIndexOptions,
    _check_model,
    _model_and_column,
    _query_rows,
    _result,
    column_matrix,
    run_search,
)
from pixql.execution.search_hot import fetch_rows
from pixql.execution.search_plan import QueryPlan, plan_query
from pixql.execution.vector_load import load_vectors
from pixql.execution.vectors import ColumnVectors, read_snapshot
from pixql.index.exact import unit_rows
from pixql.index.knn import KnnResult, knn
from pixql.sql.nodes import Search

if TYPE_CHECKING:
    from pixql.catalog.store import ColumnRecord, ModelRecord
    from pixql.execution.context import ExecContext

QUERY_COL, RANK_COL = "search_query", "search_rank"


@executes(Search)
def run_any_search(ctx: ExecContext, node: Search) -> Result:
    if node.target == "audio":
        raise ModelError("SEARCH AUDIO is not supported: no pixql model embeds audio")
    opts = validate(SearchIndexOptions, node, what=f"SEARCH {node.target.upper()}")
    form = si.search_form(node, opts)
    if form == "single":
        return with_min_score(run_search(ctx, node, opts), opts)
    return _run_many(ctx, node, opts, form)


def with_min_score(result: Result, opts: SearchIndexOptions) -> Result:
    """``result`` without the rows scoring under ``min_score``."""
    if opts.min_score is None:
        return result
    col = result.table.column(opts.column_name or opts.result_col)
    keep = pc.greater_equal(col, pa.scalar(opts.min_score, pa.float64()))
    return Result(table=result.table.filter(keep), message=result.message)


class _Search:
    """One row or batch search: the statement, its options and what the catalog says."""

    def __init__(self, ctx: ExecContext, node: Search, opts: SearchIndexOptions,
                 form: si.Form) -> None:
        self.ctx, self.node, self.opts, self.form = ctx, node, opts, form
        self.top_k = si.top_k(node, opts, form)
        self.result_col = opts.column_name or opts.result_col
        self.plan = plan_query(ctx, node.query)
        rec, col = _model_and_column(ctx, node, self.plan, opts.emb_col)
        _check_model(col, rec)
        self.rec: ModelRecord = rec
        self.col: ColumnRecord | None = col
        self.key = opts.key_col or si.default_key(col)
        self.exclude_self = opts.search_by == "row" and opts.exclude_self is not False
        self.notes: list[str] = []
        if opts.index != "exact":
            self.notes.append(f"index={opts.index!r}: exact search used (row and batch "
                              f"searches scan every row once)")

    @property
    def fast(self) -> bool:
        """Whether the AS query is ``SELECT * FROM t [WHERE ...]`` of the emb_col's table."""
        return self.plan is not None and self.opts.emb_col in self.plan.table.columns

    def knn(self, units: np.ndarray, queries: np.ndarray, cand: np.ndarray | None,
            exclude: np.ndarray | None) -> KnnResult:
        return knn(units, queries, self.top_k, cand=cand, exclude=exclude,
                   min_score=self.opts.min_score)


def _run_many(ctx: ExecContext, node: Search, opts: SearchIndexOptions,
              form: si.Form) -> Result:
    s = _Search(ctx, node, opts, form)
    values = si.input_values(ctx, node, opts)
    queries = None
    if opts.search_by != "row":
        assert values is not None
        embedder = ctx.ws.load_embedder(s.rec.name, s.rec)
        embedder.check_modality(opts.search_by)
        queries = si.embed_inputs(ctx, embedder, opts.search_by, values)
    elif not s.fast:
        raise ProgrammingError(
            "search_by='row' needs the AS query to be SELECT * FROM <table> [WHERE ...] of "
            f"the table holding {opts.emb_col!r}: the query rows are looked up there")
    if s.fast:
        return _table_search(s, values, queries)
    assert queries is not None
    return _general_search(s, values or [], queries)


# -- AS SELECT * FROM t [WHERE ...]: the table's vectors ----------------------------------
def _table_search(s: _Search, values: list[Any] | None, queries: np.ndarray | None) -> Result:
    plan = s.plan
    assert plan is not None
    fr = freshness(s.col, s.rec, plan.table.columns)
    with read_snapshot(s.ctx.cur) as ok:
        vecs = _vectors(s, plan, fr, ok)
        selected = _selected(s, plan, vecs)
        cand = selected[vecs.valid[selected]] if selected is not None else \
            (None if vecs.all_valid else np.flatnonzero(vecs.valid))
        exclude = None
        if queries is None:
            rq = _row_queries(s, plan, vecs, values, cand, fr)
            queries, labels = vecs.units[rq.positions], rq.labels
            exclude = rq.positions if s.exclude_self else None
        else:
            labels = si.labels_of(values or [])
        if fr is not None and vecs.status is not None:
            s.notes.insert(0, fr.note(vecs.status_counts(selected)))
        res = s.knn(vecs.units, queries, cand, exclude)
        rowids = vecs.rowids[res.row]
        uniq, inv = np.unique(rowids, return_inverse=True)
        rows = fetch_rows(s.ctx, plan.table, uniq)
    if rows is None:  # pragma: no cover - the snapshot guarantees the rows exist
        raise ExecutionError("the table changed while SEARCH read it; run it again")
    return _output(s, rows.take(pa.array(inv.reshape(-1), pa.int64())), res, labels)


def _vectors(s: _Search, plan: QueryPlan, fr: Freshness | None, ok: bool) -> ColumnVectors:
    """The column's vectors: the workspace's cache when it can answer, else read once."""
    status_sql = None if fr is None else fr.status_sql()
    cache = getattr(s.ctx.ws, "_vector_cache", None)
    if ok and cache is not None:
        vecs = cache.lookup(s.ctx.cur, plan.table, s.opts.emb_col, s.rec.dim, status_sql)
        if vecs is not None:
            return vecs
    count = int(s.ctx.cur.execute(f"SELECT count(*) FROM {plan.table.sql}").fetchall()[0][0])
    got = load_vectors(s.ctx.cur, plan.table, s.opts.emb_col, s.rec.dim, count, status_sql)
    return ColumnVectors(got.units, got.rowids, got.valid, got.status, codes=got.codes)


def _selected(s: _Search, plan: QueryPlan, vecs: ColumnVectors) -> np.ndarray | None:
    """Positions of the rows the AS query selects, in its row order (None: all)."""
    if plan.rowid_sql is None:
        return None
    got = s.ctx.cur.sql(plan.rowid_sql).fetchnumpy()
    pos = vecs.positions(np.asarray(next(iter(got.values())), dtype=np.int64))
    if pos is None:  # pragma: no cover - read in the same snapshot
        raise ExecutionError("the table changed while SEARCH read it; run it again")
    return pos


def _row_queries(s: _Search, plan: QueryPlan, vecs: ColumnVectors, values: list[Any] | None,
                 cand: np.ndarray | None, fr: Freshness | None) -> si.RowQueries:
    if values is not None:
        return si.keyed_rows(s.ctx, plan.table, vecs, s.key, values, fr)
    pos = np.arange(len(vecs.rowids)) if cand is None else cand  # self-join: current rows
    return si.RowQueries(pos, si.key_values(s.ctx, plan.table, s.key, vecs.rowids[pos]))


# -- any other AS query: its rows ----------------------------------------------------------
def _general_search(s: _Search, values: list[Any], queries: np.ndarray) -> Result:
    ctx, opts = s.ctx, s.opts
    rows = _query_rows(ctx, s.node.query, opts.emb_col)
    table_cols: tuple[str, ...] = tuple(rows.column_names)
    if s.plan is None and s.col is not None:
        table_cols = tuple(prov.table_columns(ctx.cur, s.col.table_name)) or table_cols
    fr = freshness(s.col, s.rec, rows.column_names)
    status = None if fr is None else result_status(ctx, fr, rows, table_cols)
    matrix, keep = column_matrix(rows.column(opts.emb_col), s.rec.dim, opts.emb_col)
    if fr is not None and status is not None:
        s.notes.insert(0, fr.note(status_counts(status)))
        keep &= status == prov.CURRENT
    units = unit_rows(matrix, keep, out=matrix)  # in place: one copy of the vectors
    res = s.knn(units, queries, np.flatnonzero(keep), None)
    return _output(s, rows.take(pa.array(res.row, pa.int64())), res, si.labels_of(values))


# -- the result ----------------------------------------------------------------------------
def _output(s: _Search, rows: pa.Table, res: KnnResult, labels: pa.Array) -> Result:
    note = "; ".join(n for n in s.notes if n)
    if s.form != "batch":
        return _result(rows, res.score, note, s.result_col)
    clash = [c for c in (QUERY_COL, RANK_COL) if c in rows.column_names]
    if clash:
        raise ProgrammingError(f"the AS query has a column {clash[0]!r}, which a batch "
                               f"SEARCH adds to its result: rename it in the AS query")
    out = _result(rows, res.score, note, s.result_col)
    first = np.searchsorted(res.query, res.query, side="left")
    rank = np.arange(len(res.query), dtype=np.int64) - first + 1
    table = out.table.add_column(0, RANK_COL, pa.array(rank, pa.int64()))
    table = table.add_column(0, QUERY_COL, labels.take(pa.array(res.query, pa.int64())))
    return Result(table=table, message=out.message)
