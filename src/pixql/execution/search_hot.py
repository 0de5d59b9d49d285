"""SEARCH's hot path: a repeated SEARCH in two DuckDB round trips instead of nine.

A SEARCH on the fast path needs, besides its kernel, the AS query's table (resolved in
DuckDB's catalog), the model's and the column's catalog rows, a read snapshot, the row
count, and the winning rows. While nothing changes, the first three are the same every
time, so they are remembered (:class:`SearchMemo`), keyed by

* the AS query text, the model and ``emb_col``;
* the database's write stamp (:func:`~pixql.execution.vectors.db_stamp`: any commit, by any
  connection or process, changes it);
* DuckDB's catalog version of the connection (bumped by every statement that may change
  what a name binds to — DDL, ``SET``, ``USE``, ``BEGIN``/``ROLLBACK``, writes — in any
  cursor of the workspace's database, temporary objects included). Without that counter
  (another DuckDB build) nothing is remembered.

An entry is stored only after the fast path answered outside any open transaction, and
dropped when a hot SEARCH cannot answer, so it never carries a transaction's uncommitted
view. The hot SEARCH itself (:func:`hot_search`) skips the explicit read transaction:

1. ``SELECT txid_current(), count(*)`` — the row count guards the cached vectors;
2. the WHERE clause's row ids, when there is one;
3. the winning rows, with ``txid_current()`` again.

In autocommit mode every statement gets a new transaction id: two equal ids mean the
cursor is inside a transaction of its own, whose uncommitted changes the cache cannot see,
so the answer is thrown away and the general path answers. The write stamp is read again
at the end: a commit by anyone in between throws the answer away too (the snapshot path
answers instead), so the row ids, scores and rows always come from one committed state.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pixql.execution.context import quote_ident, to_arrow
from pixql.execution.vectors import db_stamp

if TYPE_CHECKING:
    from collections.abc import Callable

    import duckdb

    from pixql.catalog.store import ColumnRecord, ModelRecord
    from pixql.execution.context import ExecContext
    from pixql.execution.freshness import Freshness
    from pixql.execution.vectors import ColumnVectors, TableRef, VectorCache

_names = itertools.count()
#: :func:`hot_search`'s answer when the cursor is inside a transaction of its own
IN_TRANSACTION = "in transaction"
Ranked = tuple[np.ndarray, np.ndarray, str]
Found = tuple[pa.Table, np.ndarray, str]

#: remembered SEARCH shapes per workspace
MEMO_MAX = 256


@dataclass(frozen=True)
class Prepared:
    """What :func:`pixql.execution.search.run_search` looked up for one SEARCH shape."""

    plan: Any  # pixql.execution.search.QueryPlan
    rec: ModelRecord
    col: ColumnRecord | None


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
        return (text, model.lower(), emb_col, db_stamp(self.cache.db_path), version)

    def get(self, cur: duckdb.DuckDBPyConnection, text: str, model: str,
            emb_col: str) -> Prepared | None:
        key = self._key(cur, text, model, emb_col)
        with self._lock:
            found = None if key is None else self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)  # type: ignore[arg-type]
                self.hits += 1
            return found

    def put(self, cur: duckdb.DuckDBPyConnection, text: str, model: str, emb_col: str,
            prepared: Prepared) -> None:
        key = self._key(cur, text, model, emb_col)
        if key is None:
            return
        with self._lock:
            self._items[key] = prepared
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
              status_sql: str | None) -> tuple[ColumnVectors, tuple[int, ...]] | None:
    """(cached vectors, write stamp) when the cache holds ``key`` for the database as it is
    now (the row count is checked by the caller), else None."""
    entry = cache.peek(key)
    stamp = db_stamp(cache.db_path)
    if entry is None or entry.state is None or state is None:
        return None
    if entry.state[0] != stamp or entry.state[1] != state or entry.state[3] != status_sql:
        return None
    return entry, stamp


def hot_search(ctx: ExecContext, cache: VectorCache, plan: Any, emb_col: str,
               fresh: Freshness | None,
               ranked: Callable[[ColumnVectors], Ranked | None]) -> Found | str | None:
    """(rows, scores, note) from the cached vectors without a read transaction (see the
    module docstring); :data:`IN_TRANSACTION` when the cursor is inside its own transaction
    (the general path must answer); None when the snapshot path should answer instead."""
    table: TableRef = plan.table
    status_sql = None if fresh is None else fresh.status_sql()
    got = hot_entry(cache, (table.key, emb_col.lower()), table.column_state(emb_col),
                    status_sql)
    if got is None:
        return None
    vecs, stamp = got
    assert vecs.state is not None
    txid, count = ctx.cur.execute(
        f"SELECT txid_current(), (SELECT count(*) FROM {table.sql})").fetchall()[0]
    if int(count) != vecs.state[2]:
        return None
    done = ranked(vecs)
    if done is None:
        return None
    rows, txid_after = fetch_rows_txid(ctx, table, vecs.rowids[done[0]])
    if txid_after is None:
        txid_after = ctx.cur.execute("SELECT txid_current()").fetchall()[0][0]
    if txid_after == txid:
        return IN_TRANSACTION
    if rows is None or db_stamp(cache.db_path) != stamp:
        return None
    cache.hits += 1
    return rows, done[1], done[2]


#: up to this many rows are fetched by a literal id list, more through a registered table
LITERAL_IDS = 20_000
_TXID = "__pixql_txid"


def fetch_rows(ctx: ExecContext, table: TableRef, rowids: np.ndarray) -> pa.Table | None:
    """``SELECT *`` of the rows with ``rowids``, in that order (None if any is missing).

    DuckDB turns ``rowid IN (...)`` into a semi join that reads only the row groups
    holding those rows."""
    return _fetch(ctx, table, rowids, "")


def fetch_rows_txid(ctx: ExecContext, table: TableRef,
                    rowids: np.ndarray) -> tuple[pa.Table | None, Any]:
    """:func:`fetch_rows`, plus the transaction id the rows were read in (None when no
    row came back)."""
    got = _fetch(ctx, table, rowids, f'txid_current() AS "{_TXID}", ')
    if got is None or got.num_rows == 0:
        return got, None
    txid = got.column(0)[0].as_py()
    return got.drop_columns([_TXID]), txid


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
