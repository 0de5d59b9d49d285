"""CLIP backends (ONNX Runtime fp32/int8, OpenVINO, auto): embeddings match torch's, texts
stay padded to the batch's longest one, exports are cached on disk and repaired when
corrupt, missing runtimes and bad names fail clearly — all with the tiny CLIP."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from pixql.errors import MissingDependencyError, ModelError, OptionError
from pixql.models.clip import export
from pixql.models.clip.backends import (
    AUTO_ORDER,
    BACKENDS,
    MIN_COSINE,
    attach_backend,
    resolve_backend,
)
from pixql.models.clip.calibration import photo_like_images
from pixql.models.clip.embedder import ClipEmbedder

TEXTS = ["a cat", "x", "a photo of a black dog sitting on a red chair in the garden",
         " ".join(["long"] * 90)]  # over 77 tokens: truncated, full context length


def _exports_counted(monkeypatch) -> list[str]:
    """Count torch.onnx.export calls (by exported module type) from now on."""
    calls: list[str] = []
    real = torch.onnx.export

    def counting(module, *args, **kwargs):
        calls.append(type(module).__name__)
        return real(module, *args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", counting)
    return calls


@pytest.fixture(scope="module")
def cache_dir(default_cache):
    """The ONNX cache filled by the first default (auto) load (fp32 + int8, both towers):
    exporting is the slow part, so tests needing a cold or damaged cache copy this one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(export.CACHE_ENV, str(default_cache["root"]))
        yield default_cache


def fresh(tiny_clip: ClipEmbedder, backend: str | None = None) -> ClipEmbedder:
    """A new embedder sharing the tiny model (no loader cache), with ``backend`` attached."""
    e = ClipEmbedder(tiny_clip.model, tiny_clip.image_transform, tiny_clip.tokenizer,
                     version_id=tiny_clip.version_id, dim=tiny_clip.dim)
    return attach_backend(e, backend) if backend else e


@pytest.fixture(scope="module")
def images(random_image):
    return [random_image(1), random_image(2, size=(20, 90)), *photo_like_images(4, 64)]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "openvino", "auto"])
def test_embeddings_match_torch(cache_dir, tiny_clip, images, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    e = fresh(tiny_clip, backend)
    assert e.towers is not None
    assert e.backend.startswith(backend)
    for modality, items in (("image", images), ("text", TEXTS)):
        want = tiny_clip.embed(items, modality, normalize=False)
        got = e.embed(items, modality, normalize=False)
        assert got.dtype == np.float32
        assert got.shape == want.shape
        assert _cosines(got, want).min() >= MIN_COSINE
        if backend == "onnx":
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_onnx_text_batches_are_padded_to_their_longest_text(cache_dir, tiny_clip):
    e = fresh(tiny_clip, "onnx")
    lengths = [e.tokens_for(TEXTS[:n]).shape[1] for n in (1, 2, 3, 4)]
    assert lengths[0] < lengths[2] < lengths[3] == 77  # different lengths, one graph
    batch = e.embed(TEXTS, "text")
    one_by_one = np.concatenate([e.embed([t], "text") for t in TEXTS])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)
    np.testing.assert_allclose(batch, tiny_clip.embed(TEXTS, "text"), atol=1e-4)


def test_video_frames_go_through_the_backend(cache_dir, tiny_clip, images):
    e = fresh(tiny_clip, "onnx")
    frames = torch.stack([e.preprocess(i, "image") for i in images])
    got = e.postprocess(e.forward([frames], "video"))
    want = tiny_clip.postprocess(tiny_clip.forward([frames], "video"))
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_auto_picks_per_tower_a_backend_that_keeps_the_cosine(cache_dir, tiny_clip):
    e = fresh(tiny_clip, "auto")
    assert e.backend.startswith("auto(image=")
    assert set(e.towers.chosen) == {"image", "text"}
    for tower, chosen in e.towers.chosen.items():
        assert chosen in AUTO_ORDER
        assert e.towers.cosine[tower] >= MIN_COSINE
    manifest = export.read_manifest(e._export_folder)
    recorded = [c for f in manifest["files"].values() for c in f.get("cosine", {}).values()]
    assert recorded
    assert min(recorded) > 0.9


