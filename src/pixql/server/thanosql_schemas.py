"""Bodies of ThanoSQL's REST API (what the ``thanosql`` SDK sends and parses).

Field names follow the SDK's own pydantic models (``thanosql/resources/_query.py``,
``_table.py``, ``_file.py``, ``_record.py``), so ``TypeAdapter(QueryLog)`` etc. accept them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class QueryRequest(BaseModel):
    """``POST /api/v1/query/`` payload. pixql has no query templates: ``template_id`` /
    ``template_name`` / ``parameters`` are refused with a message naming them."""

    model_config = ConfigDict(extra="forbid")

    query_string: str | None = Field(default=None, max_length=1_000_000,
                                     description="one or more ;-separated statements")
    query_type: str | None = Field(default=None, description="'thanosql' or 'psql' (same)")
    template_id: int | None = None
    template_name: str | None = None
    parameters: dict[str, Any] | None = None


class Records(BaseModel):
    """Rows as JSON objects (embeddings: base64 of little-endian float32)."""

    data: list[dict[str, Any]]
    total: int


class QueryLog(BaseModel):
    """One executed query, as the SDK's ``QueryLog``."""

    query_id: str
    statement_type: str | None = None
    start_time: datetime
    end_time: datetime | None = None
    query: str
    referer: str = "pixql"
    state: str
    destination_table_name: str | None = None
    destination_schema: str | None = None
    error_result: str | None = None
    created_at: datetime
    records: Records | None = None
    total_records: int = 0
    affected_records: int | None = None


class QueryLogList(BaseModel):
    query_logs: list[QueryLog]
    total: int


class Column(BaseModel):
    id: int | None = None
    name: str
    type: str
    default: str | None = None
    is_nullable: bool = True


class Table(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    table_schema: str = Field(alias="schema", serialization_alias="schema")
    columns: list[Column] | None = None


class TableList(BaseModel):
    tables: list[Table]
    total: int


class TableOut(BaseModel):
    table: Table


class RecordsOut(BaseModel):
    records: list[dict[str, Any]]
    total: int


class ContentInfo(BaseModel):
    """A file or folder of the workspace (the SDK's ``ContentInfo``)."""

    name: str
    format: str | None = None
    path: str
    type: str
    size: int | None = None
    writable: bool = True
    content: Any = None
    created_at: datetime
    updated_at: datetime


class Content(BaseModel):
    content_info: ContentInfo
    root: str
