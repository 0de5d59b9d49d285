"""CONVERT USING m OPTIONS (...) AS SELECT ...: store an embedding column in the table.

When the AS query reads one base table, the vectors are stored in it, incrementally and in
chunks (:mod:`pixql.execution.incremental`): only rows whose vector is missing or stale are
embedded (``refresh='missing'``, the default; ``'all'`` embeds every row), each chunk is
committed as it is computed, and each stored vector carries its provenance
(:mod:`pixql.catalog.provenance`). The result is a summary message plus the table's rows,
fetched only when read. Any other AS query gets its embeddings returned, not stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pixql.catalog import provenance as prov
from pixql.catalog.store import ColumnRecord
from pixql.errors import NotFoundError, ProgrammingError
from pixql.execution.compute import open_engine, with_defaults
from pixql.execution.context import ExecContext, require_select, to_arrow
from pixql.execution.engine import executes
from pixql.execution.incremental import Tally, Target, convert_rows, qualified, vectors_to_arrow
from pixql.execution.options import ConvertOptions, validate
from pixql.execution.result import Result
from pixql.models.registry import get_kind
from pixql.sql.nodes import Convert

if TYPE_CHECKING:
    import pyarrow as pa

    from pixql.catalog.store import ModelRecord
    from pixql.execution.compute import ComputeEngine
    from pixql.models.base import Embedder

#: convert_type → the option naming its source column
SOURCE_OPTION = {"image": "image_col", "text": "text_col", "video": "video_col"}

__all__ = ["SOURCE_OPTION", "TableRows", "run_convert", "vectors_to_arrow"]


@executes(Convert)
def run_convert(ctx: ExecContext, node: Convert) -> Result:
    rec = ctx.catalog.get_model(node.model)
    kind = get_kind(rec.kind)
    opts = with_defaults(ctx, validate(ConvertOptions, node, extra=kind.convert_defaults,
                                       what="CONVERT"))
    source_col = getattr(opts, SOURCE_OPTION[opts.convert_type])
    embedder = ctx.ws.load_embedder(rec.name, rec)
    embedder.check_modality(opts.convert_type)
    table = ctx.base_table(node.query)
    if opts.table_name and (table or "").lower() != opts.table_name.lower():
        raise ProgrammingError(f"table_name={opts.table_name!r} does not match the table the "
                               f"AS query reads ({table or 'not a single table'})")
    if table is None:
        return _unstored(ctx, node, opts, rec, embedder, source_col)
    require_select(node.query)
    query_sql = ctx.render(node.query)
    _require_column(list(ctx.cur.sql(query_sql).columns), source_col,
                    SOURCE_OPTION[opts.convert_type])
    engine = open_engine(ctx, rec, embedder, opts)
    try:
        return _stored(ctx, table, query_sql, rec, engine, opts, source_col)
    finally:
        engine.close()


def _stored(ctx: ExecContext, table: str, query_sql: str, rec: ModelRecord,
            engine: ComputeEngine, opts: ConvertOptions, source_col: str) -> Result:
    """Embed the table's missing and stale rows into ``opts.result_col``."""
    record = ColumnRecord(table_name=table, column_name=opts.result_col, model_name=rec.name,
                          model_kind=rec.kind, model_version=rec.version, dim=rec.dim,
                          metric=rec.metric, modality=opts.convert_type,
                          source_column=source_col)
    columns = prov.table_columns(ctx.cur, table)
    tally = convert_rows(ctx, query_sql, Target(table, record), engine, opts,
                         _legacy_version(ctx, table, opts.result_col, columns, rec), columns)
    message = _summary(tally, table, opts.result_col)
    if engine.name != "local":
        message += f" (computed by engine {engine.name!r})"
    return Result(message=message,
                  lazy=TableRows(ctx.ws, table))


def _legacy_version(ctx: ExecContext, table: str, column: str, columns: dict[str, str],
                    rec: ModelRecord) -> int | None:
    """The version a pixql 0.1 column (no provenance companion) was made by, as the
    catalog recorded it; None when the column is not such a column."""
    if column.lower() not in columns or prov.companion(column).lower() in columns:
        return None
    old = ctx.catalog.find_column(table, column)
    if old is None or old.dim != rec.dim:
        return None
    return int(old.model_version)


def _summary(tally: Tally, table: str, column: str) -> str:
    msg = (f"embedded {tally.embedded} rows and reused {tally.reused} in {table}.{column} "
           f"({tally.chunks} chunk(s) committed)")
    if tally.failed:
        msg += f"; {tally.failed} rows could not be read and hold NULL"
    return msg


def _unstored(ctx: ExecContext, node: Convert, opts: ConvertOptions, rec: ModelRecord,
              embedder: Embedder, source_col: str) -> Result:
    """An AS query that is not one base table: its rows plus the embeddings, not stored."""
    rows = ctx.query_arrow(node.query)
    _require_column(rows.column_names, source_col, SOURCE_OPTION[opts.convert_type])
    engine = open_engine(ctx, rec, embedder, opts, progress=ctx.ws.progress)
    try:
        emb = engine.embed(rows.column(source_col).to_pylist())
    finally:
        engine.close()
    if opts.result_col in rows.column_names:
        rows = rows.drop_columns([opts.result_col])
    return Result(table=rows.append_column(opts.result_col, vectors_to_arrow(emb)),
                  message="the AS query does not read one base table; the embeddings "
                          "were returned but not stored")


def _require_column(names: list[str], name: str, option: str) -> None:
    if name not in names:
        raise NotFoundError(f"column {name!r} ({option}) is not in the AS query's result; "
                            f"columns: {', '.join(names)}")


@dataclass
class TableRows:
    """The rows of a table as a lazy result (provenance columns left out), read through
    the calling thread's cursor when first asked for."""

    ws: Any
    table: str

    def _select(self) -> str:
        cols = prov.table_columns(self.ws.cursor(), self.table)
        hidden = [c for c in cols if prov.is_companion(c)]
        exclude = f" EXCLUDE ({', '.join(prov.quote(c) for c in hidden)})" if hidden else ""
        return f"SELECT *{exclude} FROM {qualified(self.table)}"

    def columns(self) -> list[str]:
        return list(self.ws.cursor().sql(self._select() + " LIMIT 0").columns)

    def count(self) -> int:
        got = self.ws.cursor().execute(f"SELECT count(*) FROM {qualified(self.table)}")
        return int(got.fetchall()[0][0])

    def head(self, n: int) -> pa.Table:
        return to_arrow(self.ws.cursor().sql(f"{self._select()} LIMIT {int(n)}"))

    def all(self) -> pa.Table:
        return to_arrow(self.ws.cursor().sql(self._select()))