def test_export_happens_once_and_is_reused(cache_dir, monkeypatch, tiny_clip):
    assert sorted(cache_dir["exports"]) == [  # the first load
        ("image", "fp32"), ("image", "int8"), ("text", "fp32"), ("text", "int8")]
    folder = cache_dir["folder"]
    assert folder.parent == cache_dir["root"] / "onnx"
    files = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")}
    assert set(files) == {"image.onnx", "text.onnx", "image.int8.onnx", "text.int8.onnx"}
    assert not list(folder.glob(".*.tmp"))  # written under temporary names, then renamed

    calls = _exports_counted(monkeypatch)
    first, second = fresh(tiny_clip, "onnx-int8"), fresh(tiny_clip, "onnx")
    assert calls == []
    assert first._export_folder == second._export_folder == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")} == files
    np.testing.assert_array_equal(first.embed(TEXTS, "text"),
                                  fresh(tiny_clip, "onnx-int8").embed(TEXTS, "text"))


def _copy_cache(cache_dir, tmp_path, monkeypatch) -> Path:
    shutil.copytree(cache_dir["root"], tmp_path / "cache")
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx" / cache_dir["folder"].name


def test_corrupt_cache_files_are_exported_again(cache_dir, tmp_path, monkeypatch, tiny_clip,
                                                images):
    folder = _copy_cache(cache_dir, tmp_path, monkeypatch)
    int8 = folder / "image.int8.onnx"
    data = bytearray(int8.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64  # same size, other bytes
    int8.write_bytes(bytes(data))
    (folder / "text.onnx").write_bytes(b"truncated")

    calls = _exports_counted(monkeypatch)
    e = fresh(tiny_clip, "onnx-int8")
    assert e._export_folder == folder
    assert calls == []  # text.int8.onnx is intact: the fp32 text file is not needed
    assert export.sha256_file(int8) == export.read_manifest(folder)["files"][int8.name]["sha256"]
    assert _cosines(e.embed(images, "image"), tiny_clip.embed(images, "image")).min() > 0.99

    fresh(tiny_clip, "onnx")
    assert calls == ["TextTower"]  # only the damaged fp32 file
    assert export.file_ok(folder, "text.onnx", export.read_manifest(folder))


def test_unreadable_manifest_means_nothing_is_trusted(cache_dir, tmp_path, monkeypatch):
    folder = _copy_cache(cache_dir, tmp_path, monkeypatch)
    assert export.file_ok(folder, "image.onnx", export.read_manifest(folder))
    for broken in ("{not json", json.dumps({"format": -1, "files": {}}), "[]"):
        (folder / export.MANIFEST).write_text(broken)
        manifest = export.read_manifest(folder)
        assert manifest["files"] == {}
        assert not export.file_ok(folder, "image.onnx", manifest)


def test_missing_onnxruntime_names_the_extra(tmp_path, monkeypatch, tiny_clip):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    for backend in ("onnx", "onnx-int8"):
        with pytest.raises(MissingDependencyError, match=r"pixql\[onnx\]") as info:
            fresh(tiny_clip, backend)
        assert "onnxruntime" in str(info.value)
        assert isinstance(info.value, ImportError)
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert fresh(tiny_clip, "auto").towers is None  # auto falls back to torch
    assert not (tmp_path / "onnx").exists()  # nothing exported for nothing


def test_missing_exporter_names_the_extra(tmp_path, monkeypatch, tiny_clip):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingDependencyError, match=r"onnxscript.*pixql\[onnx\]"):
        fresh(tiny_clip, "onnx")


