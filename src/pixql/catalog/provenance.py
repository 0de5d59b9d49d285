"""Per-row provenance of embedding columns: which model version made each stored vector,
and from which source value (and file).

Every embedding column ``e`` that CONVERT stores has a companion column ``e__pixql`` in the
same table, of type :data:`PROVENANCE_TYPE`::

    model_version  BIGINT   the model version that made the vector (versions are unique
                            across all models of the workspace)
    source_hash    UBIGINT  md5_number_lower() of the source value (path or text) it was
                            made from
    file_size      BIGINT   size and mtime (ns) of the file when it was read; -1, -1 when it
    file_mtime_ns  BIGINT   could not be read; NULL for texts and for vectors of pixql 0.1.
                            For a URL value: the object's size and a hash of its version
                            validators (pixql.remote.sources: ETag, Last-Modified,
                            generation)

The companion lives in the row, so it follows the row through INSERT ... SELECT, UPDATE,
DELETE and DuckDB's checkpoints (which renumber row ids). A row's vector is, for a model
version ``V`` (see :func:`status_sql`):

* **current** — made by ``V`` from the row's present source value;
* **stale** — made by another version, or from another source value (the path or text was
  changed since), or made in pixql 0.1 by a version other than ``V``;
* **missing** — never embedded (a row INSERTed after CONVERT; a column just added);
* **failed** — embedded by ``V`` from the present value, but the value could not be read
  (``on_error='null'``): NULL until the file changes.

pixql 0.1 columns have no companion: their non-NULL vectors count as made by the version
the catalog recorded for the whole column (one version); the next CONVERT into the column
adds the companion and fills it that way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

#: companion column suffix (columns ending in it are pixql's, left out of results)
SUFFIX = "__pixql"
PROVENANCE_TYPE = ("STRUCT(model_version BIGINT, source_hash UBIGINT, file_size BIGINT, "
                   "file_mtime_ns BIGINT)")

#: row status codes (see the module docstring)
CURRENT, STALE, MISSING, FAILED = 0, 1, 2, 3


def companion(column: str) -> str:
    """The name of the provenance column of embedding column ``column``."""
    return column + SUFFIX


def is_companion(column: str) -> bool:
    return column.lower().endswith(SUFFIX)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def source_hash_sql(expr: str) -> str:
    """SQL hashing a source value (stable across DuckDB versions: md5)."""
    return f"md5_number_lower(CAST({expr} AS VARCHAR))"


def made_by_sql(prov: str, source: str | None, version: int) -> str:
    """SQL: the row's provenance says version ``version`` made it from the present value
    of ``source`` (None: the source column is gone; the version alone decides)."""
    same_value = "" if source is None else \
        f" AND {prov}.source_hash IS NOT DISTINCT FROM {source_hash_sql(source)}"
    return f"coalesce({prov}.model_version = {int(version)}{same_value}, false)"


def status_sql(emb: str, prov: str | None, source: str | None, version: int,
               legacy_version: int | None) -> str:
    """SQL giving each row's status code for model version ``version``. ``emb``, ``prov``
    and ``source`` are SQL expressions (``prov`` None: a 0.1 column without companion,
    whose vectors come from ``legacy_version``; None there too: a column pixql did not
    make, whose vectors count as current)."""
    if prov is None:
        current = "true" if legacy_version is None else str(legacy_version == version).lower()
        return (f"CASE WHEN {emb} IS NULL THEN {MISSING} WHEN {current} THEN {CURRENT} "
                f"ELSE {STALE} END")
    return (f"CASE WHEN {made_by_sql(prov, source, version)} THEN (CASE WHEN {emb} IS NULL "
            f"THEN {FAILED} ELSE {CURRENT} END) WHEN {emb} IS NULL THEN {MISSING} "
            f"ELSE {STALE} END")


def table_columns(cur: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name (lower case) → type of base table ``[schema.]table``."""
    parts = table.split(".")
    rows = cur.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE lower(table_name) = "
        "lower(?) AND (? IS NULL OR lower(schema_name) = lower(?)) "
        "AND database_name = current_database()",
        [parts[-1], parts[0] if len(parts) > 1 else None,
         parts[0] if len(parts) > 1 else None]).fetchall()
    return {str(n).lower(): str(t) for n, t in rows}


def left_out_message(stale: int, missing: int, fix: str) -> str:
    """What SEARCH says about the rows it did not rank, and how to fix it."""
    parts = []
    if stale:
        parts.append(f"{stale} row(s) whose embeddings are stale (made by another model "
                     f"version or from a value changed since)")
    if missing:
        parts.append(f"{missing} row(s) not embedded yet")
    if not parts:
        return ""
    return (f"left out {' and '.join(parts)}: run {fix} to embed {stale + missing} "
            f"row(s)")
