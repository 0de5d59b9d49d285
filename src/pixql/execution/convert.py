"""CONVERT USING m OPTIONS (...) AS SELECT ...: store an embedding column in the table.

All embeddings are computed before anything is written; the column change and its catalog
record are then committed in one transaction, so a failure changes nothing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pixql.catalog.store import ColumnRecord
from pixql.errors import NotFoundError, ProgrammingError
from pixql.execution.context import ExecContext, quote_ident, to_arrow
from pixql.execution.embedding import Embedded, embed_values
from pixql.execution.engine import executes
from pixql.execution.options import ConvertOptions, validate
from pixql.execution.result import Result
from pixql.models.registry import get_kind
from pixql.sql.nodes import Convert

#: convert_type → the option naming its source column
SOURCE_OPTION = {"image": "image_col", "text": "text_col", "video": "video_col"}


def vectors_to_arrow(emb: Embedded) -> pa.Array:
    """(n, d) float32 + validity → Arrow FixedSizeList<float32>[d] with NULLs."""
    _n, d = emb.vectors.shape
    values = pa.array(emb.vectors.reshape(-1), type=pa.float32())
    mask = pa.array(~emb.valid) if not emb.valid.all() else None
    return pa.FixedSizeListArray.from_arrays(values, d, mask=mask)


@executes(Convert)
def run_convert(ctx: ExecContext, node: Convert) -> Result:
    rec = ctx.catalog.get_model(node.model)
    kind = get_kind(rec.kind)
    opts = validate(ConvertOptions, node, extra=kind.convert_defaults, what="CONVERT")
    source_col = getattr(opts, SOURCE_OPTION[opts.convert_type])
    embedder = ctx.ws.load_embedder(rec.name, rec)
    embedder.check_modality(opts.convert_type)
    rows = ctx.query_arrow(node.query)
    _require_column(rows, source_col, SOURCE_OPTION[opts.convert_type])
    values = rows.column(source_col).to_pylist()
    emb = embed_values(embedder, values, modality=opts.convert_type, resolve=ctx.ws.resolve,
                       batch_size=opts.batch_size, workers=opts.workers,
                       on_error=opts.on_error, progress=ctx.ws.progress,
                       desc=f"CONVERT {rec.name}")
    column = vectors_to_arrow(emb)
    table = ctx.base_table(node.query)
    if opts.table_name and (table or "").lower() != opts.table_name.lower():
        raise ProgrammingError(f"table_name={opts.table_name!r} does not match the table the "
                               f"AS query reads ({table or 'not a single table'})")
    if table is None:
        return Result(table=_append(rows, opts.result_col, column),
                      message="the AS query does not read one base table; the embeddings "
                              "were returned but not stored")
    record = ColumnRecord(table_name=table, column_name=opts.result_col, model_name=rec.name,
                          model_kind=rec.kind, model_version=rec.version, dim=rec.dim,
                          metric=rec.metric, modality=opts.convert_type,
                          source_column=source_col)
    with ctx.ws.write_lock:
        _store(ctx, table, source_col, rows.column(source_col), column, record)
    ctx.ws.invalidate_vectors(table, opts.result_col)
    full = to_arrow(ctx.cur.sql(f"SELECT * FROM {_qualified(table)}"))
    return Result(table=full, message=f"stored {emb.valid.sum()} embeddings in "
                                      f"{table}.{opts.result_col}")


def _require_column(rows: pa.Table, name: str, option: str) -> None:
    if name not in rows.column_names:
        raise NotFoundError(f"column {name!r} ({option}) is not in the AS query's result; "
                            f"columns: {', '.join(rows.column_names)}")


def _append(rows: pa.Table, name: str, column: pa.Array) -> pa.Table:
    if name in rows.column_names:
        rows = rows.drop_columns([name])
    return rows.append_column(name, column)


def _qualified(table: str) -> str:
    return ".".join(quote_ident(p) for p in table.split("."))


def _store(ctx: ExecContext, table: str, key_col: str, keys: pa.ChunkedArray,
           column: pa.Array, record: ColumnRecord) -> None:
    """Add or replace the column and set it row by row (joined on the source column)."""
    d = record.dim
    src = pa.table({"k": keys, "e": column})
    src_name = ctx.register(_dedupe(src))
    tq, cq, kq = _qualified(table), quote_ident(record.column_name), quote_ident(key_col)
    cur = ctx.cur
    with ctx.transaction():
        existing = cur.execute(
            "SELECT data_type FROM duckdb_columns() WHERE lower(table_name) = lower(?) "
            "AND lower(column_name) = lower(?)",
            [table.split(".")[-1], record.column_name]).fetchall()
        if existing and existing[0][0] != f"FLOAT[{d}]":
            cur.execute(f"ALTER TABLE {tq} DROP COLUMN {cq}")
            existing = []
        if not existing:
            cur.execute(f"ALTER TABLE {tq} ADD COLUMN {cq} FLOAT[{d}]")
        cur.execute(f"UPDATE {tq} SET {cq} = s.e FROM {quote_ident(src_name)} s "
                    f"WHERE {tq}.{kq} = s.k")
        ctx.catalog.put_column(record)


def _dedupe(src: pa.Table) -> pa.Table:
    """One row per key (the same path embeds to the same vector)."""
    keys = src.column("k").to_pylist()
    seen: dict[object, int] = {}
    for i, k in enumerate(keys):
        seen.setdefault(k, i)
    if len(seen) == len(keys):
        return src
    return src.take(pa.array(np.fromiter(seen.values(), dtype=np.int64)))
