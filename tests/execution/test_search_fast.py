"""SEARCH's cached fast path: same answers as the general path, never stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import draw_shape

DIM = 16  # Pixels with image_size=4


def _vectors(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random vectors with exact duplicates (ties), a zero row and NULLs."""
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    x[10:20] = x[5]  # ten exact copies of row 5: a tie
    x[30] = 0.0
    valid = np.ones(n, dtype=bool)
    valid[[3, 40, 41, n - 1]] = False
    return x, valid


def _arrow(x: np.ndarray, valid: np.ndarray, start: int = 0) -> pa.Table:
    n = len(x)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM,
                                            mask=pa.array(~valid))
    return pa.table({"id": np.arange(start, start + n), "grp": (np.arange(n) % 7),
                     "e": emb})


def _insert(ws: Any, table: pa.Table, sql: str) -> None:
    cur = ws.cursor()
    cur.register("src_rows", table)
    try:
        cur.execute(sql)
    finally:
        cur.unregister("src_rows")


@pytest.fixture
def vec_ws(ws: Any) -> Any:
    """Table ``t(id, grp, e FLOAT[16])`` with 400 random rows, model ``px`` (16 dims) and a
    query image ``q.png``."""
    draw_shape("circle", size=12, seed=3).save(ws.root / "q.png")  # type: ignore[attr-defined]
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=4)")
    x, valid = _vectors(np.random.default_rng(0), 400)
    _insert(ws, _arrow(x, valid), "CREATE TABLE t AS SELECT id, grp, e::FLOAT[16] AS e "
                                  "FROM src_rows")
    return ws


def search(where: str = "", top_k: str = "None", source: str = "t", extra: str = "") -> str:
    return (f"SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='q.png', "
            f"emb_col='e', top_k={top_k}{extra}) AS SELECT * FROM {source} {where}")


def general(ws: Any, where: str = "", top_k: str = "None") -> pa.Table:
    """The same search through the general path (a derived table is not a base table)."""
    loads = ws._vector_cache.loads, ws._vector_cache.hits
    out = ws.sql(search(top_k=top_k, source=f"(SELECT * FROM t {where})")).table
    assert (ws._vector_cache.loads, ws._vector_cache.hits) == loads
    return out


def fast(ws: Any, where: str = "", top_k: str = "None", extra: str = "") -> pa.Table:
    """The search through the fast path (asserting that the cache answered)."""
    before = ws._vector_cache.loads + ws._vector_cache.hits
    out = ws.sql(search(where, top_k, extra=extra)).table
    assert ws._vector_cache.loads + ws._vector_cache.hits == before + 1
    return out


def reference(ws: Any, where: str = "") -> list[int]:
    """ids ranked by float64 cosine in numpy (ties by row order), NULL rows left out."""
    scores = reference_scores(ws, where)
    return sorted(scores, key=lambda ident: -scores[ident])  # stable: ties in row order


def reference_scores(ws: Any, where: str = "") -> dict[int, float]:
    """id → float64 cosine with the query image, computed in numpy (NULL rows left out)."""
    rows = ws.sql(f"SELECT id, e FROM t {where}").fetchall()
    q = ws.load_embedder("px").embed([_query_image(ws)], "image")[0].astype(np.float64)
    scored: dict[int, float] = {}
    for ident, e in rows:
        if e is None:
            continue
        v = np.asarray(e, dtype=np.float64)
        norm = np.linalg.norm(v)
        scored[ident] = float(v @ q / norm / np.linalg.norm(q)) if norm else 0.0
    return scored


def _query_image(ws: Any) -> Any:
    from PIL import Image

    return Image.open(Path(ws.root) / "q.png")


@pytest.mark.parametrize("where", ["", "WHERE grp IN (1, 3)", "WHERE id % 5 = 0 AND id > 50",
                                   "WHERE e IS NOT NULL AND grp <> 2", "WHERE id < 0"])
