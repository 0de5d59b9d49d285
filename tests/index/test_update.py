"""ANN indexes follow the data: updated by row id after inserts, deletes and changes;
rebuilt only when it pays."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pytest

from pixql.execution.vectors import ColumnVectors, TableRef
from pixql.index import ann, update
from pixql.index.exact import dot_scores, query_unit, rank, unit_rows
from tests.index.test_ann import clustered

if TYPE_CHECKING:
    from pathlib import Path

TABLE = TableRef("main", "t", ("id", "e"))


def make(x: np.ndarray, rowids: np.ndarray) -> ColumnVectors:
    valid = np.ones(len(x), dtype=bool)
    return ColumnVectors(unit_rows(x, valid), rowids.astype(np.int64), valid)


def recall(vecs: ColumnVectors, index: ann.AnnIndex, queries: np.ndarray) -> float:
    hits = 0
    for qv in queries:
        q = query_unit(qv)
        got = index.search(q, 10, None, 128)
        pos = np.flatnonzero(vecs.valid)
        want = pos[rank(dot_scores(vecs.units, q, pos), 10)]
        hits += len(set(got.tolist()) & set(want.tolist()))
    return hits / (10 * len(queries))


@pytest.fixture
def ws_root(tmp_path: Path) -> Any:
    return SimpleNamespace(root=tmp_path)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_inserts_deletes_and_changes_are_followed(ws_root: Any, kind: str) -> None:
    x = clustered(n=4000)
    old = make(x, np.arange(4000))
    built = ann.get_index(ws_root, TABLE, "e", old, kind)
    keep = np.ones(4000, dtype=bool)
    keep[100:300] = False  # deleted rows
    y = x[keep].copy()
    y[:50] = clustered(seed=9, n=50)  # changed vectors (rows 0-49 keep their ids)
    grown = np.vstack([y, clustered(seed=3, n=400)])  # inserted rows: new ids
    new = make(grown, np.concatenate([np.flatnonzero(keep), np.arange(5000, 5400)]))
    got = update.follow(built, old, new)
    assert got is not None
    assert got.updates == 1
    assert got.index is not built.index  # a copy: searches on the old one are undisturbed
    live = got.ids[got.ids >= 0]
    assert sorted(live.tolist()) == list(range(len(grown)))  # each row once, nothing dead
    assert got.dead == 200 + 50  # deleted + changed labels
    assert np.array_equal(got.rowids[got.ids >= 0], new.rowids[live])
    assert recall(new, got, clustered(seed=4, n=20)) >= 0.9
    for qv in grown[:50]:  # changed rows are found by their new vector
        assert (got.search(query_unit(qv), 50, None, 256) < len(grown)).all()


def test_many_deletes_make_a_rebuild_pay(ws_root: Any) -> None:
    x = clustered(n=3000)
    old = make(x, np.arange(3000))
    built = ann.get_index(ws_root, TABLE, "e", old, "hnsw")
    new = make(x[:1500], np.arange(1500))
    assert update.follow(built, old, new) is None


def test_ivf_outgrowing_its_centroids_is_rebuilt(ws_root: Any) -> None:
    x = clustered(n=8000)
    old = make(x[:1500], np.arange(1500))
    built = ann.get_index(ws_root, TABLE, "e", old, "ivf")
    assert update.follow(built, old, make(x[:3000], np.arange(3000))) is not None
    assert update.follow(built, old, make(x, np.arange(8000))) is None


def test_updated_index_is_saved_and_loaded_with_its_labels(ws_root: Any) -> None:
    x = clustered(n=3000)
    old = make(x, np.arange(3000))
    built = ann.get_index(ws_root, TABLE, "e", old, "hnsw")
    new = make(np.vstack([x[10:], clustered(seed=5, n=100)]),
               np.concatenate([np.arange(10, 3000), np.arange(4000, 4100)]))
    got = update.follow(built, old, new)
    assert got is not None
    new.indexes["hnsw"] = got
    assert ann.get_index(ws_root, TABLE, "e", new, "hnsw") is got
    assert got.saved
    again = ColumnVectors(new.units.copy(), new.rowids.copy(), new.valid.copy())  # new session
    loaded = ann.get_index(ws_root, TABLE, "e", again, "hnsw")
    assert loaded.loaded
    assert loaded.dead == 10
    assert np.array_equal(loaded.ids, got.ids)


def test_sql_insert_then_search_updates_the_index(ws: Any) -> None:
    from tests.conftest import draw_shape

    draw_shape("circle", size=12, seed=3).save(ws.root / "q.png")  # type: ignore[attr-defined]
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=4)")
    x = clustered(n=6000)
    cur = ws.cursor()
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 16)
    cur.register("src", pa.table({"id": np.arange(6000), "e": emb}))
    cur.execute("CREATE TABLE t AS SELECT id, e::FLOAT[16] AS e FROM src WHERE id < 5000")
    sql = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='q.png', "
           "emb_col='e', top_k=10, index='hnsw') AS SELECT * FROM t")
    first = ws.sql(sql)
    assert "approximate" in first.message
    cur.execute("INSERT INTO t SELECT id, e::FLOAT[16] FROM src WHERE id >= 5000")
    cur.execute("DELETE FROM t WHERE id < 100")
    cur.unregister("src")
    second = ws.sql(sql)
    assert "approximate" in second.message
    entry = next(iter(ws._vector_cache._entries.values()))
    index = entry.indexes["hnsw"]
    assert index.updates == 1
    assert index.dead == 100
    assert int(np.count_nonzero(index.ids >= 0)) == 5900
    assert not set(second.df()["id"]) & set(range(100))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_an_index_over_codes_is_mapped_from_its_file_and_still_follows_updates(
        ws_root: Any, kind: str) -> None:
    """An 8-bit index loaded by a later session views its file (memory-mapped); an update
    makes a copy that owns its data, and the mapped one is never changed."""
    from pixql.index import compressed_build

    def coded(x: np.ndarray, rowids: np.ndarray) -> ColumnVectors:
        vecs = make(x, rowids)
        vecs.codes = compressed_build.build(lambda s, e: vecs.units[s:e], len(x), x.shape[1],
                                      vecs.valid)
        return vecs

    x = clustered(n=6000)
    ann.get_index(ws_root, TABLE, "e", coded(x, np.arange(6000)), kind)  # built and saved
    old = coded(x, np.arange(6000))  # a new session: loaded, mapped
    loaded = ann.get_index(ws_root, TABLE, "e", old, kind)
    assert loaded.loaded
    assert loaded.mapped
    before = loaded.index.ntotal
    new = coded(np.vstack([x[10:], clustered(seed=5, n=100)]),
                np.concatenate([np.arange(10, 6000), np.arange(7000, 7100)]))
    got = update.follow(loaded, old, new)
    assert got is not None
    assert not got.mapped
    assert got.index.ntotal == before + 100
    assert loaded.index.ntotal == before
    assert recall(new, got, clustered(seed=9, n=20)) >= 0.9
