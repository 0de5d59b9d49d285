"""Cached embedding matrices for SEARCH: one float32 matrix of unit rows per (table, column).

A :class:`ColumnVectors` holds a column's vectors as unit rows (zeros for NULL), with the
row ids they came from, so SEARCH scores a million rows with one matrix-vector product
instead of converting the column from DuckDB on every query. Columns from
``PIXQL_COMPRESS_MIN_MB`` (64) on are kept as 8-bit codes in memory with the unit rows
memory-mapped from the column's vector files (:mod:`pixql.execution.vector_load`,
:mod:`pixql.index.vector_files`), which a later session reuses while the database is
unchanged.

Staleness is detected, not assumed. An entry is reused only while both of these are
unchanged since it was loaded:

* the database's write stamp: inode, size and mtime of ``pixql.duckdb`` and of its
  write-ahead log. Every committed write (INSERT, UPDATE, DELETE, ALTER, COPY, CONVERT, by
  pixql or by any cursor of this process) grows the WAL, and every checkpoint (the only time
  DuckDB renumbers row ids) rewrites the database file, so a matching stamp means nothing
  was committed since. Writes to *other* tables also change it: the cost is a reload, never
  a stale answer;
* the table's own state: oid, estimated size, column count, the column's position and type.

Entries are read inside one read transaction (see :func:`read_snapshot`), LRU-evicted
within a memory budget (``PIXQL_VECTOR_CACHE_MB``, default 40% of RAM), and dropped eagerly
by :meth:`VectorCache.invalidate` (called by CONVERT and COPY).
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixql.execution.context import in_open_transaction, quote_ident
from pixql.execution.vector_load import (
    Loaded,
    arrow_vectors,
    compress_min_bytes,
    load_to_files,
    load_vectors,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import duckdb
    import pyarrow as pa

    from pixql.index.compressed import SQ8Codes
    from pixql.index.raw_rows import RawRows

__all__ = ["ColumnVectors", "TableRef", "VectorCache", "arrow_vectors", "read_snapshot",
           "resolve_table"]
#: default share of physical memory the cache may hold
DEFAULT_BUDGET_SHARE = 0.4

Stamp = tuple[int, ...]


def db_stamp(db_path: Path) -> Stamp:
    """(inode, size, mtime_ns) of the database file and of its WAL (zeros when absent)."""
    out: list[int] = []
    for p in _stamp_files(db_path):
        try:
            st = os.stat(p)
            out += [st.st_ino, st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            out += [0, 0, 0]
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _stamp_files(db_path: Path) -> tuple[str, str]:
    """The database file and its WAL, as strings (a SEARCH reads the stamp twice)."""
    return str(db_path), str(db_path.with_name(db_path.name + ".wal"))


@contextmanager
def read_snapshot(cur: duckdb.DuckDBPyConnection) -> Iterator[bool]:
    """A read transaction on ``cur`` (yields True), or False when ``cur`` is already inside
    a transaction of its own (uncommitted changes are invisible to the write stamp, so the
    caller must not use the cache then)."""
    if in_open_transaction(cur):
        yield False
        return
    cur.execute("BEGIN TRANSACTION")
    try:
        yield True
    finally:
        cur.execute("ROLLBACK")


@dataclass(frozen=True)
class TableRef:
    """A base table as SEARCH's fast path reads it, with its catalog state (read before
    the snapshot that loads vectors, so never newer than them)."""

    schema: str
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...] = ()
    state: tuple[Any, ...] = ()  # (oid, estimated size, column count)

    @property
    def sql(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}".lower()

    def column_state(self, column: str) -> tuple[Any, ...] | None:
        """The table's state plus the column's position and type (None: no such column)."""
        if column not in self.columns:
            return None
        i = self.columns.index(column)
        return (*self.state, i, self.types[i] if i < len(self.types) else None)


def resolve_table(cur: duckdb.DuckDBPyConnection, schema: str, name: str) -> TableRef | None:
    """The base table ``[schema.]name`` names in the current database (an empty schema:
    the current one), unless a temporary table or view of that name could shadow it or it
    has a column called ``rowid``."""
    rows = cur.execute(
        "SELECT schema_name, table_name, table_oid, estimated_size, column_count, temporary, "
        "database_name, current_database(), current_schema(), (SELECT count(*) FROM "
        "duckdb_views() WHERE temporary AND lower(view_name) = lower($1)) FROM duckdb_tables() "
        "WHERE lower(table_name) = lower($1)", [name]).fetchall()
    if not rows or rows[0][9] or any(r[5] for r in rows):  # a temporary view/table shadows it
        return None
    want = (schema or rows[0][8]).lower()
    rows = [r for r in rows if r[6] == r[7] and r[0].lower() == want]
    if len(rows) != 1:
        return None
    sch, tab, oid, est, ncols = rows[0][:5]
    ref = TableRef(sch, tab, ())
    info = cur.execute("SELECT name, type FROM pragma_table_info(?) ORDER BY cid",
                       [ref.sql]).fetchall()
    if any(c.lower() == "rowid" for c, _ in info):
        return None
    return TableRef(sch, tab, tuple(c for c, _ in info), tuple(t for _, t in info),
                    (oid, est, ncols))


@dataclass(eq=False)
class ColumnVectors:
    """A column's vectors as unit rows (``units[i]`` is the row with id ``rowids[i]``)."""

    units: np.ndarray  # (n, d) float32, C-contiguous; zeros where ~valid
    rowids: np.ndarray  # (n,) int64, ascending
    valid: np.ndarray  # (n,) bool: the stored vector is not NULL (and current, see status)
    status: np.ndarray | None = None  # (n,) int8 provenance status codes; None: all current
    state: tuple[Any, ...] | None = None  # (write stamp, table state, row count); None: one-shot
    indexes: dict[str, Any] = field(default_factory=dict)  # ANN indexes over ``units``
    codes: SQ8Codes | None = None  # 8-bit codes of ``units`` (then memory-mapped from disk)
    raw: RawRows | None = None  # the stored rows, read from the vector files
    rows: pa.Table | None = None  # the table's rows, aligned (pixql.execution.row_cache)
    rows_schema: pa.Schema | None = None  # the rows' full schema (``rows`` may lack emb_col)
    rows_tag: tuple[Any, int] | None = None  # (cursor, catalog version) ``rows`` are for
    rows_skipped: bool = False  # the rows do not fit: never read them for this entry
    lock: threading.Lock = field(default_factory=threading.Lock)
    _checksum: str | None = None
    files: tuple[Path, Any] | None = None  # (folder, state) of the vector files it came from
    _counts: np.ndarray | None = None
    _n_valid: int | None = None

    @property
    def nbytes(self) -> int:
        extra = 0 if self.status is None else self.status.nbytes
        extra += 0 if self.rows is None else self.rows.nbytes
        main = self.units.nbytes if self.codes is None else self.codes.nbytes
        return int(main + self.rowids.nbytes + self.valid.nbytes + extra)

    def status_counts(self, selected: np.ndarray | None = None) -> np.ndarray:
        """Rows per provenance status code, among ``selected`` positions (None: all rows,
        counted once per entry)."""
        assert self.status is not None
        if selected is not None:
            return np.bincount(self.status[selected].astype(np.int64), minlength=4)
        if self._counts is None:
            self._counts = np.bincount(self.status.astype(np.int64), minlength=4)
        return self._counts

    @property
    def n_valid(self) -> int:
        """Valid rows (counted once: ``valid`` never changes once the entry is made)."""
        if self._n_valid is None:
            self._n_valid = int(np.count_nonzero(self.valid))
        return self._n_valid

    @property
    def all_valid(self) -> bool:
        return self.n_valid == len(self.valid)

    def positions(self, rowids: np.ndarray) -> np.ndarray | None:
        """Cache positions of ``rowids`` (in the given order), or None if any is unknown."""
        rowids = np.asarray(rowids, dtype=np.int64)
        n = len(self.rowids)
        if n == 0:
            return None if len(rowids) else np.zeros(0, dtype=np.int64)
        base = int(self.rowids[0])
        if int(self.rowids[-1]) - base == n - 1:  # dense ids: position = id - first id
            pos = rowids - base
            ok = len(pos) == 0 or (int(pos.min()) >= 0 and int(pos.max()) < n)
            return pos if ok else None
        pos = np.searchsorted(self.rowids, rowids)
        pos[pos >= n] = 0
        return pos if np.array_equal(self.rowids[pos], rowids) else None

    def checksum(self) -> str:
        """A content hash (SHA-1 of ids, validity and vectors), computed once (and noted
        beside the vector files the rows came from, for later sessions); ANN index files
        are tied to it."""
        if self._checksum is None:
            from pixql.index import vector_files

            self._checksum = vector_files.content_checksum(self.units, self.rowids, self.valid)
            if self.files is not None:
                vector_files.note_checksum(*self.files, self._checksum)
        return self._checksum


