"""SEARCH IMAGE USING m OPTIONS (...) AS SELECT ...: rank rows by cosine similarity.

Semantics (ThanoSQL's, reference §1.6): every column of the AS query in order plus
``result_col`` last; sorted by similarity descending, ties in the query's row order; the
first ``top_k`` rows (default 1000, None = all); the query item is not excluded. Rows whose
embedding is NULL are never ranked.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pixql.catalog.store import ModelRecord
from pixql.errors import CatalogError, ModelError, NotFoundError, ProgrammingError
from pixql.execution.context import ExecContext
from pixql.execution.engine import executes
from pixql.execution.options import SearchOptions, validate
from pixql.execution.result import Result
from pixql.images import load_image
from pixql.models.base import Embedder
from pixql.sql.nodes import Search


@executes(Search)
def run_search(ctx: ExecContext, node: Search) -> Result:
    if node.target == "audio":
        raise ModelError("SEARCH AUDIO is not supported: no pixql model embeds audio")
    rec = ctx.catalog.get_model(node.model)
    opts = validate(SearchOptions, node, what=f"SEARCH {node.target.upper()}")
    result_col = opts.column_name or opts.result_col
    embedder = ctx.ws.load_embedder(rec.name)
    embedder.check_modality(opts.search_by)
    rows = ctx.query_arrow(node.query)
    if opts.emb_col not in rows.column_names:
        raise NotFoundError(f"emb_col {opts.emb_col!r} is not a column of the AS query; "
                            f"columns: {', '.join(rows.column_names)}. Run CONVERT first.")
    _check_provenance(ctx, node, rec, opts.emb_col)
    matrix, valid = column_matrix(rows.column(opts.emb_col), rec.dim, opts.emb_col)
    query = query_vector(ctx, embedder, opts.search_by, opts.search_input)
    scores = cosine_scores(matrix, query)
    order = rank(scores, valid, opts.top_k)
    if result_col in rows.column_names:
        rows = rows.drop_columns([result_col])
    out = rows.take(pa.array(order, type=pa.int64()))
    out = out.append_column(result_col, pa.array(scores[order].astype(np.float64)))
    return Result(table=out)


def _check_provenance(ctx: ExecContext, node: Search, rec: ModelRecord, emb_col: str) -> None:
    table = ctx.base_table(node.query)
    col = ctx.catalog.find_column(table, emb_col) if table else None
    if col is None:
        return
    if col.model_name != rec.name:
        raise CatalogError(
            f"{table}.{emb_col} holds embeddings of model {col.model_name!r}, not "
            f"{rec.name!r}: search it USING {col.model_name}, or CONVERT USING {rec.name} "
            f"into another result_col")
    if col.model_version != rec.version:
        raise CatalogError(
            f"{table}.{emb_col} was made by version {col.model_version} of model {rec.name!r}, "
            f"which has since been rebuilt (now version {rec.version}); re-run CONVERT USING "
            f"{rec.name}")


def column_matrix(col: pa.ChunkedArray, dim: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """An embedding column as a contiguous (n, dim) float32 matrix and a validity mask."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type)
            or pa.types.is_large_list(arr.type)):
        raise ProgrammingError(f"emb_col {name!r} has type {arr.type}, not an embedding "
                               f"(FLOAT[{dim}])")
    n = len(arr)
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    matrix = np.zeros((n, dim), dtype=np.float32)
    if valid.any():
        present = arr.filter(pa.array(valid)) if not valid.all() else arr
        flat = np.asarray(present.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        if flat.size != int(valid.sum()) * dim:
            raise ProgrammingError(f"emb_col {name!r} does not hold {dim}-dimensional vectors "
                                   f"(the model's dimension)")
        matrix[valid] = flat.reshape(-1, dim)
    return matrix, valid


def query_vector(ctx: ExecContext, embedder: Embedder, search_by: str, value: str) -> np.ndarray:
    """Embed ``search_input``: a workspace-relative or absolute path, or a text."""
    if search_by == "image":
        item: object = load_image(ctx.ws.resolve(value))
    elif search_by in ("video", "audio"):
        path = ctx.ws.resolve(value)
        if not path.is_file():
            raise NotFoundError(f"search_input file not found: {path}")
        item = str(path)
    else:
        item = value
    vec: np.ndarray = embedder.embed([item], search_by)[0]
    return vec


def cosine_scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row with ``query`` (zero rows score 0)."""
    q = query.astype(np.float32) / max(float(np.linalg.norm(query)), 1e-12)
    dots = matrix @ q
    norms = np.linalg.norm(matrix, axis=1)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def rank(scores: np.ndarray, valid: np.ndarray, top_k: int | None) -> np.ndarray:
    """Indices of valid rows by score descending, ties in row order, at most ``top_k``."""
    idx = np.flatnonzero(valid)
    s = scores[idx]
    if top_k is not None and top_k < len(idx):
        # the k-th best score; keep everything at least that good, then sort stably
        kth = np.partition(s, len(s) - top_k)[len(s) - top_k]
        keep = s >= kth
        idx, s = idx[keep], s[keep]
    order = idx[np.argsort(-s, kind="stable")]
    return order if top_k is None else order[:top_k]
