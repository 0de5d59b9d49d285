"""SEARCH's hot path: a repeated SEARCH in one DuckDB round trip instead of nine.

A SEARCH on the fast path needs, besides its kernel, the AS query's table (resolved in
DuckDB's catalog), the model's and the column's catalog rows, a check that the cursor is
not inside a transaction of its own, a read snapshot, the row count, and the winning rows.
While nothing changes, most of that is the same every time, so it is remembered
(:class:`SearchMemo`), keyed by

* the cursor, the AS query text, the model and ``emb_col``;
* the database's write stamp (:func:`~pixql.execution.vectors.db_stamp`: any commit, by any
  connection or process, changes it);
* DuckDB's catalog version (``_catalog_version()``: bumped by every statement that may
  change what a name binds to — DDL, ``SET``, ``USE``, writes — *and by every BEGIN,
  COMMIT and ROLLBACK*, in any cursor of the database, temporary objects included).
  Without that counter (another DuckDB build) nothing is remembered.

An entry is stored only right after the snapshot path answered on that cursor, which it
does only outside an open transaction; since then no transaction can have begun (it would
have bumped the version), so a recognised SEARCH runs in autocommit mode and needs neither
the transaction check nor an explicit snapshot. :func:`hot_search` then reads

1. the WHERE clause's row ids, when there is one;
2. the winning rows, with the table's row count in the same query (a guard on the cached
   vectors, as on the snapshot path) — or, when the table's rows fit (for a column kept
   in vector files: its other columns), nothing: they are kept beside the vectors, read
   once at the entry's own state (:mod:`pixql.execution.row_cache`),

and the write stamp again at the end: a commit by anyone in between throws the answer
away (the snapshot path answers instead), so the row ids, scores and rows come from one
committed state.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pixql.execution.context import quote_ident, to_arrow
from pixql.execution.row_cache import cached_rows, confirm_rows, take_rows
from pixql.execution.vectors import db_stamp

if TYPE_CHECKING:
    from collections.abc import Callable

    import duckdb

    from pixql.catalog.store import ColumnRecord, ModelRecord
    from pixql.execution.context import ExecContext
    from pixql.execution.freshness import Freshness
    from pixql.execution.vectors import ColumnVectors, Stamp, TableRef, VectorCache

_names = itertools.count()
Ranked = tuple[np.ndarray, np.ndarray, str]
Found = tuple[pa.Table, np.ndarray, str]

#: remembered SEARCH shapes per workspace
MEMO_MAX = 256
#: a deterministic WHERE clause's row ids are remembered up to this many rows (8 bytes each)
SELECTION_MAX = 262_144


@dataclass(frozen=True)
class Prepared:
    """What :func:`pixql.execution.search.run_search` looked up for one SEARCH shape."""

    plan: Any  # pixql.execution.search.QueryPlan
    rec: ModelRecord
    col: ColumnRecord | None
    cursor: Any = None  # the cursor it was found on (kept alive: its id stays unique)
    stamp: Stamp | None = None  # the write stamp :meth:`SearchMemo.get` recognised it at
    # where a deterministic WHERE clause (pixql.execution.search_plan.deterministic) keeps
    # its row ids; None: the clause is read on every SEARCH (or there is none)
    selection: Selection | None = field(default=None, compare=False)


@dataclass
class Selection:
    """The row ids a WHERE clause selects at one committed state, once a hot SEARCH has read
    them (shared by the copies of a :class:`Prepared` that :meth:`SearchMemo.get` hands
    out, all of that state)."""

    rowids: np.ndarray | None = None


def catalog_version(cur: duckdb.DuckDBPyConnection) -> int | None:
    fn = getattr(cur, "_catalog_version", None)
    if fn is None:  # pragma: no cover - a DuckDB build without the counter
        return None
    try:
        return int(fn())
    except Exception:  # pragma: no cover - defensive: no memo then  # noqa: BLE001
        return None


class SearchMemo:
    """Per-workspace LRU of :class:`Prepared`, valid for one committed state."""

    def __init__(self, cache: VectorCache) -> None:
        self.cache = cache
        self._items: OrderedDict[tuple[Any, ...], Prepared] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def _key(self, cur: duckdb.DuckDBPyConnection, text: str, model: str,
             emb_col: str) -> tuple[Any, ...] | None:
        version = catalog_version(cur)
        if version is None:
            return None
        # the cursor itself: another cursor may be inside a transaction of its own
        return (id(cur), text, model.lower(), emb_col, db_stamp(self.cache.db_path),
                version)

    def get(self, cur: duckdb.DuckDBPyConnection, text: str, model: str,
            emb_col: str) -> Prepared | None:
        key = self._key(cur, text, model, emb_col)
        with self._lock:
            found = None if key is None else self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)  # type: ignore[arg-type]
            self.hits += 1
        assert key is not None
        return replace(found, stamp=key[4])

    def put(self, cur: duckdb.DuckDBPyConnection, text: str, model: str, emb_col: str,
            prepared: Prepared) -> None:
        key = self._key(cur, text, model, emb_col)
        if key is None:
            return
        with self._lock:
            self._items[key] = replace(prepared, cursor=cur)
            while len(self._items) > MEMO_MAX:
                self._items.popitem(last=False)

    def forget(self) -> None:
        with self._lock:
            self._items.clear()


def memo_of(ws: Any) -> SearchMemo | None:
    """The workspace's memo (created on first use), None without a vector cache."""
    cache = getattr(ws, "_vector_cache", None)
    if cache is None:
        return None
    memo = getattr(cache, "search_memo", None)
    if memo is None:
        memo = cache.search_memo = SearchMemo(cache)
    return memo


