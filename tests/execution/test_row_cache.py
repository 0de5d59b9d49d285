"""Rows kept beside the cached vectors: used by a recognised SEARCH, never after a change."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from tests.execution.test_search_fast import general, search
from tests.execution.test_search_fast import vec_ws as vec_ws


@pytest.fixture(autouse=True, params=["memory", "files"])
def storage(request: Any, monkeypatch: Any) -> str:
    """Every test twice: the column's vectors in memory (the whole rows are kept), and in
    vector files (every column but ``e`` is kept; ``e`` comes from the files)."""
    if request.param == "files":
        pytest.importorskip("faiss")
        monkeypatch.setenv("PIXQL_COMPRESS_MIN_MB", "0")
    return str(request.param)


def _entry(ws: Any) -> Any:
    return ws._vector_cache.peek(("main.t", "e"))


def _hot(ws: Any, top_k: str = "9") -> Any:
    """The SEARCH until it is answered from kept rows; that answer."""
    ws.sql(search(top_k=top_k))
    out = ws.sql(search(top_k=top_k)).table
    entry = _entry(ws)
    assert entry.rows is not None
    assert ("e" in entry.rows.column_names) == (entry.raw is None)
    return out


def test_kept_rows_answer_like_the_general_path(vec_ws: Any) -> None:
    got = _hot(vec_ws)
    assert got.equals(general(vec_ws, top_k="9"))
    again = vec_ws.sql(search(top_k="None")).table  # every row, from the kept rows
    assert again.equals(general(vec_ws, top_k="None"))
    assert _entry(vec_ws).nbytes >= _entry(vec_ws).rows.nbytes


@pytest.mark.parametrize("change", [
    "UPDATE t SET grp = 99",  # not the vector column: same vectors, other rows
    "DELETE FROM t WHERE id % 2 = 0",
    "INSERT INTO t SELECT id + 1000, grp, e FROM t WHERE id < 50",
    "ALTER TABLE t ADD COLUMN extra INTEGER DEFAULT 1",
    "CREATE OR REPLACE TABLE t AS SELECT id, grp + 5 AS grp, e FROM t",
    "UPDATE t SET e = NULL WHERE id < 100",  # the vector column itself
    "UPDATE t SET e = [x * 2 FOR x IN e] WHERE id % 3 = 0",  # its stored values only
    # what CONVERT into another column commits: a new column, then its values
    "ALTER TABLE t ADD COLUMN e2 FLOAT[16]; UPDATE t SET e2 = e",
])
def test_committed_changes_are_seen(vec_ws: Any, change: str) -> None:
    _hot(vec_ws)
    vec_ws.cursor().cursor().execute(change)  # another cursor, committed
    got = vec_ws.sql(search(top_k="9")).table
    assert got.equals(general(vec_ws, top_k="9"))
    assert _hot(vec_ws).equals(general(vec_ws, top_k="9"))  # kept again, for the new state


def test_open_transaction_sees_its_own_changes(vec_ws: Any) -> None:
    _hot(vec_ws)
    cur = vec_ws.cursor()
    cur.execute("BEGIN TRANSACTION")
    try:
        cur.execute("UPDATE t SET grp = 42")  # uncommitted: only this cursor sees it
        inside = vec_ws.sql(search(top_k="9")).table
        assert set(inside.column("grp").to_pylist()) == {42}
    finally:
        cur.execute("ROLLBACK")
    after = vec_ws.sql(search(top_k="9")).table
    assert 42 not in after.column("grp").to_pylist()
    assert after.equals(general(vec_ws, top_k="9"))


@pytest.mark.parametrize("mb", ["0", "0.001"])
def test_rows_too_big_are_fetched(vec_ws: Any, monkeypatch: Any, mb: str) -> None:
    monkeypatch.setenv("PIXQL_ROW_CACHE_MB", mb)
    for _ in range(3):
        got = vec_ws.sql(search(top_k="9")).table
    assert _entry(vec_ws).rows is None
    assert _entry(vec_ws).rows_skipped
    assert got.equals(general(vec_ws, top_k="9"))


def test_a_commit_while_reading_keeps_nothing(vec_ws: Any, monkeypatch: Any) -> None:
    import pixql.execution.row_cache as row_cache

    monkeypatch.setattr(row_cache, "db_stamp", lambda path: (-1,))  # "changed meanwhile"
    for _ in range(3):
        got = vec_ws.sql(search(top_k="9")).table
    assert _entry(vec_ws).rows is None
    assert not _entry(vec_ws).rows_skipped
    assert got.equals(general(vec_ws, top_k="9"))


def test_a_setting_that_changes_arrow_types_is_noticed(vec_ws: Any) -> None:
    vec_ws.sql("ALTER TABLE t ADD COLUMN name VARCHAR DEFAULT 'x'")
    assert _hot(vec_ws).schema.field("name").type == pa.string()
    vec_ws.sql("SET arrow_large_buffer_size = true")
    for _ in range(3):
        got = vec_ws.sql(search(top_k="9")).table
        assert got.schema.field("name").type == pa.large_string()
    assert got.equals(general(vec_ws, top_k="9"))
    assert _entry(vec_ws).rows.schema.field("name").type == pa.large_string()  # read anew


def test_a_setting_that_changes_nothing_keeps_the_rows(vec_ws: Any) -> None:
    _hot(vec_ws)
    kept = _entry(vec_ws).rows
    vec_ws.sql("SET enable_progress_bar = false")
    for _ in range(3):
        got = vec_ws.sql(search(top_k="9")).table
    assert _entry(vec_ws).rows is kept
    assert _entry(vec_ws).rows_tag == (vec_ws.cursor(), vec_ws.cursor()._catalog_version())
    assert got.equals(general(vec_ws, top_k="9"))


def test_rows_scanned_out_of_order_are_put_in_row_id_order(vec_ws: Any,
                                                           monkeypatch: Any) -> None:
    import pixql.execution.row_cache as row_cache

    def reversed_scan(rel: Any, budget: int) -> pa.Table:
        got = rel.to_arrow_table()
        return got.take(pa.array(range(got.num_rows - 1, -1, -1), type=pa.int64()))

    monkeypatch.setattr(row_cache, "read_rows", reversed_scan)
    got = _hot(vec_ws)
    assert got.equals(general(vec_ws, top_k="9"))


def test_another_cursors_settings_are_its_own(vec_ws: Any) -> None:
    import threading

    vec_ws.sql("ALTER TABLE t ADD COLUMN name VARCHAR DEFAULT 'x'")
    _hot(vec_ws)  # kept for this thread's cursor
    seen: list[Any] = []

    def other() -> None:  # a new thread: its own cursor, with a setting of its own
        vec_ws.sql("SET SESSION arrow_large_buffer_size = true")
        seen.extend(vec_ws.sql(search(top_k="9")).table for _ in range(3))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert {s.schema.field("name").type for s in seen} == {pa.large_string()}
    for _ in range(3):
        mine = vec_ws.sql(search(top_k="9")).table
        assert mine.schema.field("name").type == pa.string()
    assert mine.equals(general(vec_ws, top_k="9"))


def test_take_matches_arrows_take_for_every_column_kind() -> None:
    """Integer and float columns without nulls go through numpy, the rest through Arrow:
    the result is Arrow's ``take``, value for value and type for type."""
    import datetime as dt
    import gc
    import weakref

    import numpy as np

    from pixql.execution import row_cache

    n = 50
    rows = pa.table({
        "id": pa.array(np.arange(n), pa.int64()),
        "small": pa.array(np.arange(n) % 7, pa.int8()),
        "f": pa.array(np.linspace(0, 1, n), pa.float32()),
        "nullable": pa.array([None if i % 5 == 0 else i for i in range(n)], pa.int32()),
        "path": pa.array([f"img/{i}.png" for i in range(n)]),
        "at": pa.array([dt.datetime(2026, 1, 1) + dt.timedelta(hours=i) for i in range(n)]),
        "chunked": pa.chunked_array([pa.array(range(20)), pa.array(range(20, n))]),
    })
    positions = np.array([7, 0, 49, 5, 5, 31])
    for _ in range(2):  # the second time with the numpy views worked out before
        got = pa.Table.from_arrays(row_cache._take(rows, positions), schema=rows.schema)
        assert got.equals(rows.take(pa.array(positions)))
    assert [v is not None for v in row_cache._views(rows)] == \
        [True, True, True, False, False, False, False]
    gone, key = weakref.ref(rows), id(rows)
    del rows, got
    gc.collect()
    assert gone() is None  # the views do not keep the table (or its buffers) alive
    assert key not in row_cache._plain_views
