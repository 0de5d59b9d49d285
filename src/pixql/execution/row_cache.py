"""The rows of a table, kept beside its cached vectors, so that a SEARCH the memo
recognised takes its winning rows without a DuckDB query.

Fetching the ``top_k`` winners by row id is a DuckDB query of about 1–2 ms even for ten
rows: most of a repeated SEARCH's fixed cost (``benchmarks/search_overhead.py``). For a
table whose Arrow rows fit ``PIXQL_ROW_CACHE_MB`` (default 256; 0 turns it off), the hot
path (:mod:`pixql.execution.search_hot`) instead reads the whole table once, in row id
order, onto the cached vectors' entry (:class:`~pixql.execution.vectors.ColumnVectors`),
and takes the winners from it. When the column is kept in vector files (large columns,
:mod:`pixql.execution.vector_load`), only the *other* columns are read and must fit: the
winners' embedding values are the stored vectors the files give
(:mod:`pixql.index.raw_rows`), assembled with the schema DuckDB gives ``SELECT *`` — a
million rows of (BIGINT, INTEGER, FLOAT[512]) keep 12 MB instead of 2 GB.

The rows are exactly as valid as the vectors beside them: they are read by one statement
(one snapshot) between two reads of the write stamp that both equal the entry's, and their
row ids must equal the entry's, so they are the committed state the vectors were loaded
from. They live and die with the entry: a write, a reload, :meth:`VectorCache.invalidate`
or eviction drops them too; their bytes count in the vector cache's budget. The stored
vectors in the files are those of the same state (written from the same scan as the unit
rows, and tied to the same write stamp).

Their *Arrow types* may depend on the connection's settings (``TimeZone``,
``arrow_large_buffer_size``...), which change nothing in the write stamp and belong to one
cursor: the rows are also tied to the cursor that read them and to DuckDB's catalog version
(bumped by every ``SET``). On another cursor or once the version has moved, the winners are
fetched as before and the kept rows are used again (for that cursor and version) only if
the fetched rows have the very same schema, else they are read anew.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pixql.execution.context import quote_ident, to_arrow
from pixql.execution.vectors import db_stamp

if TYPE_CHECKING:
    from pixql.execution.context import ExecContext
    from pixql.execution.vectors import ColumnVectors, Stamp, TableRef, VectorCache

_ROWID = "__pixql_rowid"
#: rows per Arrow batch while reading a table's rows (as DuckDB's ``to_arrow_table``)
READ_BATCH_ROWS = 1_000_000


def row_budget() -> int:
    """Bytes of Arrow rows one table may keep in memory (``PIXQL_ROW_CACHE_MB``)."""
    return int(float(os.environ.get("PIXQL_ROW_CACHE_MB", "256")) * 2**20)


def cached_rows(ctx: ExecContext, cache: VectorCache, table: TableRef, vecs: ColumnVectors,
                emb_col: str, stamp: Stamp, version: int | None) -> bool:
    """Whether the rows of ``table`` are kept beside ``vecs`` for this cursor and catalog
    ``version`` (row ``i`` has id ``vecs.rowids[i]``), reading them on first use; False
    when they do not fit, could not be read at ``stamp`` (the write stamp ``vecs`` was
    loaded at, just checked by the caller), or were read at another cursor or catalog
    ``version`` (see :func:`confirm_rows`). A column kept in vector files keeps every
    column but ``emb_col``, whose values :func:`take_rows` reads from the files."""
    if vecs.rows_skipped or version is None:
        return False
    if vecs.rows is not None:
        return _same(vecs.rows_tag, ctx.cur, version)
    budget = row_budget()
    split = vecs.raw is not None and emb_col in table.columns
    dim = vecs.units.shape[1] if vecs.units.ndim == 2 else 0
    if budget <= 0 or (not split and len(vecs.rowids) * dim * 4 > budget):
        vecs.rows_skipped = True
        return False
    schema = to_arrow(ctx.cur.sql(f"SELECT * FROM {table.sql} LIMIT 0")).schema if split \
        else None
    cols = ", ".join(["*"] if not split else
                     [quote_ident(c) for c in table.columns if c != emb_col])
    # no ORDER BY: DuckDB's sort would hold a second copy of the rows (2x the peak memory)
    got = read_rows(ctx.cur.sql(f'SELECT rowid AS "{_ROWID}"{", " if cols else ""}{cols} '
                                f"FROM {table.sql}"), budget)
    if db_stamp(cache.db_path) != stamp:  # a commit since: try again another time
        return False
    if got is None or got.nbytes > budget or cache.nbytes + got.nbytes > cache.budget:
        vecs.rows_skipped = True
        return False
    ids = got.column(_ROWID).to_numpy()
    if len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all()):  # scanned out of order
        order = np.argsort(ids, kind="stable")
        got, ids = got.take(pa.array(order, type=pa.int64())), ids[order]
    got = got.drop_columns([_ROWID])
    schema = got.schema if schema is None else schema
    if not np.array_equal(ids, vecs.rowids) or (split and schema.names != list(table.columns)):
        return False  # pragma: no cover - defensive: not the entry's state
    vecs.rows, vecs.rows_schema, vecs.rows_tag = got, schema, (ctx.cur, version)
    return True


def read_rows(rel: Any, budget: int) -> pa.Table | None:
    """The relation's rows as an Arrow table, None once they exceed ``budget`` bytes."""
    batches, size = [], 0
    reader = rel.to_arrow_reader(READ_BATCH_ROWS)
    for batch in reader:
        size += batch.nbytes
        if size > budget:
            return None
        batches.append(batch)
    got = pa.Table.from_batches(batches, schema=reader.schema)
    # one chunk per column: Arrow's take concatenates a chunked column first (every time)
    return got.combine_chunks() if len(batches) > 1 else got


