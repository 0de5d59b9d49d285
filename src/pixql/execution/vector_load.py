"""Reading an embedding column out of DuckDB for SEARCH's cache: into memory as fp32 unit
rows, or — for columns from :data:`COMPRESS_MIN_BYTES` on — into the column's vector files
(:mod:`pixql.index.vector_files`: fp32 unit rows memory-mapped from disk + 8-bit codes in
memory), so the searching process holds a quarter of the fp32 bytes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pixql.execution.context import quote_ident
from pixql.index.exact import unit_rows

if TYPE_CHECKING:
    from pathlib import Path

    import duckdb

    from pixql.index.compressed import SQ8Codes
    from pixql.index.raw_rows import RawRows

#: rows per Arrow batch when loading a column (DuckDB's vector size × 4)
LOAD_BATCH_ROWS = 8192


def compress_min_bytes() -> int:
    """fp32 size from which a column is kept as codes + a memory-mapped file
    (``PIXQL_COMPRESS_MIN_MB``, default 64; a negative value: never)."""
    mb = float(os.environ.get("PIXQL_COMPRESS_MIN_MB", "64"))
    return -1 if mb < 0 else int(mb * 2**20)


@dataclass
class Loaded:
    """A column as loaded: ``units`` in memory, or memory-mapped with ``codes``."""

    units: np.ndarray
    rowids: np.ndarray
    valid: np.ndarray
    status: np.ndarray | None
    codes: SQ8Codes | None = None
    raw: RawRows | None = None  # the stored rows, when ``units`` are memory-mapped
    checksum: str | None = None  # the rows' content hash, when the vector files noted it


def arrow_vectors(arr: pa.Array, dim: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One Arrow chunk of an embedding column → ((n, dim) float32, validity). Rows that are
    NULL hold arbitrary values; callers mask them with the validity."""
    from pixql.errors import ProgrammingError

    n = len(arr)
    valid = np.ones(n, dtype=bool) if arr.null_count == 0 else \
        np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_fixed_size_list(arr.type):
        if arr.type.list_size != dim:
            raise ProgrammingError(f"emb_col {name!r} holds {arr.type.list_size}-dimensional "
                                   f"vectors, not {dim} (the model's dimension)")
        flat = arr.values.slice(arr.offset * dim, n * dim)
        values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32)
        return values.reshape(n, dim), valid
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        out = np.zeros((n, dim), dtype=np.float32)
        if valid.any():
            present = arr.filter(pa.array(valid)) if not valid.all() else arr
            flat = np.asarray(present.flatten().to_numpy(zero_copy_only=False), np.float32)
            if flat.size != int(valid.sum()) * dim:
                raise ProgrammingError(f"emb_col {name!r} does not hold {dim}-dimensional "
                                       f"vectors (the model's dimension)")
            out[valid] = flat.reshape(-1, dim)
        return out, valid
    raise ProgrammingError(f"emb_col {name!r} has type {arr.type}, not an embedding "
                           f"(FLOAT[{dim}])")


def _batches(cur: duckdb.DuckDBPyConnection, ref: Any, column: str,
             status_sql: str | None) -> Any:
    extra = "" if status_sql is None else f", ({status_sql})::TINYINT"
    sql = f"SELECT rowid, {quote_ident(column)}{extra} FROM {ref.sql}"
    return cur.sql(sql).to_arrow_reader(LOAD_BATCH_ROWS)


def _batch_rows(batch: pa.RecordBatch, dim: int, column: str,
                status: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, valid) of one batch; fills ``status`` and counts only current rows."""
    x, ok = arrow_vectors(batch.column(1), dim, column)
    if status is not None:
        status[:] = batch.column(2).to_numpy(zero_copy_only=False)
        ok &= status == 0  # provenance.CURRENT
    return x, ok


def load_vectors(cur: duckdb.DuckDBPyConnection, ref: Any, column: str, dim: int,
                 n_rows: int, status_sql: str | None = None) -> Loaded:
    """Stream ``rowid, column`` of ``ref`` into one preallocated matrix of unit rows. With
    ``status_sql`` (:func:`pixql.catalog.provenance.status_sql`), each row's provenance
    status is loaded too and only current rows count as valid."""
    units: np.ndarray = np.empty((n_rows, dim), dtype=np.float32)
    rowids: np.ndarray = np.empty(n_rows, dtype=np.int64)
    valid: np.ndarray = np.empty(n_rows, dtype=bool)
    status: np.ndarray | None = None if status_sql is None else np.empty(n_rows, np.int8)
    i = 0
    for batch in _batches(cur, ref, column, status_sql):
        m = batch.num_rows
        if i + m > n_rows:  # pragma: no cover - the snapshot's count said otherwise
            raise RuntimeError("table changed while its vectors were loaded")
        x, ok = _batch_rows(batch, dim, column, None if status is None else status[i : i + m])
        unit_rows(x, ok, out=units[i : i + m])
        rowids[i : i + m] = batch.column(0).to_numpy()
        valid[i : i + m] = ok
        i += m
    units, rowids, valid = units[:i], rowids[:i], valid[:i]
    status = None if status is None else status[:i]
    order = _order(rowids)
    if order is not None:
        units, rowids, valid = units[order], rowids[order], valid[order]
        status = None if status is None else status[order]
    return Loaded(np.ascontiguousarray(units), rowids, valid, status)


def _order(rowids: np.ndarray) -> np.ndarray | None:
    """The permutation sorting ``rowids`` (None: already ascending; scans come in row-id
    order, but be sure)."""
    if len(rowids) > 1 and not (np.diff(rowids) > 0).all():
        return np.argsort(rowids, kind="stable")
    return None


def load_to_files(cur: duckdb.DuckDBPyConnection, ref: Any, column: str, dim: int,
                  n_rows: int, status_sql: str | None, path: Path, state: Any) -> Loaded:
    """Like :func:`load_vectors`, but the unit rows go to the column's vector files in
    ``path`` (tied to ``state``) and come back memory-mapped, with their codes."""
    from pixql.index.vector_files import UnitsWriter

    writer = UnitsWriter(path, dim)
    rowids: np.ndarray = np.empty(n_rows, dtype=np.int64)
    valid: np.ndarray = np.empty(n_rows, dtype=bool)
    status: np.ndarray | None = None if status_sql is None else np.empty(n_rows, np.int8)
    i = 0
    try:
        for batch in _batches(cur, ref, column, status_sql):
            m = batch.num_rows
            if i + m > n_rows:  # pragma: no cover - the snapshot's count said otherwise
                raise RuntimeError("table changed while its vectors were loaded")
            x, ok = _batch_rows(batch, dim, column,
                                None if status is None else status[i : i + m])
            writer.write(unit_rows(x, ok), ok, x)
            rowids[i : i + m] = batch.column(0).to_numpy()
            valid[i : i + m] = ok
            i += m
    except BaseException:
        writer.abort()
        raise
    rowids, valid = rowids[:i], valid[:i]
    status = None if status is None else status[:i]
    order = _order(rowids)
    if order is not None:
        rowids, valid = rowids[order], valid[order]
        status = None if status is None else status[order]
    saved = writer.finish(rowids, valid, status, state, order)
    return Loaded(saved.units, saved.rowids, saved.valid, saved.status, saved.codes,
                  saved.raw)
