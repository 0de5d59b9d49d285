"""CONVERT and SEARCH IMAGE semantics with the Pixels model on generated images."""

from __future__ import annotations

import numpy as np
import pytest

from pixql.errors import CatalogError, ImageError, ModelError, NotFoundError

BUILD = "BUILD MODEL px USING Pixels OPTIONS (image_size=12) AS SELECT * FROM images"
CONVERT = ("CONVERT USING px OPTIONS (image_col='image_path', result_col='convert_result') "
           "AS SELECT * FROM images")
QUERY_IMG = "shapes/circle/002.png"


def search(top_k: str = "", where: str = "", model: str = "px", col: str = "convert_result",
           by: str = "image", inp: str = QUERY_IMG) -> str:
    extra = f", top_k={top_k}" if top_k else ""
    return (f"SEARCH IMAGE USING {model} OPTIONS (search_by='{by}', search_input='{inp}', "
            f"emb_col='{col}', result_col='search_result'{extra}) "
            f"AS SELECT * FROM images {where}")


@pytest.fixture
def converted(image_ws):
    image_ws.sql(BUILD)
    image_ws.sql(CONVERT)
    return image_ws


def test_convert_stores_float_array_column_and_returns_whole_table(image_ws):
    image_ws.sql(BUILD)
    res = image_ws.sql(CONVERT)
    assert res.columns == ["image_path", "filename", "label", "convert_result"]
    assert len(res) == 24
    typ = image_ws.sql("SELECT typeof(convert_result) FROM images LIMIT 1").fetchone()[0]
    assert typ == "FLOAT[144]"
    vecs = np.stack(image_ws.sql("SELECT convert_result FROM images").df()["convert_result"])
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_convert_records_provenance_in_catalog(converted):
    row = converted.sql(
        "SELECT table_name, column_name, model_name, model_version, dim, metric "
        "FROM pixql_catalog.embedding_columns").fetchall()
    version = converted.sql("SELECT version FROM (LIST MODEL) WHERE name='px'").fetchone()[0]
    assert row == [("images", "convert_result", "px", version, 144, "cosine")]


def test_convert_with_where_only_fills_matching_rows(image_ws):
    image_ws.sql(BUILD)
    image_ws.sql("CONVERT USING px AS SELECT * FROM images WHERE label = 'cross'")
    counts = image_ws.sql(
        "SELECT label, count(convert_result) FROM images GROUP BY label ORDER BY label"
    ).fetchall()
    assert counts == [("circle", 0), ("cross", 6), ("square", 0), ("triangle", 0)]


def test_search_returns_all_columns_plus_score_last_descending(converted):
    res = converted.sql(search())
    assert res.columns == ["image_path", "filename", "label", "convert_result", "search_result"]
    df = res.df()
    assert len(df) == 24  # top_k default 1000 > rows
    assert df["image_path"][0] == QUERY_IMG  # the query item is not excluded
    assert df["search_result"][0] == pytest.approx(1.0, abs=1e-5)
    assert list(df["search_result"]) == sorted(df["search_result"], reverse=True)
    assert df.groupby("label")["search_result"].mean().idxmax() == "circle"


def test_search_top_k_and_none(converted):
    assert len(converted.sql(search(top_k="3"))) == 3
    assert len(converted.sql(search(top_k="None"))) == 24


def test_search_as_subquery_with_filter_and_join(converted):
    res = converted.sql(
        "SELECT image_path, search_result FROM (" + search() + ") WHERE label = 'square'")
    assert res.columns == ["image_path", "search_result"]
    assert len(res) == 6
    joined = converted.sql(
        "SELECT i.filename, s.search_result FROM images i JOIN (" + search(top_k="2") +
        ") s USING (image_path) ORDER BY s.search_result DESC")
    assert len(joined) == 2
    assert joined.fetchone()[1] == pytest.approx(1.0, abs=1e-5)


def test_where_in_as_query_still_fills_top_k(converted):
    res = converted.sql(search(top_k="5", where="WHERE label = 'triangle'")).df()
    assert len(res) == 5
    assert (res["label"] == "triangle").all()


def test_ties_keep_query_row_order(converted):
    converted.sql("CREATE TABLE dup AS SELECT * FROM images, range(3) r(rep) ORDER BY rep")
    res = converted.sql(search(top_k="3").replace("FROM images", "FROM dup")).df()
    assert list(res["rep"]) == [0, 1, 2]  # identical vectors: row order decides
    assert res["search_result"].nunique() == 1


