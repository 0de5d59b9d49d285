"""The search page: ``GET /`` and the JSON routes it calls under ``/ui``.

* ``GET /`` — the page (``static/index.html`` with ``style.css`` and ``app.js`` inlined, so it
  is one self-contained, public response; a Content-Security-Policy allows exactly those
  inline blocks by hash). It holds no data: everything comes from the routes below.
* ``GET /ui/tables`` — tables with embedding columns (``pixql_catalog.embedding_columns``),
  the model that made each column and what that model can search by (image, text).
* ``POST /ui/search`` — multipart ``table``, ``emb_col``, ``top_k`` and either an ``image``
  upload or a ``text``: SEARCH IMAGE's ranking (:mod:`pixql.execution.search`) over
  ``SELECT * FROM table``, with the same provenance checks and messages as SQL.
* ``GET /ui/image?path=&size=`` — a thumbnail of an image file inside the workspace only.

When the server has API keys, ``/ui/*`` needs one like every other route (the page sends
``Authorization: Bearer KEY`` and fetches thumbnails with that header, never in the URL).
"""

from __future__ import annotations

import base64
import hashlib
import time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from pixql.errors import (
    CatalogError,
    InputError,
    NotFoundError,
)
from pixql.server.deps import SettingsDep, WorkspaceDep
from pixql.server.ui_files import confined_image_path, image_url, thumbnail, uploaded_image
from pixql.version import __version__
from pixql.workspace import Workspace

router = APIRouter(tags=["search page"])

STATIC = Path(__file__).resolve().parent.parent / "static"
MAX_TOP_K = 200
DEFAULT_THUMB = 256
MAX_THUMB = 1024
#: scalar columns shown under each result, at most
MAX_SHOWN_COLUMNS = 6
MAX_VALUE_CHARS = 200
SEARCHABLE = ("image", "text")
#: the similarity column of the SEARCH the page runs (dropped from a table that has one)
SCORE_COL = "__pixql_score"
NO_WORKSPACE = ("the search page needs a workspace: start the server with "
                "`pixql -w DIR serve` (or set PIXQL_WORKSPACE)")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


# ------------------------------------------------------------------------------ the page
def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@lru_cache(maxsize=1)
def page() -> tuple[str, str]:
    """(HTML, Content-Security-Policy) of the page, with its CSS and JS inlined."""
    style = (STATIC / "style.css").read_text(encoding="utf-8")
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    if "</script" in script.lower() or "</style" in style.lower():
        raise ValueError("static assets must not close their own inline element")
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    html = (html.replace("<!-- pixql:style -->", f"<style>{style}</style>")
                .replace("<!-- pixql:script -->", f"<script>{script}</script>")
                .replace("__PIXQL_VERSION__", __version__))
    csp = (f"default-src 'none'; script-src {_sha256(script)}; style-src {_sha256(style)}; "
           "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; "
           "base-uri 'none'; frame-ancestors 'none'")
    return html, csp


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def search_page() -> HTMLResponse:
    """The search page (public, as Roboflow's clients poll ``/`` for 200)."""
    html, csp = page()
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, **SECURITY_HEADERS})


# ------------------------------------------------------------------------------ tables
class UiColumn(BaseModel):
    name: str
    model: str
    kind: str
    model_version: int
    dim: int
    modality: str
    source_column: str
    search_by: list[str]
    problem: str | None = None


class UiTable(BaseModel):
    name: str
    columns: list[UiColumn]


class UiLimits(BaseModel):
    max_upload_bytes: int
    max_text_chars: int
    max_top_k: int


class UiTables(BaseModel):
    tables: list[UiTable]
    limits: UiLimits


def _workspace(ws: Workspace | None) -> Workspace:
    if ws is None:
        raise NotFoundError(NO_WORKSPACE)
    return ws


_COLUMNS_SQL = """
SELECT c.table_name, c.column_name, c.model_name, c.model_kind, c.model_version, c.dim,
       c.modality, c.source_column, m.version, m.modalities
FROM pixql_catalog.embedding_columns c LEFT JOIN pixql_catalog.models m ON m.name = c.model_name
ORDER BY lower(c.table_name), lower(c.column_name)"""


