"""CLIP through SQL: BUILD MODEL ... USING CLIP, CONVERT (image, text), SEARCH IMAGE by text
and by image — with a tiny CLIP, so nothing is downloaded."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pixql.errors import OptionError, ProgrammingError, WeightsNotFoundError
from pixql.models.clip import load_clip

QUERY_IMG = "shapes/circle/002.png"


@pytest.fixture
def clip_ws(image_ws, tiny_clip_dir):
    image_ws.sql(f"BUILD MODEL c USING CLIP OPTIONS (path='{tiny_clip_dir}')")
    return image_ws


def _search(by: str, value: str, top_k: int = 5) -> str:
    return (f"SEARCH IMAGE USING c OPTIONS (search_by='{by}', search_input='{value}', "
            f"emb_col='convert_result', result_col='search_result', top_k={top_k}) "
            "AS SELECT * FROM images")


def test_kind_is_registered_as_clip():
    from pixql.models.registry import available_kinds, get_kind

    kind = get_kind("clip")
    assert get_kind("CLIP") is kind
    assert kind.display_name == "CLIP"
    assert kind.needs_data is False
    assert kind.convert_defaults == {"batch_size": 16}
    assert "CLIP" in available_kinds()


def test_build_records_version_path_and_dim(clip_ws, tiny_clip_dir):
    rec = clip_ws.catalog.get_model("c")
    assert rec.kind == "CLIP"
    assert rec.dim == 32
    assert rec.config["clip_version_id"] == "ViT-B-16"  # default label
    assert rec.config["path"] == str(tiny_clip_dir)
    assert set(rec.modalities) == {"image", "text", "video"}
    # SQL and the HTTP server share one loaded model
    assert clip_ws.load_embedder("c") is load_clip("ViT-B-16", path=tiny_clip_dir)


def test_convert_images_then_search_by_text_and_by_image(clip_ws):
    res = clip_ws.sql("CONVERT USING c OPTIONS (convert_type='image') AS SELECT * FROM images")
    assert res.columns[-1] == "convert_result"
    assert len(res) == 24
    typ = clip_ws.sql("SELECT typeof(convert_result) FROM images LIMIT 1").fetchone()[0]
    assert typ == "FLOAT[32]"

    by_image = clip_ws.sql(_search("image", QUERY_IMG)).df()
    assert list(by_image.columns[-2:]) == ["convert_result", "search_result"]
    assert len(by_image) == 5
    assert by_image["image_path"].iloc[0].endswith("circle/002.png")
    assert by_image["search_result"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert by_image["search_result"].is_monotonic_decreasing

    by_text = clip_ws.sql(_search("text", "a white circle on black", top_k=24)).df()
    assert len(by_text) == 24
    assert by_text["search_result"].is_monotonic_decreasing
    # the scores are the cosine of the text embedding with each stored image embedding
    emb = clip_ws.load_embedder("c")
    q = emb.embed(["a white circle on black"], "text")[0]
    stored = np.stack(by_text["convert_result"].to_list())
    np.testing.assert_allclose(by_text["search_result"], stored @ q, atol=1e-5)


def test_convert_text_column(clip_ws):
    clip_ws.sql("CREATE TABLE captions AS SELECT * FROM (VALUES ('a cat'), ('a black dog'), "
                "('gloomy photos')) t(caption)")
    res = clip_ws.sql("CONVERT USING c OPTIONS (convert_type='text', text_col='caption') "
                      "AS SELECT * FROM captions").df()
    got = np.stack(res["convert_result"].to_list())
    want = clip_ws.load_embedder("c").embed(["a cat", "a black dog", "gloomy photos"], "text")
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_workspace_relative_path_and_get_thanosql_model(image_ws, tiny_clip_dir):
    shutil.copytree(tiny_clip_dir, image_ws.root / "weights" / "tiny")
    image_ws.sql("GET THANOSQL MODEL clip OPTIONS (model_name='my_clip', "
                 "path='weights/tiny', clip_version_id='ViT-B-32', overwrite=True)")
    rec = image_ws.catalog.get_model("my_clip")
    assert rec.config["path"] == str(image_ws.root / "weights" / "tiny")
    assert image_ws.load_embedder("my_clip").model_id == "clip/ViT-B-32"


def test_build_options_are_validated(image_ws, tiny_clip_dir):
    with pytest.raises(OptionError, match="valid values: RN50"):
        image_ws.sql("BUILD MODEL c USING CLIP OPTIONS (clip_version_id='ViT-B/32')")
    with pytest.raises(OptionError, match="clip_version_id"):
        image_ws.sql("BUILD MODEL c USING CLIP OPTIONS (epochs=3)")
    with pytest.raises(ProgrammingError, match="takes no AS query"):
        image_ws.sql(f"BUILD MODEL c USING CLIP OPTIONS (path='{tiny_clip_dir}') "
                     "AS SELECT * FROM images")


def test_build_without_weights_fails_and_records_nothing(image_ws, tmp_path, monkeypatch):
    monkeypatch.setenv("PIXQL_CLIP_MODELS_DIR", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match=r"open_clip_model\.safetensors"):
        image_ws.sql("BUILD MODEL c USING CLIP OPTIONS (clip_version_id='ViT-B-32')")
    assert image_ws.catalog.find_model("c") is None
