"""The default CLIP backend is ``auto``: with ``$PIXQL_CLIP_BACKEND`` unset a first load
exports the tiny CLIP to ONNX (once, even when two loads race), reports what it picked,
computes what the backend it reports computes, and falls back to torch — with a warning, never
an error — when anything about the export, the runtime or the cache fails.

Which candidate passes the cosine check for a *random tiny* CLIP depends on the runtime and
CPU: these tests derive their expectations from what ``auto`` chose (tests/models/clip/
test_backends.py forces both outcomes of the check).

(The rest of the suite pins ``PIXQL_CLIP_BACKEND=torch`` in tests/conftest.py.)
"""

from __future__ import annotations

import json
import logging
import shutil
import time

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from typing import TYPE_CHECKING

from pixql.models.clip import export, export_cache, onnx_backend
from pixql.models.clip.backends import (
    AUTO_ORDER,
    BACKEND_ENV,
    DEFAULT_BACKEND,
    MIN_COSINE,
    attach_backend,
    auto_name,
    resolve_backend,
)
from pixql.models.clip.calibration import photo_like_images
from pixql.models.clip.embedder import ClipEmbedder
from tests.models.clip.conftest import assert_runs_its_choice

if TYPE_CHECKING:
    from pathlib import Path

TEXTS = ["a cat", "a photo of a black dog sitting on a red chair", " ".join(["long"] * 90)]
AUTO_LOGGER = "pixql.models.clip.backends"


@pytest.fixture(autouse=True)
def _default_backend(monkeypatch):
    """No backend in the environment: what users get."""
    monkeypatch.delenv(BACKEND_ENV, raising=False)


@pytest.fixture
def warm_cache(default_cache, tmp_path, monkeypatch) -> Path:
    """A private copy of the filled cache; returns the model's folder in it."""
    shutil.copytree(default_cache["root"], tmp_path / "cache")
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx" / default_cache["folder"].name


def fresh(tiny_clip: ClipEmbedder) -> ClipEmbedder:
    """A new embedder of the tiny model with the default backend attached."""
    e = ClipEmbedder(tiny_clip.model, tiny_clip.image_transform, tiny_clip.tokenizer,
                     version_id=tiny_clip.version_id, dim=tiny_clip.dim)
    return attach_backend(e)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _assert_runs_its_choice(e: ClipEmbedder, tiny_clip: ClipEmbedder) -> None:
    assert_runs_its_choice(e, tiny_clip, {"image": photo_like_images(4, 64), "text": TEXTS})


def test_the_default_is_auto_and_load_clip_uses_it(default_cache, tiny_clip):
    assert DEFAULT_BACKEND == resolve_backend() == "auto"
    loaded = default_cache["loaded"]
    assert loaded is not tiny_clip  # its own loader-cache entry (key: backend auto)
    chosen = loaded.towers.chosen
    assert set(chosen) == {"image", "text"}
    assert set(chosen.values()) <= set(AUTO_ORDER)
    assert loaded.backend == auto_name(chosen) == (
        f"auto(image={chosen['image']}, text={chosen['text']})")
    assert min(loaded.towers.cosine.values()) >= MIN_COSINE
    assert f"backend={loaded.backend!r}" in repr(loaded)
    assert loaded._export_folder.parent == default_cache["root"] / "onnx"
    _assert_runs_its_choice(loaded, tiny_clip)


def test_concurrent_first_loads_export_each_file_once(default_cache):
    exports = default_cache["exports"]
    assert len(exports) == len(set(exports))  # each file once, though two loads raced
    assert {("image", "fp32"), ("text", "fp32"), ("image", "int8s"), ("text", "int8s")} <= set(
        exports)
    loaded, other = default_cache["loaded"], default_cache["other"]
    folder = default_cache["folder"]
    assert loaded._export_folder == folder  # same weights, same folder
    assert other.backend == loaded.backend
    manifest = export_cache.read_manifest(folder)
    assert all(export_cache.file_ok(folder, name, manifest) for name in manifest["files"])
    assert {export.FILES[key] for key in exports} <= set(manifest["files"])
    assert not list(folder.glob(".*.tmp"))  # temporary files were all renamed
    np.testing.assert_allclose(loaded.embed(TEXTS, "text"), other.embed(TEXTS, "text"),
                               atol=1e-6)


def test_build_model_records_the_chosen_backend(default_cache, ws, tiny_clip_dir,
                                                monkeypatch):
    monkeypatch.setenv(export.CACHE_ENV, str(default_cache["root"]))
    ws.sql(f"BUILD MODEL c USING CLIP OPTIONS (path='{tiny_clip_dir}')")
    rec = ws.catalog.get_model("c")
    assert rec.config["backend"] is None  # follows the environment when loaded
    assert rec.summary["backend"] == default_cache["loaded"].backend
    listed = ws.sql("LIST MODEL").df()
    summary = listed.loc[listed["name"] == "c", "summary"].iloc[0]
    summary = json.loads(summary) if isinstance(summary, str) else summary
    assert summary["backend"].startswith("auto(image=")
    assert ws.load_embedder("c").backend == rec.summary["backend"]


