"""The stored rows beside a column's vector files: exactly the table's values, bit for bit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from pixql.index.exact import unit_rows
from pixql.index.raw_rows import RawRows, RawWriter, differing
from pixql.index.vector_files import map_units

if TYPE_CHECKING:
    from pathlib import Path

pytest.importorskip("faiss")


def test_differing_compares_bits_of_valid_rows() -> None:
    units = np.array([[1, 0], [0.6, 0.8], [0, 0], [0, 0], [0, 1]], np.float32)
    raw = np.array([[1, 0], [3, 4], [0, 0], [np.nan, 1], [-0.0, 1]], np.float32)
    valid = np.array([True, True, True, True, False])
    # a scaled row, a NaN row (unit row zeroed) differ; -0.0 differs from 0.0 only when valid
    assert differing(raw, units, valid).tolist() == [1, 3]
    valid[4] = True
    assert differing(raw, units, valid).tolist() == [1, 3, 4]


@pytest.mark.parametrize("permute", [False, True])
def test_take_gives_the_stored_rows(tmp_path: Path, permute: bool) -> None:
    rng = np.random.default_rng(0)
    n, d = 300, 8
    stored = rng.standard_normal((n, d)).astype(np.float32)
    stored[::3] = unit_rows(stored[::3])  # some rows already unit (mostly exact)
    stored[7] = np.eye(d, dtype=np.float32)[2]  # exactly unit
    valid = rng.random(n) > 0.1
    order = rng.permutation(n) if permute else None
    units = unit_rows(stored, valid)
    writer = RawWriter(tmp_path, d)
    for s in range(0, n, 64):  # written in scan order, block by block
        writer.write(s, stored[s : s + 64], units[s : s + 64], valid[s : s + 64])
    m = writer.finish(order)
    assert 0 < m < int(valid.sum())  # the exactly-unit rows are not copied
    cache_units, cache_stored, cache_valid = units, stored, valid
    if order is not None:  # the files' rows are in cache order
        cache_units, cache_stored, cache_valid = units[order], stored[order], valid[order]
    path = tmp_path / "u.f32"
    path.write_bytes(np.ascontiguousarray(cache_units).tobytes())
    rows = RawRows(map_units(path, n, d), np.load(tmp_path / "raw_pos.npy"),
                   np.load(tmp_path / "raw_row.npy"), map_units(tmp_path / "raw.f32", m, d))
    pick = np.flatnonzero(cache_valid)[::-1][:50]
    got = rows.take(pick)
    assert got.view(np.uint32).tolist() == cache_stored[pick].view(np.uint32).tolist()
    assert rows.take(np.zeros(0, np.int64)).shape == (0, d)


def test_a_column_of_unit_vectors_stores_almost_nothing(ws: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """One-hot rows normalise exactly: the files hold no second copy of them, and a
    recognised SEARCH still gives the table's values."""
    import pyarrow as pa

    from tests.conftest import draw_shape

    monkeypatch.setenv("PIXQL_COMPRESS_MIN_MB", "0")
    draw_shape("circle", size=12, seed=3).save(ws.root / "q.png")
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=4)")
    x = np.tile(np.eye(16, dtype=np.float32), (20, 1))
    x[::7] *= 3  # these are not unit rows
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 16)
    cur = ws.cursor()
    cur.register("src_rows", pa.table({"id": np.arange(len(x)), "e": emb}))
    cur.execute("CREATE TABLE t AS SELECT id, e::FLOAT[16] AS e FROM src_rows")
    cur.unregister("src_rows")
    ws.sql("CHECKPOINT")  # files tied to a WAL's state are remade after it is merged
    sql = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='q.png', "
           "emb_col='e', top_k=None) AS SELECT * FROM {}")
    ws.sql(sql.format("t"))
    got = ws.sql(sql.format("t")).table
    entry = next(iter(ws._vector_cache._entries.values()))
    assert entry.rows is not None
    assert "e" not in entry.rows.column_names
    assert len(entry.raw.pos) == len(range(0, len(x), 7))
    assert got.equals(ws.sql(sql.format("(SELECT * FROM t)")).table)
    ws.close()
    import pixql

    again = pixql.connect(ws.root, progress=False)
    try:
        again.sql(sql.format("t"))
        assert again._vector_cache.reused == 1  # the saved files, stored rows included
        assert again.sql(sql.format("t")).table.equals(got)
    finally:
        again.close()
