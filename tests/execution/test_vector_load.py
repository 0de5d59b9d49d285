"""Large columns are kept as 8-bit codes + memory-mapped fp32 files: SEARCH answers exactly
as the fp32 scan does, the files follow every write, and a new session reuses them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.execution.test_search_fast import _arrow, _insert, _vectors, search

pytest.importorskip("faiss")


@pytest.fixture
def big_ws(ws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``vec_ws``'s table (ties, a zero row, NULLs) with 3,000 rows, kept compressed."""
    from tests.conftest import draw_shape

    monkeypatch.setenv("PIXQL_COMPRESS_MIN_MB", "0")
    draw_shape("circle", size=12, seed=3).save(ws.root / "q.png")
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=4)")
    x, valid = _vectors(np.random.default_rng(0), 3000)
    x[100:400] = x[5] + np.random.default_rng(1).standard_normal((300, 16)) * 1e-6  # near-ties
    _insert(ws, _arrow(x, valid), "CREATE TABLE t AS SELECT id, grp, e::FLOAT[16] AS e "
                                  "FROM src_rows")
    return ws


def both(ws: Any, where: str = "", top_k: str = "10") -> tuple[Any, Any]:
    """(the compressed scan's answer, the fp32 scan's answer)."""
    codes = ws.sql(search(where, top_k)).table
    fp32 = ws.sql(search(where, top_k, extra=", scan='fp32'")).table
    return codes, fp32


def _entry(ws: Any) -> Any:
    return next(iter(ws._vector_cache._entries.values()))


@pytest.mark.parametrize("where", ["", "WHERE grp IN (1, 3)", "WHERE id % 5 = 0"])
@pytest.mark.parametrize("top_k", ["1", "10", "250"])
def test_codes_answer_like_fp32(big_ws: Any, where: str, top_k: str) -> None:
    got, want = both(big_ws, where, top_k)
    entry = _entry(big_ws)
    assert entry.codes is not None
    assert not entry.units.flags.writeable  # memory-mapped from the vector files
    assert entry.codes.stats.get("scans", 0) >= 1
    assert got.equals(want)  # rows, order, scores: bit for bit
    assert None not in got.column("e").to_pylist()  # NULL rows never ranked


def test_files_follow_writes(big_ws: Any) -> None:
    both(big_ws)
    first = _entry(big_ws)
    for change in ("INSERT INTO t SELECT id + 5000, grp, e FROM t WHERE id < 40",
                   "UPDATE t SET e = (SELECT e FROM t WHERE id = 2000) WHERE id < 30",
                   "DELETE FROM t WHERE grp = 1",
                   "UPDATE t SET e = NULL WHERE id BETWEEN 100 AND 150"):
        big_ws.sql(change)
        got, want = both(big_ws, top_k="40")
        assert got.equals(want)
        assert _entry(big_ws) is not first  # reloaded, codes rebuilt
        first = _entry(big_ws)
        ids = got.column("id").to_pylist()
        rows = dict(big_ws.sql("SELECT id, e IS NULL FROM t").fetchall())
        assert all(i in rows and not rows[i] for i in ids)


def test_a_new_session_reuses_the_files(big_ws: Any) -> None:
    import pixql

    big_ws.sql("CHECKPOINT")  # files tied to a WAL's state are remade after it is merged
    want = big_ws.sql(search(top_k="20")).table
    root = big_ws.root
    big_ws.close()
    again = pixql.connect(root, progress=False)
    try:
        got = again.sql(search(top_k="20")).table
        assert again._vector_cache.reused == 1  # read from the files, not from the table
        assert got.equals(want)
        again.sql("INSERT INTO t SELECT id + 9000, grp, e FROM t WHERE id < 5")
        again.sql(search(top_k="20"))
        assert again._vector_cache.reused == 1  # stale files are rewritten, not reused
    finally:
        again.close()


def test_stale_files_are_never_reused(big_ws: Any) -> None:
    """Files tied to another database state (here: made before a write in a session that
    did not search afterwards) are not trusted."""
    import pixql

    big_ws.sql("CHECKPOINT")
    big_ws.sql(search())
    big_ws.sql("UPDATE t SET e = (SELECT e FROM t WHERE id = 7) WHERE id = 2500")
    root = big_ws.root
    big_ws.close()
    again = pixql.connect(root, progress=False)
    try:
        got = again.sql(search(top_k="5", extra=", scan='auto'")).table
        assert again._vector_cache.reused == 0
        fp32 = again.sql(search(top_k="5", extra=", scan='fp32'")).table
        assert got.equals(fp32)
    finally:
        again.close()


def test_copy_removes_the_files(big_ws: Any) -> None:
    big_ws.sql(search())
    folder = big_ws.root / "indexes"
    assert any(folder.rglob("vectors.json"))
    big_ws.invalidate_vectors("t", None)
    assert not any(folder.rglob("vectors.json"))


def test_small_columns_stay_in_memory(big_ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXQL_COMPRESS_MIN_MB", "64")
    big_ws.sql(search())
    entry = _entry(big_ws)
    assert entry.codes is None
    assert entry.units.flags.writeable  # in memory


def test_bad_scan_option_is_refused(big_ws: Any) -> None:
    with pytest.raises(Exception, match="scan"):
        big_ws.sql(search(extra=", scan='int4'"))