def test_print_image_nested_in_reference_shape(converted):
    res = converted.sql("PRINT IMAGE AS ( SELECT image_path, search_result FROM ( "
                        + search(top_k="4") + "))")
    assert res.columns == ["image_path", "search_result"]
    assert next(p.name for p in res.images) == "002.png"
    assert all(p.is_absolute() and p.is_file() for p in res.images)


def test_search_with_other_model_is_rejected(converted):
    converted.sql("BUILD MODEL px2 USING Pixels OPTIONS (image_size=12) AS SELECT * FROM images")
    with pytest.raises(CatalogError, match="embeddings of model 'px'"):
        converted.sql(search(model="px2"))


def test_search_after_rebuild_requires_reconvert(converted):
    converted.sql(BUILD.replace("image_size=12", "image_size=12, overwrite=True"))
    with pytest.raises(CatalogError, match="re-run CONVERT"):
        converted.sql(search())
    converted.sql(CONVERT)
    assert len(converted.sql(search(top_k="1"))) == 1


def test_missing_emb_col_and_text_search_with_image_model(converted):
    with pytest.raises(NotFoundError, match="emb_col 'nope'"):
        converted.sql(search(col="nope"))
    with pytest.raises(ModelError, match="cannot embed text"):
        converted.sql(search(by="text", inp="a circle"))


def test_missing_image_fails_convert_and_changes_nothing(converted):
    before = converted.sql("SELECT image_path, convert_result FROM images ORDER BY 1").fetchall()
    converted.sql("INSERT INTO images VALUES ('shapes/missing.png', 'missing.png', 'circle', NULL)")
    with pytest.raises(ImageError, match=r"missing\.png"):
        converted.sql(CONVERT)
    after = converted.sql("SELECT image_path, convert_result FROM images "
                          "WHERE filename <> 'missing.png' ORDER BY 1").fetchall()
    assert after == before


def test_on_error_null_stores_null_and_null_rows_are_never_ranked(converted):
    (converted.root / "shapes" / "bad.png").write_bytes(b"not an image")
    converted.sql("INSERT INTO images VALUES ('shapes/bad.png', 'bad.png', 'circle', NULL)")
    converted.sql(CONVERT.replace("result_col='convert_result'",
                                  "result_col='convert_result', on_error='null'"))
    nulls = converted.sql("SELECT filename FROM images WHERE convert_result IS NULL").fetchall()
    assert nulls == [("bad.png",)]
    res = converted.sql(search(top_k="None")).df()
    assert len(res) == 24
    assert "bad.png" not in set(res["filename"])


def test_convert_over_join_returns_but_does_not_store(converted):
    res = converted.sql("CONVERT USING px OPTIONS (result_col='v2') AS "
                        "SELECT a.image_path FROM images a JOIN images b USING (image_path)")
    assert res.columns == ["image_path", "v2"]
    assert "not stored" in res.message
    cols = converted.sql("SELECT column_name FROM duckdb_columns() WHERE table_name='images'")
    assert ("v2",) not in cols.fetchall()


def test_search_input_absolute_path(converted):
    absolute = str(converted.root / QUERY_IMG)
    res = converted.sql(search(top_k="1", inp=absolute)).fetchone()
    assert res[0] == QUERY_IMG


def test_writes_join_a_transaction_the_user_opened(converted):
    converted.sql("BEGIN")
    converted.sql("CONVERT USING px OPTIONS (result_col='v_tx') AS SELECT * FROM images")
    converted.sql("ROLLBACK")
    cols = converted.sql("SELECT column_name FROM duckdb_columns() WHERE table_name='images'")
    assert ("v_tx",) not in cols.fetchall()
    converted.sql("BEGIN; CONVERT USING px OPTIONS (result_col='v_tx') AS SELECT * FROM images;"
                  "COMMIT")
    assert converted.sql("SELECT count(v_tx) FROM images").fetchone() == (24,)


def test_failed_statement_around_nested_convert_changes_nothing(converted):
    with pytest.raises(Exception, match="no_such_column"):
        converted.sql("SELECT * FROM (CONVERT USING px OPTIONS (result_col='v2') AS "
                      "SELECT * FROM images) WHERE no_such_column")
    cols = converted.sql("SELECT column_name FROM duckdb_columns() WHERE table_name='images'")
    assert ("v2",) not in cols.fetchall()
    assert converted.sql("SELECT count(*) FROM pixql_catalog.embedding_columns "
                         "WHERE column_name = 'v2'").fetchone() == (0,)
