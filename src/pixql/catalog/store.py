"""The catalog: pixql's own tables in the workspace's DuckDB file (schema ``pixql_catalog``).

``pixql_catalog.models`` has one row per model (its current version);
``pixql_catalog.embedding_columns`` records which model (and which version of it)
produced each embedding column, so SEARCH can refuse to compare vectors from different models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pixql.errors import NotFoundError

if TYPE_CHECKING:
    import duckdb

SCHEMA = "pixql_catalog"

_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE SEQUENCE IF NOT EXISTS {SCHEMA}.model_version_seq START 1",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.models (
        name VARCHAR NOT NULL, kind VARCHAR NOT NULL, version BIGINT NOT NULL,
        created_at TIMESTAMP NOT NULL, dim INTEGER NOT NULL, metric VARCHAR NOT NULL,
        modalities VARCHAR[] NOT NULL, options VARCHAR NOT NULL, config VARCHAR NOT NULL,
        artifact_path VARCHAR NOT NULL, checksum VARCHAR NOT NULL, summary VARCHAR NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.embedding_columns (
        table_name VARCHAR NOT NULL, column_name VARCHAR NOT NULL, model_name VARCHAR NOT NULL,
        model_kind VARCHAR NOT NULL, model_version BIGINT NOT NULL, dim INTEGER NOT NULL,
        metric VARCHAR NOT NULL, modality VARCHAR NOT NULL, source_column VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL)""",
]

_MODEL_COLS = ("name", "kind", "version", "created_at", "dim", "metric", "modalities",
               "options", "config", "artifact_path", "checksum", "summary")


@dataclass
class ModelRecord:
    """One row of ``pixql_catalog.models``."""

    name: str
    kind: str
    version: int
    created_at: datetime
    dim: int
    metric: str
    modalities: list[str]
    options: dict[str, Any]
    config: dict[str, Any]
    artifact_path: str
    checksum: str
    summary: dict[str, Any]


@dataclass
class ColumnRecord:
    """One row of ``pixql_catalog.embedding_columns``."""

    table_name: str
    column_name: str
    model_name: str
    model_kind: str
    model_version: int
    dim: int
    metric: str
    modality: str
    source_column: str


def _model_record(row: Any) -> ModelRecord:
    rec = dict(zip(_MODEL_COLS, row, strict=True))
    for key in ("options", "config", "summary"):
        rec[key] = json.loads(rec[key])
    return ModelRecord(**rec)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the catalog tables if the workspace is new."""
    for stmt in _DDL:
        con.execute(stmt)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Catalog:
    """Reads and writes catalog rows through a given cursor (the caller owns transactions)."""

    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.cur = cur

    # -- models ---------------------------------------------------------------------------
    def next_version(self) -> int:
        rows = self.cur.execute(f"SELECT nextval('{SCHEMA}.model_version_seq')").fetchall()
        return int(rows[0][0])

    def find_model(self, name: str) -> ModelRecord | None:
        cols = ", ".join(_MODEL_COLS)
        row = self.cur.execute(
            f"SELECT {cols} FROM {SCHEMA}.models WHERE name = ?", [name.lower()]
        ).fetchall()
        return _model_record(row[0]) if row else None

    def model_and_column(self, name: str, table: str,
                         column: str) -> tuple[ModelRecord, ColumnRecord | None]:
        """Model ``name`` (NotFoundError if unknown) and the catalog row of ``table.column``
        (None if CONVERT did not make it), in one round trip (SEARCH needs both)."""
        fields = list(ColumnRecord.__dataclass_fields__)
        rows = self.cur.execute(
            f"SELECT {', '.join('m.' + c for c in _MODEL_COLS)}, "
            f"{', '.join('c.' + f for f in fields)} FROM {SCHEMA}.models m "
            f"LEFT JOIN {SCHEMA}.embedding_columns c ON lower(c.table_name) = lower(?) "
            "AND lower(c.column_name) = lower(?) WHERE m.name = ?",
            [table, column, name.lower()]).fetchall()
        if not rows:
            return self.get_model(name), None  # raises NotFoundError naming the models
        row = rows[0]
        col_values = row[len(_MODEL_COLS):]
        col = ColumnRecord(**dict(zip(fields, col_values, strict=True))) \
            if col_values[0] is not None else None
        return _model_record(row[: len(_MODEL_COLS)]), col

    def get_model(self, name: str) -> ModelRecord:
        rec = self.find_model(name)
        if rec is None:
            known = ", ".join(self.model_names()) or "none yet (create one with BUILD MODEL)"
            raise NotFoundError(f"unknown model {name!r}; models in this workspace: {known}")
        return rec

    def model_names(self) -> list[str]:
        return [r[0] for r in self.cur.execute(
            f"SELECT name FROM {SCHEMA}.models ORDER BY name").fetchall()]

    def put_model(self, rec: ModelRecord) -> None:
        """Insert or replace the row for ``rec.name``."""
        self.delete_model(rec.name)
        values = [rec.name, rec.kind, rec.version, rec.created_at, rec.dim, rec.metric,
                  rec.modalities, json.dumps(rec.options, default=str),
                  json.dumps(rec.config, default=str), rec.artifact_path, rec.checksum,
                  json.dumps(rec.summary, default=str)]
        marks = ", ".join("?" for _ in values)
        self.cur.execute(f"INSERT INTO {SCHEMA}.models VALUES ({marks})", values)

    def delete_model(self, name: str) -> None:
        self.cur.execute(f"DELETE FROM {SCHEMA}.models WHERE name = ?", [name.lower()])

    def list_models_sql(self) -> str:
        """SQL returning the LIST MODEL table."""
        return (f"SELECT name, kind, version, created_at, dim, metric, modalities, options, "
                f"summary, artifact_path, checksum FROM {SCHEMA}.models ORDER BY name")

    def artifact_paths(self) -> dict[str, str]:
        return dict(self.cur.execute(
            f"SELECT name, artifact_path FROM {SCHEMA}.models").fetchall())

    # -- embedding columns ----------------------------------------------------------------
    def find_column(self, table: str, column: str) -> ColumnRecord | None:
        fields = list(ColumnRecord.__dataclass_fields__)
        row = self.cur.execute(
            f"SELECT {', '.join(fields)} FROM {SCHEMA}.embedding_columns "
            "WHERE lower(table_name) = lower(?) AND lower(column_name) = lower(?)",
            [table, column],
        ).fetchall()
        return ColumnRecord(**dict(zip(fields, row[0], strict=True))) if row else None

    def put_column(self, rec: ColumnRecord) -> None:
        self.cur.execute(
            f"DELETE FROM {SCHEMA}.embedding_columns "
            "WHERE lower(table_name) = lower(?) AND lower(column_name) = lower(?)",
            [rec.table_name, rec.column_name],
        )
        self.cur.execute(
            f"INSERT INTO {SCHEMA}.embedding_columns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [rec.table_name, rec.column_name, rec.model_name, rec.model_kind, rec.model_version,
             rec.dim, rec.metric, rec.modality, rec.source_column, now()],
        )