def hot_entry(cache: VectorCache, key: tuple[str, str], state: tuple[Any, ...] | None,
              status_sql: str | None, stamp: Stamp) -> ColumnVectors | None:
    """The cached vectors when the cache holds ``key`` for the database at write ``stamp``
    (the row count is checked by the caller), else None."""
    entry = cache.peek(key)
    if entry is None or entry.state is None or state is None:
        return None
    if entry.state[0] != stamp or entry.state[1] != state or entry.state[3] != status_sql:
        return None
    return entry


def hot_search(ctx: ExecContext, cache: VectorCache, plan: Any, emb_col: str,
               fresh: Freshness | None, ranked: Callable[[ColumnVectors], Ranked | None],
               stamp: Stamp) -> Found | None:
    """(rows, scores, note) from the cached vectors in one round trip (two with a WHERE
    clause), for a SEARCH the memo recognised at write ``stamp`` (see the module
    docstring); None when the snapshot path should answer instead."""
    table: TableRef = plan.table
    status_sql = None if fresh is None else fresh.status_sql()
    vecs = hot_entry(cache, (table.key, emb_col.lower()), table.column_state(emb_col),
                     status_sql, stamp)
    if vecs is None:
        return None
    assert vecs.state is not None
    done = ranked(vecs)
    if done is None:
        return None
    version = catalog_version(ctx.cur)
    rows = take_rows(vecs, done[0]) \
        if cached_rows(ctx, cache, table, vecs, emb_col, stamp, version) else None
    if rows is not None:  # the rows of the entry's own state: no count to check
        count: Any = vecs.state[2]
    else:
        count_sql = f"(SELECT count(*) FROM {table.sql})"
        rows, count = fetch_rows_and(ctx, table, vecs.rowids[done[0]], count_sql)
        if count is None:
            count = ctx.cur.execute(f"SELECT {count_sql}").fetchall()[0][0]
        if rows is not None:
            confirm_rows(ctx, vecs, rows, version)
    if rows is None or int(count) != vecs.state[2] or db_stamp(cache.db_path) != stamp:
        return None
    cache.hits += 1
    return rows, done[1], done[2]


#: up to this many rows are fetched by a literal id list, more through a registered table
LITERAL_IDS = 20_000
_EXTRA = "__pixql_extra"


def fetch_rows(ctx: ExecContext, table: TableRef, rowids: np.ndarray) -> pa.Table | None:
    """``SELECT *`` of the rows with ``rowids``, in that order (None if any is missing).

    DuckDB turns ``rowid IN (...)`` into a semi join that reads only the row groups
    holding those rows."""
    return _fetch(ctx, table, rowids, "")


def fetch_rows_and(ctx: ExecContext, table: TableRef, rowids: np.ndarray,
                   expr: str) -> tuple[pa.Table | None, Any]:
    """:func:`fetch_rows`, plus the value of the SQL expression ``expr`` in the same query
    (None when no row came back)."""
    got = _fetch(ctx, table, rowids, f'{expr} AS "{_EXTRA}", ')
    if got is None or got.num_rows == 0:
        return got, None
    value = got.column(_EXTRA)[0].as_py()
    return got.drop_columns([_EXTRA]), value


def _fetch(ctx: ExecContext, table: TableRef, rowids: np.ndarray,
           extra: str) -> pa.Table | None:
    select = f'SELECT {extra}rowid AS "__pixql_rowid", * FROM {table.sql} WHERE rowid'
    if len(rowids) <= LITERAL_IDS:
        # a list literal (= ANY) is planned as a semi join; an IN (1, 2, ...) literal is
        # not (a full scan: 460 ms instead of 3 ms for 10 of 1M rows)
        ids = ",".join(map(str, rowids.tolist()))
        got = to_arrow(ctx.cur.sql(f"{select} = ANY([{ids}]::BIGINT[])"))
    else:
        name = f"__pixql_rows_{next(_names)}"
        ctx.cur.register(name, pa.table({"rid": pa.array(rowids, type=pa.int64())}))
        try:
            got = to_arrow(ctx.cur.sql(f"{select} IN (SELECT rid FROM {quote_ident(name)})"))
        finally:
            ctx.cur.unregister(name)
    ids = got.column("__pixql_rowid").to_numpy()
    if len(ids) != len(rowids):
        return None
    perm = np.argsort(ids, kind="stable")
    at = np.searchsorted(ids, rowids, sorter=perm)
    take = perm[np.minimum(at, len(ids) - 1)] if len(ids) else at
    if len(ids) and not np.array_equal(ids[take], rowids):  # pragma: no cover - defensive
        return None
    return got.drop_columns(["__pixql_rowid"]).take(pa.array(take, type=pa.int64()))
