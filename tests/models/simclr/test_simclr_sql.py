"""SimCLR through SQL: BUILD / CONVERT / SEARCH on generated images, overwrite rules."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pixql.errors import CatalogError, ConflictError, ImageError, OptionError

BUILD = ("BUILD MODEL shapes_model USING SimCLR OPTIONS (max_epochs=1, batch_size=12{extra}) "
         "AS SELECT * FROM images")
SEARCH = ("SEARCH IMAGE USING shapes_model OPTIONS (search_by='image', "
          "search_input='shapes/circle/000.png', emb_col='convert_result', top_k={k}) "
          "AS SELECT * FROM images")


def test_thanosql_tutorial_statements_run_verbatim(image_ws: Any) -> None:
    image_ws.sql("BUILD MODEL my_image_search_model USING SimCLR "
                 "OPTIONS (image_col='image_path', max_epochs=1, overwrite=True) "
                 "AS SELECT * FROM images")
    converted = image_ws.sql("CONVERT USING my_image_search_model "
                             "OPTIONS (image_col='image_path', result_col='convert_result') "
                             "AS SELECT * FROM images").df()
    assert list(converted.columns) == ["image_path", "filename", "label", "convert_result"]
    assert len(converted) == 24
    assert len(converted["convert_result"][0]) == 128
    found = image_ws.sql(
        "SEARCH IMAGE USING my_image_search_model OPTIONS (search_by='image', "
        "search_input='shapes/square/002.png', emb_col='convert_result', "
        "result_col='search_result') AS SELECT * FROM images").df()
    assert len(found) == 24
    assert found.columns[-1] == "search_result"
    assert found["image_path"][0] == "shapes/square/002.png"
    assert found["search_result"][0] == pytest.approx(1.0, abs=1e-5)
    assert list(found["search_result"]) == sorted(found["search_result"], reverse=True)


def test_build_reports_a_summary_and_search_ranks(image_ws: Any) -> None:
    summary = image_ws.sql(BUILD.format(extra=", seed=4")).df().iloc[0]
    assert summary["kind"] == "SimCLR"
    assert summary["dim"] == 128
    assert summary["epochs"] == 1
    assert summary["images"] == 24
    assert not summary["stopped_by_time_budget"]
    image_ws.sql("CONVERT USING shapes_model AS SELECT * FROM images")
    top = image_ws.sql(SEARCH.format(k=5)).df()
    assert len(top) == 5
    assert top["filename"][0] == "000.png"
    assert top["label"][0] == "circle"
    vecs = np.stack(image_ws.sql("SELECT convert_result FROM images").df()["convert_result"])
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_time_budget_is_recorded(image_ws: Any) -> None:
    row = image_ws.sql("BUILD MODEL quick USING SimCLR OPTIONS (max_epochs=100, batch_size=8, "
                       "time_budget=0.001) AS SELECT * FROM images").df().iloc[0]
    assert bool(row["stopped_by_time_budget"])
    assert row["epochs"] == 1
    assert row["steps"] == 1


def test_overwrite_rules(image_ws: Any) -> None:
    image_ws.sql(BUILD.format(extra=""))
    image_ws.sql("CONVERT USING shapes_model AS SELECT * FROM images")
    with pytest.raises(ConflictError, match="overwrite=True"):
        image_ws.sql(BUILD.format(extra=""))
    # a failing rebuild leaves the old model in place
    image_ws.sql("CREATE TABLE broken AS SELECT image_path, filename, label FROM images "
                 "UNION ALL "
                 "SELECT 'shapes/missing.png', 'missing.png', 'circle'")
    with pytest.raises(ImageError, match=r"missing\.png"):
        image_ws.sql(BUILD.format(extra=", overwrite=True").replace("FROM images", "FROM broken"))
    assert len(image_ws.sql(SEARCH.format(k=3)).df()) == 3
    version = image_ws.sql(BUILD.format(extra=", overwrite=True")).df()["version"][0]
    assert version >= 2
    with pytest.raises(CatalogError, match="re-run CONVERT"):
        image_ws.sql(SEARCH.format(k=3))
    image_ws.sql("CONVERT USING shapes_model AS SELECT * FROM images")
    assert image_ws.sql(SEARCH.format(k=3)).df()["search_result"][0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("options", "fragment"), [
    ("max_epoch=1", "unknown option 'max_epoch'"),
    ("max_epochs='many'", "max_epochs"),
    ("batch_size=1", "batch_size"),
    ("temperature=0", "temperature"),
])
def test_bad_options_are_option_errors(image_ws: Any, options: str, fragment: str) -> None:
    with pytest.raises(OptionError, match=fragment):
        image_ws.sql(f"BUILD MODEL bad USING SimCLR OPTIONS ({options}) AS SELECT * FROM images")