def test_unwritable_cache_is_a_clear_error_and_auto_falls_back(tmp_path, monkeypatch,
                                                               tiny_clip):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(export.CACHE_ENV, str(blocker))
    with pytest.raises(ModelError, match=r"cannot write the CLIP ONNX cache.*PIXQL_CACHE_DIR"):
        fresh(tiny_clip, "onnx")
    assert fresh(tiny_clip, "auto").towers is None


def test_backend_names_are_validated(monkeypatch):
    assert resolve_backend("onnx-int8") == "onnx-int8"
    with pytest.raises(OptionError, match="valid values: torch, onnx, onnx-int8") as info:
        resolve_backend("tensorrt")
    assert info.value.option == "backend"
    assert info.value.allowed == list(BACKENDS)
    monkeypatch.setenv("PIXQL_CLIP_BACKEND", "ONNX")
    assert resolve_backend() == "onnx"
    assert resolve_backend("torch") == "torch"
    monkeypatch.setenv("PIXQL_CLIP_BACKEND", "fast")
    with pytest.raises(OptionError, match="'fast'"):
        resolve_backend()
    monkeypatch.delenv("PIXQL_CLIP_BACKEND")
    assert resolve_backend() == "auto"  # the default


def test_onnx_backends_refuse_other_devices(tiny_clip):
    e = fresh(tiny_clip)
    e.device = torch.device("cuda")  # only the check is exercised: nothing runs there
    with pytest.raises(ModelError, match="CPU only"):
        attach_backend(e, "onnx")
    assert attach_backend(e, "auto").towers is None


def test_sql_build_option_backend(cache_dir, image_ws, tiny_clip_dir):
    with pytest.raises(OptionError, match="valid values: torch, onnx"):
        image_ws.sql(f"BUILD MODEL c USING CLIP OPTIONS (path='{tiny_clip_dir}', "
                     "backend='cuda')")
    image_ws.sql(f"BUILD MODEL c USING CLIP OPTIONS (path='{tiny_clip_dir}', backend='onnx')")
    rec = image_ws.catalog.get_model("c")
    assert rec.config["backend"] == "onnx"
    emb = image_ws.load_embedder("c")
    assert emb.backend == "onnx"
    res = image_ws.sql("CONVERT USING c OPTIONS (convert_type='image') "
                       "AS SELECT * FROM images").df()
    stored = np.stack(res["convert_result"].to_list())
    assert stored.shape == (24, 32)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / "c"))
    assert export.cache_root() == tmp_path / "c" / "onnx"
    monkeypatch.delenv(export.CACHE_ENV)
    assert export.cache_root() == Path("~/.cache/pixql/onnx").expanduser().absolute()


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "auto"])
def test_a_rows_embedding_does_not_depend_on_its_batch(cache_dir, tiny_clip, images, backend):
    """Dynamic int8 quantization scales activations by the whole input: the int8 runner
    therefore runs row by row (texts at their own length), so CONVERT's batch_size, row
    order and the server's micro-batching never change an embedding."""
    e = fresh(tiny_clip, backend)
    for modality, items in (("image", images), ("text", TEXTS)):
        together = e.embed(items, modality, normalize=False)
        alone = np.concatenate([e.embed([item], modality, normalize=False) for item in items])
        reversed_ = e.embed(items[::-1], modality, normalize=False)[::-1]
        np.testing.assert_allclose(together, alone, atol=1e-5)
        np.testing.assert_allclose(together, reversed_, atol=1e-5)


def test_the_server_batches_only_towers_that_gain_from_it(cache_dir, tiny_clip):
    """onnx-int8 towers run row by row: the server must not micro-batch them."""
    assert tiny_clip.batches("text")
    assert tiny_clip.batches("image")
    e = fresh(tiny_clip, "onnx-int8")
    assert not e.batches("text")
    assert not e.batches("image")
    assert not e.batches("video")
    assert fresh(tiny_clip, "onnx").batches("text")
    auto = fresh(tiny_clip, "auto")  # guarded runners report what they wrap
    assert auto.backend == "auto(image=onnx-int8, text=onnx-int8)"
    assert not auto.batches("text")
    assert not auto.batches("image")