@pytest.mark.parametrize("top_k", ["None", "1", "7", "1000"])
def test_fast_path_equals_general_path(vec_ws: Any, where: str, top_k: str) -> None:
    got = fast(vec_ws, where, top_k)
    want = general(vec_ws, where, top_k)
    assert got.equals(want)  # same columns, rows, order and scores (bit for bit)


def test_ranking_matches_numpy_reference_ties_in_row_order(vec_ws: Any) -> None:
    got = fast(vec_ws).column("id").to_pylist()
    ref = reference(vec_ws)
    assert sorted(got) == sorted(ref)
    assert len(got) == 396
    ties = [i for i in got if i == 5 or 10 <= i < 20]
    assert ties == [5, *list(range(10, 20))]
    scores = fast(vec_ws).column("search_result").to_numpy()
    assert (np.diff(scores) <= 0).all()
    # the float64 order, up to float32 rounding (near-ties may swap: no exact order asserted)
    exact = reference_scores(vec_ws)
    assert (np.diff([exact[i] for i in got]) <= 1e-6).all()


def test_result_col_replaces_existing_column_and_legacy_spelling(vec_ws: Any) -> None:
    vec_ws.sql("ALTER TABLE t ADD COLUMN search_result INTEGER DEFAULT 7")
    got = fast(vec_ws, top_k="3")
    assert got.column_names == ["id", "grp", "e", "search_result"]
    assert got.column("search_result").type == pa.float64()
    assert got.equals(general(vec_ws, top_k="3"))


@pytest.mark.parametrize("change", [
    "UPDATE t SET e = (SELECT e FROM t WHERE id = 398) WHERE id = 100",
    "UPDATE t SET e = NULL WHERE id IN (SELECT id FROM t WHERE e IS NOT NULL LIMIT 50)",
    "DELETE FROM t WHERE grp = 1",
    "INSERT INTO t SELECT id + 1000, grp, e FROM t WHERE id < 30",
    "ALTER TABLE t ALTER e TYPE FLOAT[16] USING list_reverse(e)::FLOAT[16]",
    "UPDATE t SET grp = 9 WHERE id < 200",
    "CREATE OR REPLACE TABLE t AS SELECT id, grp, list_reverse(e)::FLOAT[16] AS e FROM t",
    "ALTER TABLE t DROP COLUMN e; ALTER TABLE t ADD COLUMN e FLOAT[16]",
])
def test_passthrough_writes_never_leave_a_stale_cache(vec_ws: Any, change: str) -> None:
    before = fast(vec_ws)
    vec_ws.sql(change)
    after = vec_ws.sql(search()).table
    assert not after.equals(before)  # the change is visible in the full ranking ...
    assert after.equals(general(vec_ws))  # ... and the cache reflects it


def test_writes_through_a_raw_cursor_and_checkpoint_compaction(vec_ws: Any) -> None:
    fast(vec_ws, top_k="10")
    cur = vec_ws.cursor()
    # delete the last rows, insert as many new ones, checkpoint: row ids are reused
    cur.execute("DELETE FROM t WHERE id >= 300")
    x, valid = _vectors(np.random.default_rng(9), 100)
    _insert(vec_ws, _arrow(x, valid, start=5000), "INSERT INTO t SELECT * FROM src_rows")
    cur.execute("CHECKPOINT")
    assert fast(vec_ws, top_k="10").equals(general(vec_ws, top_k="10"))
    assert fast(vec_ws, "WHERE id >= 5000", "10").equals(general(vec_ws, "WHERE id >= 5000",
                                                                  "10"))


def test_cache_is_reused_until_a_write(vec_ws: Any) -> None:
    cache = vec_ws._vector_cache
    fast(vec_ws, top_k="5")
    fast(vec_ws, "WHERE grp = 2", "5")
    vec_ws.sql("SELECT count(*) FROM t")  # reads do not invalidate
    fast(vec_ws, top_k="5")
    assert (cache.loads, cache.hits) == (1, 2)
    vec_ws.sql("CREATE TABLE other AS SELECT 1 AS x")  # any commit is conservative
    fast(vec_ws, top_k="5")
    assert cache.loads == 2