def _existing_columns(cur: Any) -> set[tuple[str, str]]:
    """(table, column) in lower case, the table both bare and schema-qualified."""
    out: set[tuple[str, str]] = set()
    for schema, table, column in cur.execute(
            "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
            "WHERE NOT internal").fetchall():
        out.add((table.lower(), column.lower()))
        out.add((f"{schema}.{table}".lower(), column.lower()))
    return out


def _problem(model: str, made_by: int, current: int | None) -> str | None:
    if current is None:
        return f"model {model!r} no longer exists; CONVERT again with another model"
    if current != made_by:
        return (f"made by version {made_by} of model {model!r}, which has since been rebuilt "
                f"(now version {current}); re-run CONVERT USING {model}")
    return None


def list_tables(ws: Workspace) -> list[UiTable]:
    """Every table with an embedding column that still exists, and its searchable columns."""
    cur = ws.cursor()
    existing = _existing_columns(cur)
    tables: dict[str, UiTable] = {}
    for (table, column, model, kind, made_by, dim, modality, source, current,
         modalities) in cur.execute(_COLUMNS_SQL).fetchall():
        if (table.lower(), column.lower()) not in existing:
            continue  # dropped since CONVERT
        problem = _problem(model, made_by, current)
        search_by = [] if problem else [m for m in SEARCHABLE if m in (modalities or [])]
        entry = tables.setdefault(table, UiTable(name=table, columns=[]))
        entry.columns.append(UiColumn(
            name=column, model=model, kind=kind, model_version=made_by, dim=dim,
            modality=modality, source_column=source, search_by=search_by, problem=problem))
    return list(tables.values())


@router.get("/ui/tables", response_model=UiTables, summary="Searchable tables (search page)")
def ui_tables(workspace: WorkspaceDep, settings: SettingsDep) -> UiTables:
    """Tables with embedding columns, their models and what each can be searched by."""
    ws = _workspace(workspace)
    limits = UiLimits(max_upload_bytes=settings.max_body_bytes,
                      max_text_chars=settings.max_text_chars, max_top_k=MAX_TOP_K)
    return UiTables(tables=list_tables(ws), limits=limits)


# ------------------------------------------------------------------------------ search
class UiResult(BaseModel):
    rank: int
    score: float
    path: str | None
    image_url: str | None
    values: dict[str, str | None]


class UiSearchResponse(BaseModel):
    table: str
    emb_col: str
    model: str
    search_by: str
    image_col: str | None
    columns: list[str]
    results: list[UiResult]
    time: float


def _qualified(table: str) -> str:
    from pixql.execution.context import quote_ident

    return ".".join(quote_ident(part) for part in table.split("."))


def _column(ws: Workspace, table: str, emb_col: str) -> tuple[str, UiColumn]:
    """(table, column) as the catalog spells them (refusing stale columns, as SEARCH does)."""
    tables = list_tables(ws)
    for t in tables:
        if t.name.lower() != table.lower():
            continue
        for col in t.columns:
            if col.name.lower() == emb_col.lower():
                if col.problem:
                    raise CatalogError(f"{t.name}.{col.name}: {col.problem}")
                return t.name, col
        names = ", ".join(c.name for c in t.columns)
        raise NotFoundError(f"{t.name!r} has no embedding column {emb_col!r}; its embedding "
                            f"columns: {names}", field="emb_col")
    known = ", ".join(t.name for t in tables) or "none yet (run CONVERT first)"
    raise NotFoundError(f"no table {table!r} with embedding columns; tables: {known}",
                        field="table")


def _image_col(col: UiColumn, names: list[str]) -> str | None:
    """The column holding the image to show: what CONVERT embedded, else ``image_path``."""
    if col.modality == "image" and col.source_column in names:
        return col.source_column
    return "image_path" if "image_path" in names else None


def _shown_columns(schema: pa.Schema, hidden: set[str]) -> list[str]:
    nested = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list,
              pa.types.is_struct, pa.types.is_map, pa.types.is_binary,
              pa.types.is_large_binary)
    names = [f.name for f in schema if f.name not in hidden
             and not any(test(f.type) for test in nested)]
    return names[:MAX_SHOWN_COLUMNS]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    out = f"{value:.6g}" if isinstance(value, float) else str(value)
    return out if len(out) <= MAX_VALUE_CHARS else out[: MAX_VALUE_CHARS - 1] + "…"


