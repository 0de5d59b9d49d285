"""COPY t OPTIONS (if_exists=...) FROM 'file.csv' | 'file.parquet' | 'file.json' | 'folder/'.

A folder gives one row per image file: ``image_path`` (workspace-relative when the folder is
inside the workspace, else absolute), ``filename`` and ``label`` (the parent folder's name
when images sit in class folders; an integer when every such name is one).
``resolve_paths='col'`` (or a list) rewrites relative paths in those columns, which are
relative to the file's own folder, into workspace-relative (or absolute) ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pixql.errors import ConflictError, NotFoundError, ProgrammingError
from pixql.execution.context import ExecContext, quote_ident, to_arrow
from pixql.execution.engine import executes
from pixql.execution.options import CopyOptions, validate
from pixql.execution.result import Result
from pixql.sql.nodes import CopyFrom

if TYPE_CHECKING:
    from collections.abc import Callable

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

#: file suffix → DuckDB reader method on a connection
READERS: dict[str, str] = {
    ".csv": "read_csv", ".tsv": "read_csv", ".txt": "read_csv",
    ".parquet": "read_parquet", ".pq": "read_parquet",
    ".json": "read_json", ".jsonl": "read_json", ".ndjson": "read_json",
}


@executes(CopyFrom)
def run_copy(ctx: ExecContext, node: CopyFrom) -> Result:
    opts = validate(CopyOptions, node, what="COPY")
    if_exists = "replace" if opts.overwrite else opts.if_exists
    source = ctx.ws.resolve(node.source)
    if source.is_dir():
        data = folder_table(source, ctx.ws.relativize, opts.image_col)
    elif source.is_file():
        data = _read_file(ctx, source)
    else:
        raise NotFoundError(f"COPY source not found: {source}")
    data = _resolve_path_columns(data, opts.resolve_paths, source, ctx.ws.relativize)
    with ctx.ws.write_lock:
        _write(ctx, node.table, data, if_exists)
    summary = pa.table({"table": [node.table], "rows": [data.num_rows]})
    return Result(table=summary, message=f"copied {data.num_rows} rows into {node.table}")


def _read_file(ctx: ExecContext, path: Path) -> pa.Table:
    method = READERS.get(path.suffix.lower())
    if method is None:
        raise ProgrammingError(
            f"COPY cannot read {path.name!r}: supported files are "
            f"{', '.join(sorted(READERS))}, or a folder of images")
    return to_arrow(getattr(ctx.cur, method)(str(path)))


def folder_table(folder: Path, relativize: Callable[[Path], str], image_col: str) -> pa.Table:
    """One row per image file under ``folder`` (recursively, sorted; hidden folders skipped)."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # skip hidden
        files.extend(Path(dirpath) / f for f in sorted(filenames)
                     if Path(f).suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NotFoundError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                            f"under {folder}")
    labels: list[Any] = [p.parent.name if p.parent != folder else None for p in files]
    if all(lab is not None and lab.lstrip("-").isdigit() for lab in labels):
        labels = [int(lab) for lab in labels]
    return pa.table({image_col: [relativize(p) for p in files],
                     "filename": [p.name for p in files], "label": labels})


def _resolve_path_columns(data: pa.Table, cols: str | list[str] | None, source: Path,
                          relativize: Callable[[Path], str]) -> pa.Table:
    if cols is None:
        return data
    base = source if source.is_dir() else source.parent
    for col in [cols] if isinstance(cols, str) else cols:
        if col not in data.column_names:
            raise NotFoundError(f"resolve_paths: no column {col!r} in {source.name}; "
                                f"columns: {', '.join(data.column_names)}")
        values = [None if v is None else relativize(base / str(v))
                  for v in data.column(col).to_pylist()]
        data = data.set_column(data.column_names.index(col), col, pa.array(values, pa.string()))
    return data


def _write(ctx: ExecContext, table: str, data: pa.Table, if_exists: str) -> None:
    cur, tq = ctx.cur, quote_ident(table)
    src = quote_ident(ctx.register(data))
    exists = cur.execute(
        "SELECT 1 FROM duckdb_tables() WHERE lower(table_name) = lower(?) AND NOT temporary",
        [table]).fetchall() != []
    if exists and if_exists == "fail":
        raise ConflictError(f"table {table!r} already exists; use OPTIONS "
                            f"(if_exists='replace') or (if_exists='append')")
    with ctx.transaction():
        if exists and if_exists == "append":
            cur.execute(f"INSERT INTO {tq} BY NAME SELECT * FROM {src}")
        else:
            cur.execute(f"CREATE OR REPLACE TABLE {tq} AS SELECT * FROM {src}")
    ctx.ws.invalidate_vectors(table, None)