def test_a_failing_export_falls_back_to_torch_with_a_warning(tmp_path, monkeypatch, caplog,
                                                             tiny_clip, random_image):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path))
    calls: list[str] = []

    def broken(module, *args, **kwargs):
        calls.append(type(module).__name__)
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with caplog.at_level(logging.WARNING):
        e = fresh(tiny_clip)
    assert e.towers is None
    assert e.backend == "torch"
    assert calls == ["ImageTower", "TextTower"]  # the fp32 file failed: no retry per backend
    warned = [m for m in _warnings(caplog) if "RuntimeError: exporter exploded" in m]
    assert len(warned) == 2
    assert all("trying the next backend" in m for m in warned)
    images = [random_image(3), random_image(4)]
    np.testing.assert_array_equal(e.embed(images, "image"), tiny_clip.embed(images, "image"))


def test_a_runtime_that_cannot_load_gives_way_to_the_next_one(warm_cache, monkeypatch, caplog,
                                                              tiny_clip):
    def broken_session(path, **kwargs):
        raise OSError(f"cannot map {path.name}")

    monkeypatch.setitem(onnx_backend.RUNNERS, "openvino-int8", ("int8s", broken_session))
    monkeypatch.setitem(onnx_backend.RUNNERS, "onnx-int8", ("int8", broken_session))
    with caplog.at_level(logging.WARNING):
        e = fresh(tiny_clip)
    assert set(e.towers.chosen.values()) <= {"openvino", "onnx"}
    for backend in ("openvino-int8", "onnx-int8"):
        assert any(f"{backend} failed for the image tower" in m and "OSError" in m
                   for m in _warnings(caplog))
    _assert_runs_its_choice(e, tiny_clip)


def test_without_onnxruntime_auto_is_torch_silently(tmp_path, monkeypatch, caplog, tiny_clip):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(onnx_backend, "runtime_available", lambda backend: False)
    with caplog.at_level(logging.DEBUG, logger=AUTO_LOGGER):
        e = fresh(tiny_clip)
    assert e.towers is None
    assert e.backend == "torch"
    assert _warnings(caplog) == []
    assert any("neither onnxruntime nor openvino" in r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG)
    assert not (tmp_path / "onnx").exists()  # nothing exported


def test_an_unwritable_cache_falls_back_to_torch_with_one_warning(tmp_path, monkeypatch,
                                                                  caplog, tiny_clip):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(export.CACHE_ENV, str(blocker))
    with caplog.at_level(logging.WARNING):
        e = fresh(tiny_clip)
    assert e.towers is None
    (warned,) = _warnings(caplog)
    assert "cannot write the CLIP ONNX cache" in warned
    assert export.CACHE_ENV in warned


def test_a_read_only_filled_cache_is_used(warm_cache, monkeypatch, caplog, tiny_clip):
    manifest = export_cache.read_manifest(warm_cache)
    for entry in manifest["files"].values():
        entry.pop("cosine", None)  # so the check runs and tries to record its result
    export_cache.write_manifest(warm_cache, manifest)

    def read_only(folder):
        raise PermissionError(13, "Read-only file system", str(folder / ".lock"))

    monkeypatch.setattr(export_cache, "process_lock", read_only)
    with caplog.at_level(logging.WARNING):
        e = fresh(tiny_clip)
    assert set(e.towers.chosen.values()) <= set(AUTO_ORDER)
    assert _warnings(caplog) == []
    _assert_runs_its_choice(e, tiny_clip)


def test_a_runner_failing_later_hands_its_tower_to_torch(warm_cache, caplog, tiny_clip,
                                                         random_image):
    e = fresh(tiny_clip)
    text_backend = e.towers.chosen["text"]

    def broken(x):
        raise RuntimeError("session crashed")

    e.towers.image.runner = broken
    images = [random_image(5), random_image(6)]
    with caplog.at_level(logging.WARNING):
        got = e.embed(images, "image")
    np.testing.assert_array_equal(got, tiny_clip.embed(images, "image"))
    assert any("session crashed" in m for m in _warnings(caplog))
    assert e.backend == f"auto(image=torch, text={text_backend})"
    np.testing.assert_array_equal(e.embed(images, "image"), got)  # torch from now on


def test_a_server_starts_with_the_default_backend(warm_cache, tiny_clip_dir, tmp_path,
                                                  monkeypatch, tiny_clip):
    from fastapi.testclient import TestClient

    from pixql.server.app import create_app
    from pixql.server.settings import ServerSettings

    models = tmp_path / "models"
    shutil.copytree(tiny_clip_dir, models / "ViT-B-32")  # same weights: the cache is warm
    settings = ServerSettings.from_env(clip_models_dir=models, clip_version_id="ViT-B-32",
                                       preload_models=["clip/ViT-B-32"], api_keys=[])
    app = create_app(settings)
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/readiness").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readiness").json()
            time.sleep(0.05)
        model, _ = app.state.models.get("ViT-B-32")
        assert model.embedder.backend.startswith("auto(image=")
        r = client.post("/clip/embed_text", json={"text": TEXTS})
        assert r.status_code == 200, r.text
    got = np.asarray(r.json()["embeddings"], dtype=np.float32)
    here = fresh(tiny_clip)  # the same warm cache: the same choice, the same numbers
    assert here.backend == model.embedder.backend
    want = here.embed(TEXTS, "text", normalize=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