def _default_budget() -> int:
    env = os.environ.get("PIXQL_VECTOR_CACHE_MB")
    if env:
        return int(float(env) * 2**20)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        total = 8 << 30
    return int(total * DEFAULT_BUDGET_SHARE)


class VectorCache:
    """Per-workspace LRU cache of :class:`ColumnVectors`, validated on every lookup."""

    def __init__(self, db_path: Path, *, budget_bytes: int | None = None,
                 index_root: Path | None = None) -> None:
        self.db_path = Path(db_path)
        self.budget = _default_budget() if budget_bytes is None else budget_bytes
        self.index_root = index_root
        self._entries: OrderedDict[tuple[str, str], ColumnVectors] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self.loads = 0
        self.hits = 0
        self.reused = 0  # loads answered by saved vector files
        #: fp32 bytes from which a column is kept compressed (None: the environment's)
        self.compress_min_bytes: int | None = None

    def lookup(self, cur: duckdb.DuckDBPyConnection, ref: TableRef, column: str,
               dim: int, status_sql: str | None = None) -> ColumnVectors | None:
        """The vectors of ``ref.column`` as of ``cur``'s snapshot, loading them when missing
        or stale; None when the column is not ``FLOAT[dim]`` or does not fit the budget.
        Call inside :func:`read_snapshot`, before any other query of the snapshot, with a
        ``ref`` resolved before the snapshot began."""
        stamp = db_stamp(self.db_path)  # before the snapshot's first read: never too new
        state = ref.column_state(column)
        if state is None or state[-1] != f"FLOAT[{dim}]":
            return None
        count = int(cur.execute(f"SELECT count(*) FROM {ref.sql}").fetchall()[0][0])
        full_state = (stamp, state, count, status_sql)
        key = (ref.key, column.lower())
        with self._key_lock(key):
            entry = self._get(key)
            if entry is not None and entry.state == full_state:
                self.hits += 1
                return entry
            previous = entry
            self._drop(key)
            files = self._files_for(ref, column, count, dim)
            need = count * ((dim if files else dim * 4) + 10)
            if need > self.budget:
                return None
            self._make_room(need)
            entry = self._load(cur, ref, column, dim, count, status_sql, files, full_state)
            if previous is not None and previous.indexes:  # indexes follow the data
                from pixql.index.update import follow_all

                follow_all(previous, entry)
            # a write committed while loading leaves a one-shot entry (right for this
            # snapshot, never reused)
            entry.state = full_state if db_stamp(self.db_path) == stamp else None
            if entry.state is not None:
                with self._lock:
                    self._entries[key] = entry
            return entry

    def _files_for(self, ref: TableRef, column: str, count: int, dim: int) -> Path | None:
        """The folder of the column's vector files when it is kept compressed (large
        enough, faiss installed, a workspace folder to write in), else None."""
        least = compress_min_bytes() if self.compress_min_bytes is None \
            else self.compress_min_bytes
        if self.index_root is None or least < 0 or count * dim * 4 < least:
            return None
        from pixql.index import compressed, vector_files

        if not compressed.available():
            return None
        return vector_files.folder(self.index_root, ref.key, column)

    def _load(self, cur: duckdb.DuckDBPyConnection, ref: TableRef, column: str, dim: int,
              count: int, status_sql: str | None, files: Path | None,
              full_state: tuple[Any, ...]) -> ColumnVectors:
        """Load the column: from its vector files when they match this state, else from
        DuckDB (into new files when ``files``, or into memory)."""
        got: Loaded | None = None
        if files is not None:
            from pixql.index import vector_files

            # the table's oid differs between sessions: the saved state leaves it out
            saved_state = [full_state[0], full_state[1][1:], count, status_sql]
            found = vector_files.open_saved(files, saved_state, dim)
            if found is not None:
                self.reused += 1
                got = Loaded(found.units, found.rowids, found.valid, found.status, found.codes,
                             found.raw, found.checksum)
            else:
                try:
                    got = load_to_files(cur, ref, column, dim, count, status_sql, files,
                                        saved_state)
                except OSError:  # a read-only workspace: keep fp32 in memory
                    got = None
        if got is None:
            got = load_vectors(cur, ref, column, dim, count, status_sql)
        self.loads += 1
        noted = None if files is None or got.raw is None else (files, saved_state)
        return ColumnVectors(got.units, got.rowids, got.valid, got.status, codes=got.codes,
                             raw=got.raw, _checksum=got.checksum, files=noted)

    def peek(self, key: tuple[str, str]) -> ColumnVectors | None:
        """The entry of ``key`` (table key, lower-case column) as it is, unvalidated."""
        with self._lock:
            return self._entries.get(key)

    def invalidate(self, table: str, column: str | None = None) -> None:
        """Drop cached vectors (and saved ANN indexes) of ``table`` (one column or all)."""
        name = table.lower().split(".")[-1].strip('"')
        col = column.lower() if column else None
        with self._lock:
            doomed = [k for k in self._entries
                      if k[0].split(".")[-1] == name and (col is None or k[1] == col)]
            for k in doomed:
                del self._entries[k]
        if self.index_root is not None:
            from pixql.index.store import remove_saved

            remove_saved(self.index_root, name, col)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    # -- internals ------------------------------------------------------------------------
    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _get(self, key: tuple[str, str]) -> ColumnVectors | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def _drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _make_room(self, need: int) -> None:
        with self._lock:
            while self._entries and sum(e.nbytes for e in self._entries.values()) + need \
                    > self.budget:
                self._entries.popitem(last=False)
