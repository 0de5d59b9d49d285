"""SEARCH by a stored row and in batches (a kNN join): numpy reference, near-duplicates,
single-search parity, errors."""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from pixql.errors import CatalogError, NotFoundError, OptionError, ProgrammingError
from tests.conftest import make_image_folder

DIM = 16  # Pixels with image_size=4


@pytest.fixture
def vec_ws(ws: Any) -> Any:
    """``t(id, grp, e FLOAT[16])``: 300 random rows, rows 10..14 copies of row 5, row 40
    NULL; model ``px`` (16 dims). ``e`` is not CONVERT's, so keys default to rowid."""
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=4)")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, DIM)).astype(np.float32)
    x[10:15] = x[5]
    valid = np.ones(300, dtype=bool)
    valid[40] = False
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM,
                                            mask=pa.array(~valid))
    cur = ws.cursor()
    cur.register("src_rows", pa.table({"id": np.arange(300), "grp": np.arange(300) % 4,
                                       "e": emb}))
    cur.execute("CREATE TABLE t AS SELECT id, grp, e::FLOAT[16] AS e FROM src_rows")
    cur.unregister("src_rows")
    return ws


def rows_search(opts: str, where: str = "", source: str = "t") -> str:
    return (f"SEARCH IMAGE USING px OPTIONS (search_by='row', emb_col='e', {opts}) "
            f"AS SELECT * FROM {source} {where}")


def reference(ws: Any, query_id: int, where: str = "", exclude_self: bool = True,
              top_k: int | None = None) -> list[tuple[int, float]]:
    """(id, float64 cosine) of the best rows for row ``query_id``, ties in row order."""
    got = dict(ws.sql("SELECT id, e FROM t").fetchall())
    allowed = [r[0] for r in ws.sql(f"SELECT id FROM t {where} ORDER BY rowid").fetchall()]
    q = np.asarray(got[query_id], dtype=np.float64)
    q /= np.linalg.norm(q)
    scored = []
    for ident in allowed:
        if got[ident] is None or (exclude_self and ident == query_id):
            continue
        v = np.asarray(got[ident], dtype=np.float64)
        scored.append((ident, float(v @ q / np.linalg.norm(v))))
    scored.sort(key=lambda p: -round(p[1], 5))  # stable: ties (copies) in row order
    return scored[:top_k]


def scored(got: pa.Table) -> list[tuple[int, float]]:
    return list(zip(got.column("id").to_pylist(), got.column("search_result").to_pylist(),
                    strict=True))


def check_against_reference(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1e-5)


def test_one_row_is_its_stored_embedding_and_excludes_itself(vec_ws: Any) -> None:
    got = vec_ws.sql(rows_search("search_input=7, key_col='id', top_k=20")).table
    assert got.column_names == ["id", "grp", "e", "search_result"]  # ThanoSQL's shape
    pairs = scored(got)
    check_against_reference(pairs, reference(vec_ws, 7, top_k=20))


def test_exclude_self_false_returns_the_row_first(vec_ws: Any) -> None:
    got = vec_ws.sql(rows_search("search_input=7, key_col='id', top_k=3, "
                                 "exclude_self=False")).table
    assert got.column("id")[0].as_py() == 7
    assert got.column("search_result")[0].as_py() == pytest.approx(1.0, abs=1e-6)


def test_self_join_equals_numpy_per_query(vec_ws: Any) -> None:
    where = "WHERE grp <> 2"
    got = vec_ws.sql(rows_search("key_col='id', top_k=6", where)).table
    assert got.column_names[:2] == ["search_query", "search_rank"]
    ids = [r[0] for r in vec_ws.sql(f"SELECT id FROM t {where} AND e IS NOT NULL "
                                    "ORDER BY rowid").fetchall()]
    assert sorted(set(got.column("search_query").to_pylist())) == sorted(ids)
    by_query: dict[int, list[tuple[int, float]]] = {}
    cols = ("search_query", "search_rank", "id", "search_result")
    for q, r, ident, s in zip(*(got.column(c).to_pylist() for c in cols), strict=True):
        by_query.setdefault(q, []).append((ident, s))
        assert r == len(by_query[q])  # ranks 1, 2, ... in order
    assert list(by_query) == ids  # queries in the AS query's row order
    for q in ids:
        check_against_reference(by_query[q], reference(vec_ws, q, where, top_k=6))


def test_batch_equals_single_searches_bit_for_bit(vec_ws: Any) -> None:
    keys = [7, 5, 123, 7]
    got = vec_ws.sql(rows_search(f"search_input={keys}, key_col='id', top_k=9")).table
    for i, key in enumerate(keys):
        one = vec_ws.sql(rows_search(f"search_input={key}, key_col='id', top_k=9")).table
        part = got.slice(9 * i, 9)
        assert part.column("search_query").to_pylist() == [key] * 9
        assert part.drop_columns(["search_query", "search_rank"]).equals(one)