def _display(ws: Workspace, table: str, col: UiColumn, search_by: str, rows: pa.Table,
             started: float) -> UiSearchResponse:
    """The page's view of SEARCH's result rows (best first, ``SCORE_COL`` last)."""
    scores = rows.column(SCORE_COL).to_pylist()
    image_col = _image_col(col, rows.column_names)
    shown = _shown_columns(rows.schema, {col.name, SCORE_COL, image_col or ""})
    paths = rows.column(image_col).to_pylist() if image_col else [None] * rows.num_rows
    values = {name: rows.column(name).to_pylist() for name in shown}
    results = [UiResult(rank=i + 1, score=float(scores[i]), path=_text(paths[i]),
                        image_url=image_url(ws, paths[i]),
                        values={n: _text(values[n][i]) for n in shown})
               for i in range(rows.num_rows)]
    return UiSearchResponse(table=table, emb_col=col.name, model=col.model,
                            search_by=search_by, image_col=image_col, columns=shown,
                            results=results, time=round(time.perf_counter() - started, 6))


def search(ws: Workspace, table: str, emb_col: str, search_by: str, search_input: str,
           top_k: int) -> UiSearchResponse:
    """Run ``SEARCH IMAGE USING <model> OPTIONS (...) AS SELECT * FROM <table>`` through the
    workspace's engine: a statement node built directly (identifiers quoted, values passed
    as option values, never spliced into SQL text), so results, order, scores, caches and
    errors are exactly SQL's. ``search_input`` is a text or a workspace-relative path."""
    from pixql.execution.engine import execute_statement
    from pixql.sql.nodes import Query as SqlQuery
    from pixql.sql.nodes import Search

    started = time.perf_counter()
    table, col = _column(ws, table, emb_col)
    options = {"search_by": search_by, "search_input": search_input, "emb_col": col.name,
               "result_col": SCORE_COL, "top_k": top_k}
    node = Search(target="image", model=col.model, options=options,
                  query=SqlQuery(f"SELECT * FROM {_qualified(table)}"))
    result = execute_statement(ws, node)
    return _display(ws, table, col, search_by, result.table, started)


def _query(image: UploadFile | None, text: str | None, max_chars: int) -> tuple[str, Any]:
    """(search_by, text or upload bytes): exactly one of an image upload and a text."""
    text = (text or "").strip()
    has_image = image is not None and bool(image.filename or image.size)
    if has_image == bool(text):
        raise InputError("send either an image file or a text to search by (not both)",
                         field="image" if has_image else "text", status=422)
    if text:
        if len(text) > max_chars:
            raise InputError(f"text is {len(text)} characters long; the limit is {max_chars}",
                             field="text", status=413)
        return "text", text
    assert image is not None
    return "image", image.file.read()


@router.post("/ui/search", response_model=UiSearchResponse,
             summary="Search a table by an uploaded image or a text (search page)")
def ui_search(
    workspace: WorkspaceDep,
    settings: SettingsDep,
    table: Annotated[str, Form(min_length=1, max_length=512)],
    emb_col: Annotated[str, Form(min_length=1, max_length=512)],
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = 12,
    text: Annotated[str | None, Form()] = None,
    image: Annotated[UploadFile | None, File(description="the query image")] = None,
) -> UiSearchResponse:
    """The ``top_k`` rows most similar to the query, best first, with thumbnail URLs."""
    ws = _workspace(workspace)
    by, value = _query(image, text, settings.max_text_chars)
    if by == "text":
        return search(ws, table, emb_col, by, value, top_k)
    assert image is not None
    with uploaded_image(ws, value, image.filename or "", settings.max_image_pixels) as path:
        return search(ws, table, emb_col, by, path, top_k)


@router.get("/ui/image", summary="A thumbnail of a workspace image (search page)",
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
def ui_image(
    workspace: WorkspaceDep,
    settings: SettingsDep,
    path: Annotated[str, Query(max_length=4096, description="workspace-relative path")],
    size: Annotated[int, Query(ge=16, le=MAX_THUMB, description="longest side")] = DEFAULT_THUMB,
) -> Response:
    """A thumbnail (``size`` ≤ 1024 pixels a side) of a workspace-relative image path."""
    ws = _workspace(workspace)
    real = confined_image_path(ws, path)
    data, media = thumbnail(real, size, settings.max_image_pixels, path)
    return Response(data, media_type=media,
                    headers={"Cache-Control": "private, max-age=300", **SECURITY_HEADERS})