def test_inside_a_user_transaction_the_general_path_sees_uncommitted_rows(vec_ws: Any) -> None:
    fast(vec_ws, top_k="3")
    cur = vec_ws.cursor()
    cur.execute("BEGIN")
    cur.execute("UPDATE t SET e = NULL")
    assert len(vec_ws.sql(search(top_k="3"))) == 0
    cur.execute("ROLLBACK")
    assert fast(vec_ws, top_k="3").equals(general(vec_ws, top_k="3"))


def test_convert_and_copy_invalidate_and_table_drop_recreate(image_ws: Any) -> None:
    ws = image_ws
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=8) AS SELECT * FROM images")
    ws.sql("CONVERT USING px AS SELECT * FROM images")
    q = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input="
         "'shapes/circle/002.png', emb_col='convert_result', top_k=None) AS SELECT * FROM images")
    first = ws.sql(q).table
    assert len(first) == 24
    assert ws._vector_cache.nbytes > 0
    ws.sql("COPY images OPTIONS (if_exists='append') FROM 'shapes/'")
    assert ws._vector_cache.nbytes == 0  # dropped eagerly by COPY
    assert len(ws.sql(q)) == 24  # appended rows have NULL embeddings
    ws.sql("CONVERT USING px AS SELECT * FROM images")
    assert len(ws.sql(q)) == 48
    ws.sql("DROP TABLE images")
    ws.sql("COPY images OPTIONS (if_exists='replace') FROM 'shapes/'")
    ws.sql("CONVERT USING px AS SELECT * FROM images WHERE label = 'cross'")
    again = ws.sql(q).table
    assert set(again.column("label").to_pylist()) == {"cross"}
    assert len(again) == 6


def test_queries_the_fast_path_does_not_take(vec_ws: Any) -> None:
    cache = vec_ws._vector_cache
    for source in ["t ORDER BY id DESC", "t LIMIT 50", "(SELECT * FROM t) s",
                   "t JOIN (SELECT 1 AS one) o ON true"]:
        before = cache.loads + cache.hits
        out = vec_ws.sql(search(top_k="5", source=source))
        assert len(out) == 5
        assert cache.loads + cache.hits == before


def test_concurrent_searches_share_one_load(vec_ws: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    want = general(vec_ws, "WHERE grp = 4", "9")
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: vec_ws.sql(search("WHERE grp = 4", "9")).table, range(8)))
    assert all(g.equals(want) for g in got)
    assert vec_ws._vector_cache.loads == 1


def test_a_repeated_query_text_still_resolves_its_table(vec_ws: Any) -> None:
    """The parsed shape of a query is remembered by its text; the table it names is not:
    a temporary view created later under the same name must be searched instead."""
    fast(vec_ws, "WHERE grp = 1", "5")
    cur = vec_ws.cursor()
    cur.execute("CREATE TABLE flipped AS SELECT id, grp, list_reverse(e)::FLOAT[16] AS e "
                "FROM t")
    cur.execute("CREATE TEMP VIEW t AS SELECT * FROM flipped")
    cache = vec_ws._vector_cache
    before = cache.loads + cache.hits
    got = vec_ws.sql(search("WHERE grp = 1", "5")).table
    assert cache.loads + cache.hits == before  # the view is not the cached base table
    assert got.equals(vec_ws.sql(search(top_k="5", source="(SELECT * FROM t WHERE grp = 1)"))
                      .table)
    cur.execute("DROP VIEW t")
    assert fast(vec_ws, "WHERE grp = 1", "5").equals(general(vec_ws, "WHERE grp = 1", "5"))
