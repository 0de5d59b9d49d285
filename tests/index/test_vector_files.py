"""Vector files: the rows' content hash, read rather than mapped, and noted for later sessions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pytest

from pixql.index import vector_files
from pixql.index.exact import read_span

if TYPE_CHECKING:
    from pathlib import Path

D = 16


def _mapped(tmp_path: Path, x: np.ndarray) -> np.ndarray:
    x.tofile(tmp_path / vector_files.UNITS)
    return vector_files.map_units(tmp_path / vector_files.UNITS, len(x), x.shape[1])


def test_the_checksum_is_the_same_from_a_file_or_from_memory(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((1000, D)).astype(np.float32)
    units = _mapped(tmp_path, x)
    rowids, valid = np.arange(1000, dtype=np.int64), np.ones(1000, dtype=bool)
    valid[3] = False
    got = vector_files.content_checksum(units, rowids, valid)
    assert got == vector_files.content_checksum(x, rowids, valid)
    assert got != vector_files.content_checksum(x, rowids, np.ones(1000, dtype=bool))
    assert got != vector_files.content_checksum(x + 1, rowids, valid)
    assert bytes(read_span(units, 100, 5000)) == x.tobytes()[100:5000]
    assert bytes(read_span(x, 100, 5000)) == x.tobytes()[100:5000]


def test_a_noted_checksum_counts_only_for_the_state_the_sidecar_names(tmp_path: Path) -> None:
    (tmp_path / vector_files.SIDECAR).write_text(json.dumps({"state": [1, "a"]}))
    vector_files.note_checksum(tmp_path, [1, "a"], "abc")
    assert vector_files._noted_checksum(tmp_path, [1, "a"]) == "abc"
    assert vector_files._noted_checksum(tmp_path, [2, "a"]) is None  # files of another state
    (tmp_path / vector_files.CHECKSUM).write_text("{not json")
    assert vector_files._noted_checksum(tmp_path, [1, "a"]) is None


def _table(ws: Any, n: int = 6000) -> None:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, D)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, D)).astype(np.float32)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), D)
    cur = ws.cursor()
    cur.register("src_rows", pa.table({"id": np.arange(n), "e": emb}))
    cur.execute(f"CREATE TABLE t AS SELECT id, e::FLOAT[{D}] AS e FROM src_rows")
    cur.unregister("src_rows")
    ws.sql("CHECKPOINT")


def test_a_later_session_takes_the_noted_checksum_instead_of_hashing(
        ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first ANN search of a column kept in vector files hashes its rows once and
    notes the hash; a new session loads the saved index without reading the rows again."""
    import pixql
    from tests.conftest import draw_shape

    pytest.importorskip("faiss")
    monkeypatch.setenv("PIXQL_COMPRESS_MIN_MB", "0")
    draw_shape("circle", size=12, seed=3).save(ws.root / "q.png")
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=4)")
    _table(ws)
    sql = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='q.png', "
           "emb_col='e', top_k=5, index='ivf') AS SELECT * FROM t")
    first = ws.sql(sql)
    assert "approximate search: ivf" in first.message
    folder = ws.root / "indexes" / "main.t" / "e" / "vectors"
    noted = json.loads((folder / vector_files.CHECKSUM).read_text())
    entry = next(iter(ws._vector_cache._entries.values()))
    assert noted["checksum"] == entry.checksum()
    ws.close()

    def no_hashing(*_: Any) -> str:
        raise AssertionError("the rows were hashed again")

    monkeypatch.setattr(vector_files, "content_checksum", no_hashing)
    again = pixql.connect(ws.root, progress=False)
    try:
        got = again.sql(sql)
        assert "approximate search: ivf" in got.message
        assert got.table.equals(first.table)
        assert next(iter(again._vector_cache._entries.values())).indexes["ivf"].loaded
    finally:
        again.close()