def test_min_score_keeps_only_close_matches_ties_in_row_order(vec_ws: Any) -> None:
    got = vec_ws.sql(rows_search("search_input=5, key_col='id', top_k=None, "
                                 "min_score=0.9999")).table
    assert got.column("id").to_pylist() == [10, 11, 12, 13, 14]  # its five copies
    none = vec_ws.sql(rows_search("search_input=6, key_col='id', min_score=0.9999")).table
    assert none.num_rows == 0


def test_min_score_applies_to_file_searches_too(converted: Any) -> None:
    q = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input="
         "'shapes/cross/001.png', emb_col='convert_result', min_score={}) "
         "AS SELECT * FROM images")
    every = converted.sql(q.format(-1)).table.column("search_result").to_pylist()
    some = converted.sql(q.format(0.9)).table.column("search_result").to_pylist()
    assert some == [s for s in every if s >= 0.9]
    assert len(some) < len(every)


def test_rowid_keys_and_query_rows_outside_the_filter(vec_ws: Any) -> None:
    rowid = vec_ws.sql("SELECT rowid FROM t WHERE id = 7").fetchall()[0][0]
    got = vec_ws.sql(rows_search(f"search_input={rowid}, key_col='rowid', top_k=5",
                                 "WHERE grp = 0")).table  # id 7 has grp 3
    pairs = scored(got)
    check_against_reference(pairs, reference(vec_ws, 7, "WHERE grp = 0", top_k=5))


def test_inside_an_open_transaction_sees_its_changes(vec_ws: Any) -> None:
    q = rows_search("search_input=5, key_col='id', top_k=None, min_score=0.9999")
    vec_ws.sql("BEGIN; DELETE FROM t WHERE id = 10")
    inside = vec_ws.sql(q).table.column("id").to_pylist()
    vec_ws.sql("ROLLBACK")
    assert inside == [11, 12, 13, 14]
    assert vec_ws.sql(q).table.column("id").to_pylist() == [10, 11, 12, 13, 14]


# -- images: near-duplicates, file batches ----------------------------------------------
@pytest.fixture
def converted(image_ws: Any) -> Any:
    image_ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=8)")
    image_ws.sql("CONVERT USING px AS SELECT * FROM images")
    return image_ws


@pytest.fixture
def dup_ws(ws: Any) -> Any:
    """24 shapes plus three byte-identical copies under other names, converted by px."""
    root = ws.root
    make_image_folder(root / "shapes")
    for src, dst in (("circle/000.png", "circle/copy_a.png"), ("circle/000.png", "copy_b.png"),
                     ("cross/003.png", "square/copy_c.png")):
        shutil.copy(root / "shapes" / src, root / "shapes" / dst)
    ws.sql("COPY images OPTIONS (if_exists='replace') FROM 'shapes/'")
    ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=8)")
    ws.sql("CONVERT USING px AS SELECT * FROM images")
    return ws


def test_near_duplicates_with_a_self_join(dup_ws: Any) -> None:
    got = dup_ws.sql(
        "SELECT search_query, image_path FROM (SEARCH IMAGE USING px OPTIONS "
        "(search_by='row', emb_col='convert_result', min_score=0.999) "
        "AS SELECT * FROM images) WHERE search_query < image_path ORDER BY ALL").fetchall()
    assert got == [
        ("shapes/circle/000.png", "shapes/circle/copy_a.png"),
        ("shapes/circle/000.png", "shapes/copy_b.png"),
        ("shapes/circle/copy_a.png", "shapes/copy_b.png"),
        ("shapes/cross/003.png", "shapes/square/copy_c.png")]


def test_file_batch_equals_single_file_searches(converted: Any) -> None:
    files = ["shapes/cross/001.png", "shapes/circle/002.png"]
    for source in ("images WHERE label <> 'square'",
                   "(SELECT * FROM images WHERE label <> 'square')"):  # both paths
        q = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input={}, "
             "emb_col='convert_result', top_k=4) AS SELECT * FROM " + source)
        got = converted.sql(q.format(files)).table
        assert got.column("search_rank").to_pylist() == [1, 2, 3, 4] * 2
        for i, f in enumerate(files):
            one = converted.sql(q.format(repr(f))).table
            part = got.slice(4 * i, 4)
            assert part.column("search_query").to_pylist() == [f] * 4
            assert part.drop_columns(["search_query", "search_rank"]).equals(one)