def take_rows(vecs: ColumnVectors, positions: np.ndarray) -> pa.Table | None:
    """The kept rows at cache ``positions``, in that order, with every column of the
    table (None: a row the vector files cannot give the stored vector of)."""
    rows, schema = vecs.rows, vecs.rows_schema
    assert rows is not None
    assert schema is not None
    columns = _take(rows, positions)
    if len(columns) < len(schema):
        if vecs.raw is None or not bool(vecs.valid[positions].all()):
            return None  # NULL or not-current rows are never winners; be safe all the same
        names = rows.column_names
        i = next(j for j, name in enumerate(schema.names) if j >= len(names) or names[j] != name)
        values = pa.array(vecs.raw.take(positions).reshape(-1), type=pa.float32())
        columns.insert(i, pa.FixedSizeListArray.from_arrays(values, type=schema.field(i).type))
    return pa.Table.from_arrays(columns, schema=schema)


#: Arrow types whose values a numpy array holds as they are (no nulls): taken with numpy
_PLAIN = (pa.types.is_integer, pa.types.is_floating)
#: per kept table, by id while it lives (its numpy views hold its buffers: dropped with it)
_plain_views: dict[int, tuple[weakref.ref[pa.Table], list[np.ndarray | None]]] = {}


def _take(rows: pa.Table, positions: np.ndarray) -> list[Any]:
    """The columns of ``rows.take(positions)``. Integer and float columns without nulls
    are taken with numpy: Arrow's ``take`` costs ~50–100 µs a call right after a scan has
    flushed the CPU caches (one compute-kernel dispatch per column), numpy's a few µs."""
    views = _views(rows)
    rest = [i for i, v in enumerate(views) if v is None]
    taken = iter(rows.select(rest).take(pa.array(positions, type=pa.int64())).columns
                 if rest else [])
    return [next(taken) if v is None else pa.array(v[positions], type=rows.schema.field(i).type)
            for i, v in enumerate(views)]


def _views(rows: pa.Table) -> list[np.ndarray | None]:
    """Per column of ``rows``: its values as a numpy view when :data:`_PLAIN`, else None
    (worked out once per table)."""
    got = _plain_views.get(id(rows))
    if got is not None and got[0]() is rows:
        return got[1]
    views: list[np.ndarray | None] = []
    for col in rows.columns:
        ok = col.num_chunks == 1 and col.null_count == 0 and any(f(col.type) for f in _PLAIN)
        views.append(col.chunk(0).to_numpy(zero_copy_only=True) if ok else None)
    _plain_views[id(rows)] = (weakref.ref(rows), views)
    weakref.finalize(rows, _plain_views.pop, id(rows), None)
    return views


def confirm_rows(ctx: ExecContext, vecs: ColumnVectors, fetched: pa.Table,
                 version: int | None) -> None:
    """After the winners were fetched on a cursor or at a catalog ``version`` the kept rows
    were not read for: keep them for those when ``fetched`` has their schema, else drop
    them."""
    rows = vecs.rows
    if rows is None or version is None or _same(vecs.rows_tag, ctx.cur, version):
        return
    if vecs.rows_schema is not None \
            and fetched.schema.equals(vecs.rows_schema, check_metadata=True):
        vecs.rows_tag = (ctx.cur, version)
    else:
        vecs.rows, vecs.rows_schema, vecs.rows_tag = None, None, None


def _same(tag: tuple[Any, int] | None, cur: Any, version: int) -> bool:
    # the cursor itself, not its id: the tag keeps it alive, so no other can take its place
    return tag is not None and tag[0] is cur and tag[1] == version
