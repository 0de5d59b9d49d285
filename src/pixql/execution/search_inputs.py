"""The query side of SEARCH: which form a statement takes, its inputs, and the query
vectors (embedded from files or texts, or read from stored rows).

Forms (see docs/sql.md#search-by-a-stored-row-and-in-batches):

* **single** — ``search_input`` is one path or text: ThanoSQL's SEARCH;
* **row** — ``search_by='row'`` with one key: the query is that row's stored embedding;
* **batch** — ``search_input`` is a list, or ``input_query`` gives the inputs, or
  ``search_by='row'`` has no ``search_input`` (every row of the AS query is a query): one
  scan of the data answers every query (:func:`pixql.index.knn.knn`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from pixql.catalog import provenance as prov
from pixql.errors import CatalogError, NotFoundError, OptionError
from pixql.execution.context import quote_ident, to_arrow
from pixql.index.exact import unit_rows
from pixql.models.inputs import InputSource, raw_input
from pixql.sql.nodes import Query

if TYPE_CHECKING:
    from pixql.catalog.store import ColumnRecord
    from pixql.execution.context import ExecContext
    from pixql.execution.freshness import Freshness
    from pixql.execution.options import SearchOptions
    from pixql.execution.vectors import ColumnVectors, TableRef
    from pixql.models.base import Embedder
    from pixql.sql.nodes import Search

Form = Literal["single", "row", "batch"]
#: top_k per query of a batch when the statement gives none
BATCH_TOP_K = 10
#: inputs embedded per forward pass
EMBED_BATCH = 64
_STATUS_WORDS = {prov.STALE: "is stale (made by another model version, or from a value "
                              "changed since)",
                 prov.MISSING: "is not embedded yet",
                 prov.FAILED: "could not be embedded (its file could not be read)"}


def fail(node: Search, key: str, message: str) -> OptionError:
    """An OptionError about option ``key`` at its position in the statement."""
    pos = node.option_pos.get(key)
    return OptionError(message, option=key, line=pos.line if pos else None,
                       col=pos.col if pos else None)


def search_form(node: Search, opts: SearchOptions) -> Form:
    """Which form the statement takes; OptionError for options that do not fit together."""
    given, by = opts.search_input, opts.search_by
    if given is not None and opts.input_query is not None:
        raise fail(node, "input_query", "give search_input or input_query, not both")
    if by != "row":
        if given is None and opts.input_query is None:
            raise fail(node, "search_input", f"option 'search_input' is required for "
                       f"SEARCH {node.target.upper()} with search_by={by!r}")
        items = given if isinstance(given, list) else [given]
        if any(not isinstance(v, str) for v in items if v is not None):
            raise fail(node, "search_input", f"option search_input={given!r} is invalid: "
                       f"search_by={by!r} takes a file path or a text (a string), or a "
                       f"list of them")
        for key in ("key_col", "exclude_self"):
            if key in node.options and node.options[key] not in (None, False):
                raise fail(node, key, f"option {key!r} only applies to search_by='row' "
                           f"(searching by a stored row), not search_by={by!r}")
    if isinstance(given, list) and not given:
        raise fail(node, "search_input", "option search_input=[] is empty: give at least "
                   "one input")
    if isinstance(given, (str, int)):
        return "row" if by == "row" else "single"
    return "batch"


def top_k(node: Search, opts: SearchOptions, form: Form) -> int | None:
    """``top_k``: as given, else 1000 for one query and :data:`BATCH_TOP_K` per query of
    a batch."""
    if form == "batch" and "top_k" not in node.options:
        return BATCH_TOP_K
    return opts.top_k


def input_values(ctx: ExecContext, node: Search, opts: SearchOptions) -> list[Any] | None:
    """The inputs as a list (None: a row self-join, every row of the AS query)."""
    if opts.input_query is not None:
        got = ctx.query_arrow(Query(opts.input_query))
        if got.num_columns == 0:  # pragma: no cover - DuckDB has no zero-column SELECT
            raise fail(node, "input_query", "input_query returned no column")
        return list(got.column(0).to_pylist())
    if opts.search_input is None:
        return None
    return opts.search_input if isinstance(opts.search_input, list) else [opts.search_input]


def embed_inputs(ctx: ExecContext, embedder: Embedder, search_by: str,
                 values: list[Any]) -> np.ndarray:
    """Unit query vectors of file paths or texts, embedded :data:`EMBED_BATCH` at a time."""
    source = InputSource(resolve=ctx.ws.resolve, urls=ctx.ws.urls)
    out = np.zeros((len(values), embedder.dim), dtype=np.float32)
    for s in range(0, len(values), EMBED_BATCH):
        part = values[s : s + EMBED_BATCH]
        if any(not isinstance(v, str) for v in part):
            bad = next(v for v in part if not isinstance(v, str))
            raise OptionError(f"input {bad!r} is not a file path or a text (a string)",
                              option="input_query")
        items = [raw_input(v, search_by, source) for v in part]
        out[s : s + len(part)] = np.asarray(embedder.embed(items, search_by), np.float32)
    return unit_rows(out)


def default_key(col: ColumnRecord | None) -> str:
    """The column naming a row when ``key_col`` is not given: the one CONVERT embedded,
    or ``rowid`` for a column CONVERT did not make."""
    return col.source_column if col is not None else "rowid"


@dataclass(frozen=True)
class RowQueries:
    """Query rows of a search by stored rows: cache positions and what names each one."""

    positions: np.ndarray  # int64 positions in the ColumnVectors
    labels: pa.Array  # one per query: its key as given (or the row's key value)


def keyed_rows(ctx: ExecContext, table: TableRef, vecs: ColumnVectors, key: str,
               values: list[Any], fr: Freshness | None) -> RowQueries:
    """The rows named by ``values`` of column ``key`` (``rowid``: row ids); NotFoundError
    when a key names no row, CatalogError when it names several or the row has no current
    embedding."""
    by_id = key.lower() == "rowid"
    rowids = _rowid_values(values) if by_id else _lookup(ctx, table, key, values)
    pos = np.searchsorted(vecs.rowids, rowids)
    pos[pos >= len(vecs.rowids)] = 0
    gone = np.flatnonzero(vecs.rowids[pos] != rowids) if len(vecs.rowids) else \
        np.arange(len(rowids))
    if len(gone):
        raise NotFoundError(f"no row of {table.name} has rowid {int(rowids[gone[0]])}")
    check_current(table, vecs, pos, key, values, fr)
    return RowQueries(pos.astype(np.int64), labels_of(values))


def _rowid_values(values: list[Any]) -> np.ndarray:
    out = []
    for v in values:
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            raise OptionError(f"row id {v!r} is not an integer (key_col='rowid')",
                              option="search_input") from None
    return np.asarray(out, dtype=np.int64)


def _lookup(ctx: ExecContext, table: TableRef, key: str, values: list[Any]) -> np.ndarray:
    """Row ids of the rows whose ``key`` equals each value (compared as text)."""
    names = {c.lower(): c for c in table.columns}
    if key.lower() not in names:
        raise _no_key(table, key)
    col = quote_ident(names[key.lower()])
    texts = [None if v is None else str(v) for v in values]
    found = ctx.cur.execute(
        f"SELECT CAST({col} AS VARCHAR), rowid FROM {table.sql} WHERE CAST({col} AS VARCHAR) "
        f"IN (SELECT unnest($1::VARCHAR[])) ORDER BY rowid", [texts]).fetchall()
    by_key: dict[str, list[int]] = {}
    for k, rowid in found:
        by_key.setdefault(k, []).append(int(rowid))
    hits = [by_key.get(t, []) if t is not None else [] for t in texts]
    counts = np.asarray([len(h) for h in hits], dtype=np.int64)
    rowids = np.asarray([h[0] if h else -1 for h in hits], dtype=np.int64)
    if (counts == 0).any():
        v = values[int(np.flatnonzero(counts == 0)[0])]
        raise NotFoundError(f"no row of {table.name} has {names[key.lower()]} = {v!r} "
                            f"(search_by='row' looks the key up in key_col)")
    if (counts > 1).any():
        i = int(np.flatnonzero(counts > 1)[0])
        raise CatalogError(
            f"{names[key.lower()]} = {values[i]!r} names {int(counts[i])} rows of "
            f"{table.name}, not one: pick a key_col whose values are unique, or "
            f"key_col='rowid'")
    return rowids


def check_current(table: TableRef, vecs: ColumnVectors, pos: np.ndarray, key: str,
                  values: list[Any] | None, fr: Freshness | None) -> None:
    """CatalogError unless every query row has a current stored embedding."""
    bad = np.flatnonzero(~vecs.valid[pos])
    if not len(bad):
        return
    i = int(bad[0])
    code = prov.MISSING if vecs.status is None else int(vecs.status[pos[i]])
    what = _STATUS_WORDS.get(code, "is NULL")
    name = f"rowid {int(vecs.rowids[pos[i]])}" if values is None else f"{key} = {values[i]!r}"
    fix = f": run {fr.fix()}" if fr is not None else ""
    raise CatalogError(f"the row of {table.name} with {name} has no current embedding to "
                       f"search with: its {table.name} vector {what}{fix}")


def _no_key(table: TableRef, key: str) -> NotFoundError:
    cols = [c for c in table.columns if not prov.is_companion(c)]
    return NotFoundError(f"key_col {key!r} is not a column of {table.name}; columns: "
                         f"{', '.join(cols)}, or 'rowid'")


def labels_of(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed kinds: label them all as text
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def key_values(ctx: ExecContext, table: TableRef, key: str, rowids: np.ndarray) -> pa.Array:
    """The ``key`` column's values of the rows with ``rowids`` (labels of a self-join)."""
    if key.lower() == "rowid":
        return pa.array(rowids, pa.int64())
    names = {c.lower(): c for c in table.columns}
    if key.lower() not in names:
        raise _no_key(table, key)
    t = to_arrow(ctx.cur.sql(f"SELECT rowid, {quote_ident(names[key.lower()])} "
                             f"FROM {table.sql}"))
    ids = t.column(0).to_numpy()
    order = np.argsort(ids, kind="stable")
    at = order[np.searchsorted(ids, rowids, sorter=order)]
    return t.column(1).take(pa.array(at, pa.int64())).combine_chunks()