def test_input_query_gives_a_column_of_inputs(converted: Any) -> None:
    got = converted.sql(
        "SELECT search_query, search_rank, image_path FROM (SEARCH IMAGE USING px OPTIONS "
        "(search_by='row', input_query='SELECT image_path FROM images WHERE filename = "
        "''001.png'' ORDER BY image_path', emb_col='convert_result', top_k=2) "
        "AS SELECT * FROM images)").fetchall()
    assert [g[0] for g in got[::2]] == ["shapes/circle/001.png", "shapes/cross/001.png",
                                        "shapes/square/001.png", "shapes/triangle/001.png"]
    assert all(q != path for q, _, path in got)  # exclude_self by default
    empty = converted.sql(
        "SEARCH IMAGE USING px OPTIONS (search_by='image', input_query='SELECT image_path "
        "FROM images WHERE false', emb_col='convert_result') AS SELECT * FROM images").table
    assert empty.num_rows == 0
    assert empty.column_names[:2] == ["search_query", "search_rank"]


# -- errors ---------------------------------------------------------------------------------
def search_sql(opts: str) -> str:
    return ("SEARCH IMAGE USING px OPTIONS (search_by='row', emb_col='convert_result', "
            f"{opts}) AS SELECT * FROM images")


def test_missing_and_ambiguous_keys(dup_ws: Any) -> None:
    with pytest.raises(NotFoundError, match=r"no row of images has image_path = 'nope\.png'"):
        dup_ws.sql(search_sql("search_input='nope.png'"))
    with pytest.raises(CatalogError, match=r"'000\.png' names 4 rows of images, not one"):
        dup_ws.sql(search_sql("search_input='000.png', key_col='filename'"))
    with pytest.raises(NotFoundError, match="key_col 'nope' is not a column of images"):
        dup_ws.sql(search_sql("search_input='x', key_col='nope'"))
    with pytest.raises(NotFoundError, match="no row of images has rowid 99999"):
        dup_ws.sql(search_sql("search_input=99999, key_col='rowid'"))


def test_a_row_without_a_current_embedding_is_refused(converted: Any) -> None:
    converted.sql("INSERT INTO images (image_path, filename, label) "
                  "VALUES ('shapes/cross/001.png', 'new.png', 'cross')")
    with pytest.raises(CatalogError,
                       match=r"no current embedding.*not embedded yet.*run CONVERT USING px"):
        converted.sql(search_sql("search_input='new.png', key_col='filename'"))
    converted.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=8, overwrite=True)")
    with pytest.raises(CatalogError, match=r"no current embedding.*stale"):
        converted.sql(search_sql("search_input='shapes/circle/001.png'"))


def test_self_join_leaves_out_rows_without_a_current_embedding(converted: Any) -> None:
    converted.sql("INSERT INTO images (image_path, filename, label) "
                  "VALUES ('shapes/cross/001.png', 'new.png', 'cross')")
    res = converted.sql("SEARCH IMAGE USING px OPTIONS (search_by='row', key_col='filename', "
                        "emb_col='convert_result', top_k=None) AS SELECT * FROM images")
    assert "left out 1 row(s) not embedded yet" in res.message
    queries = res.table.column("search_query").to_pylist()
    assert "new.png" not in queries
    assert "new.png" not in res.table.column("filename").to_pylist()
    assert len(queries) == 24 * 23  # every current row against every other one


def test_option_errors_name_the_option_and_its_position(converted: Any) -> None:
    cases = [
        ("search_by='image', search_input='shapes/cross/001.png', exclude_self=True",
         "exclude_self", "only applies to search_by='row'"),
        ("search_by='image', search_input=['a.png', 1]", "search_input", "a string"),
        ("search_by='image'", "search_input", "is required"),
        ("search_by='row', search_input=[]", "search_input", "empty"),
        ("search_by='row', search_input='a', input_query='SELECT 1'", "input_query",
         "not both"),
        ("search_by='row', min_score=2", "min_score", "less than or equal to 1"),
    ]
    for opts, key, message in cases:
        stmt = f"SEARCH IMAGE USING px\nOPTIONS (emb_col='convert_result', {opts})\n" \
               "AS SELECT * FROM images"
        with pytest.raises(OptionError, match=message) as err:
            converted.sql(stmt)
        assert err.value.option == key
        line = stmt.split("\n")[1]
        where = (2, line.index(key + "=") + 1) if key + "=" in line else (None, None)
        assert (err.value.line, err.value.col) == where


def test_row_search_needs_a_plain_table_query(converted: Any) -> None:
    with pytest.raises(ProgrammingError, match="needs the AS query to be SELECT \\* FROM"):
        converted.sql("SEARCH IMAGE USING px OPTIONS (search_by='row', search_input="
                      "'shapes/cross/001.png', emb_col='convert_result') AS SELECT * FROM "
                      "(SELECT * FROM images)")


def test_batch_output_columns_must_not_clash(converted: Any) -> None:
    with pytest.raises(ProgrammingError, match="column 'search_rank'"):
        converted.sql("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input="
                      "['shapes/cross/001.png'], emb_col='convert_result') AS SELECT *, 1 AS "
                      "search_rank FROM images")
