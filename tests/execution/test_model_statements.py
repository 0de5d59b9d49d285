"""BUILD MODEL / LIST MODEL / DELETE MODEL: registry, overwrite rules, errors, atomicity."""

from __future__ import annotations

import pytest

from pixql.errors import ConflictError, NotFoundError, OptionError, ProgrammingError
from pixql.models import registry
from pixql.models.base import BuildOptions, BuildResult, ModelKind
from pixql.models.pixels import Pixels

BUILD = "BUILD MODEL px USING Pixels OPTIONS (image_size=8) AS SELECT * FROM images"


def test_build_returns_summary_and_list_model_shows_it(image_ws):
    res = image_ws.sql(BUILD)
    row = res.df().iloc[0]
    assert row["model"] == "px"
    assert row["kind"] == "Pixels"
    assert row["dim"] == 64
    listed = image_ws.sql("LIST MODEL").df()
    assert list(listed["name"]) == ["px"]
    assert set(listed.columns) >= {"name", "kind", "version", "created_at", "dim", "options",
                                   "artifact_path", "checksum", "summary"}
    assert listed["checksum"][0].startswith("sha256:")
    assert (image_ws.root / listed["artifact_path"][0] / "config.json").is_file()
    assert len(image_ws.sql("SHOW MODELS")) == 1


def test_model_names_are_case_insensitive_and_stored_lower(image_ws):
    image_ws.sql(BUILD.replace("px", "My_PX"))
    assert image_ws.sql("LIST MODEL").fetchone()[0] == "my_px"
    assert len(image_ws.sql("SELECT * FROM (LIST MODEL) WHERE kind = 'Pixels'")) == 1


def test_build_existing_without_overwrite_fails_and_keeps_model(image_ws):
    image_ws.sql(BUILD)
    version = image_ws.sql("SELECT version FROM (LIST MODEL)").fetchone()[0]
    with pytest.raises(ConflictError, match="overwrite=True"):
        image_ws.sql(BUILD.replace("image_size=8", "image_size=4"))
    assert image_ws.sql("SELECT version, dim FROM (LIST MODEL)").fetchone() == (version, 64)
    image_ws.sql(BUILD.replace("image_size=8", "image_size=4, overwrite=True"))
    new_version, dim = image_ws.sql("SELECT version, dim FROM (LIST MODEL)").fetchone()
    assert new_version > version
    assert dim == 16
    assert sorted(p.name for p in (image_ws.root / "models" / "px").iterdir()) == [
        f"v{new_version}"]


def test_delete_and_drop_model(image_ws):
    image_ws.sql(BUILD)
    image_ws.sql("DELETE MODEL px")
    assert len(image_ws.sql("LIST MODEL")) == 0
    assert not (image_ws.root / "models" / "px").exists()
    with pytest.raises(NotFoundError, match="unknown model 'px'"):
        image_ws.sql("DELETE MODEL px")
    assert "does not exist" in image_ws.sql("DROP MODEL IF EXISTS px").message


def test_unknown_kind_and_options_are_named(image_ws):
    with pytest.raises(NotFoundError, match=r"available kinds: .*Pixels"):
        image_ws.sql("BUILD MODEL m USING Nope AS SELECT * FROM images")
    with pytest.raises(OptionError, match=r"unknown option 'imagesize'.*image_size") as e:
        image_ws.sql("BUILD MODEL m USING Pixels OPTIONS (imagesize=8) AS SELECT * FROM images")
    assert (e.value.line, e.value.col) == (1, 37)
    with pytest.raises(OptionError, match=r"image_size='big' is invalid.*integer"):
        image_ws.sql("BUILD MODEL m USING Pixels OPTIONS (image_size='big')")
    with pytest.raises(OptionError, match="greater than or equal to 1"):
        image_ws.sql("BUILD MODEL m USING Pixels OPTIONS (image_size=0)")
    assert len(image_ws.sql("LIST MODEL")) == 0


class _Exploding(ModelKind):
    name = "exploding"
    display_name = "Exploding"
    needs_data = False

    @classmethod
    def build(cls, ctx, options: BuildOptions) -> BuildResult:
        (ctx.artifact_dir / "weights.bin").write_bytes(b"half written")
        raise RuntimeError("disk on fire")

    @classmethod
    def load(cls, artifact_dir, config):  # pragma: no cover - never built
        raise AssertionError


def test_failed_overwrite_leaves_old_model_working(image_ws, monkeypatch):
    monkeypatch.setitem(registry._KINDS, "exploding", _Exploding)
    image_ws.sql(BUILD)
    image_ws.sql("CONVERT USING px AS SELECT * FROM images")
    before = image_ws.sql("SELECT version, checksum FROM (LIST MODEL)").fetchall()
    monkeypatch.setattr(Pixels, "build", _Exploding.build)
    with pytest.raises(RuntimeError, match="disk on fire"):
        image_ws.sql(BUILD.replace("image_size=8", "image_size=8, overwrite=True"))
    assert image_ws.sql("SELECT version, checksum FROM (LIST MODEL)").fetchall() == before
    leftovers = [p.name for p in (image_ws.root / "models").iterdir()]
    assert leftovers == ["px"]
    res = image_ws.sql("SEARCH IMAGE USING px OPTIONS (search_by='image', "
                       "search_input='shapes/cross/000.png', emb_col='convert_result', top_k=1) "
                       "AS SELECT * FROM images")
    assert res.fetchone()[0] == "shapes/cross/000.png"


def test_build_needing_data_without_query(image_ws, monkeypatch):
    class NeedsData(_Exploding):
        name = "needsdata"
        needs_data = True

    monkeypatch.setitem(registry._KINDS, "needsdata", NeedsData)
    with pytest.raises(ProgrammingError, match="needs training data"):
        image_ws.sql("BUILD MODEL m USING NeedsData")


def test_get_thanosql_dataset_is_refused_with_advice(ws):
    with pytest.raises(ProgrammingError, match="COPY"):
        ws.sql("GET THANOSQL DATASET mnist_data OPTIONS (overwrite=True)")
