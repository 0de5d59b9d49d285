"""CLIP backends (ONNX Runtime fp32/int8, OpenVINO, auto): fp32 embeddings match torch's,
int8 ones are well-formed and independent of their batch, ``auto`` takes a candidate exactly
when its cosine check passes, texts stay padded to the batch's longest one, exports are
cached on disk and repaired when corrupt, missing runtimes and bad names fail clearly — all
with the tiny CLIP.

How close int8 (or OpenVINO's bf16) stays to torch for a *random tiny* CLIP depends on the
installed runtime and CPU, not on pixql: no test here sets a quality bar on it. Tests of
``auto``'s decision control the measured cosine (the ``measured`` fixture)."""

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
from pixql.models.clip import export, export_cache
from pixql.models.clip.backends import (
    AUTO_ORDER,
    BACKENDS,
    MIN_COSINE,
    attach_backend,
    resolve_backend,
)
from pixql.models.clip.calibration import photo_like_images
from pixql.models.clip.embedder import ClipEmbedder
from pixql.models.clip.onnx_backend import ROWWISE
from tests.models.clip.conftest import assert_runs_its_choice

#: a measured cosine that fails the check (forced through the ``measured`` fixture)
BELOW = MIN_COSINE - 0.01
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


def test_onnx_fp32_matches_torch_fp32(cache_dir, tiny_clip, images):
    e = fresh(tiny_clip, "onnx")
    assert e.backend == "onnx"
    for modality, items in (("image", images), ("text", TEXTS)):
        want = tiny_clip.embed(items, modality, normalize=False)
        got = e.embed(items, modality, normalize=False)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx-int8", "openvino"])
def test_approximate_backends_give_well_formed_deterministic_embeddings(
        cache_dir, tiny_clip, images, backend):
    """int8 (and OpenVINO, bf16 where the CPU has it): the right shape and type, finite,
    the same answer twice — but no quality threshold (see the module docstring)."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    e = fresh(tiny_clip, backend)
    assert e.backend == backend
    assert set(e.towers.chosen.values()) == {backend}
    for modality, items in (("image", images), ("text", TEXTS)):
        got = e.embed(items, modality, normalize=False)
        assert got.dtype == np.float32
        assert got.shape == (len(items), tiny_clip.dim)
        assert np.isfinite(got).all()
        np.testing.assert_array_equal(got, e.embed(items, modality, normalize=False))


def test_an_explicit_backend_below_the_threshold_is_kept_with_a_warning(
        cache_dir, tiny_clip, measured, caplog):
    measured({"onnx-int8": BELOW})
    with caplog.at_level("WARNING"):
        e = fresh(tiny_clip, "onnx-int8")
    assert e.backend == "onnx-int8"  # asked for by name: used, not replaced
    assert e.towers.cosine == {"image": BELOW, "text": BELOW}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2
    assert all(f"reach only cosine {BELOW:.4f}" in m for m in warned)


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


def test_auto_picks_per_tower_a_backend_that_keeps_the_cosine(cache_dir, tiny_clip, images):
    """Whatever the real measurement says on this machine, ``auto`` only keeps a candidate
    that passed it, records each measurement in the cache's manifest, and computes what the
    backend it reports computes."""
    from pixql.models.clip.backends import min_cosine
    from pixql.models.clip.onnx_backend import RUNNERS

    e = fresh(tiny_clip, "auto")
    assert e.backend == f"auto(image={e.towers.chosen['image']}, text={e.towers.chosen['text']})"
    manifest = export_cache.read_manifest(e._export_folder)
    for tower, chosen in e.towers.chosen.items():
        assert chosen in AUTO_ORDER
        assert e.towers.cosine[tower] >= MIN_COSINE
        name = export.FILES[(tower, RUNNERS[chosen][0])]
        recorded = manifest["files"][name]["cosine"][chosen]
        assert recorded == e.towers.cosine[tower]
        runner = getattr(e.towers, tower).runner
        assert min_cosine(e, tower, runner) == pytest.approx(recorded, abs=1e-6)
    assert_runs_its_choice(e, tiny_clip, {"image": images, "text": TEXTS})


@pytest.mark.parametrize(("cosines", "want"), [
    ({}, "auto(image=openvino-int8, text=openvino-int8)"),
    ({("openvino-int8", "text"): BELOW}, "auto(image=openvino-int8, text=onnx-int8)"),
    ({"openvino-int8": BELOW}, "auto(image=onnx-int8, text=onnx-int8)"),
    ({"openvino-int8": BELOW, ("onnx-int8", "text"): BELOW},
     "auto(image=onnx-int8, text=onnx)"),
    ({("openvino-int8", "image"): BELOW, "onnx-int8": BELOW},
     "auto(image=onnx, text=openvino-int8)"),
    ({"openvino-int8": BELOW, ("onnx-int8", "image"): BELOW, ("onnx", "image"): BELOW},
     "auto(image=torch, text=onnx-int8)"),
])
def test_auto_takes_the_first_candidate_that_meets_the_threshold(
        cache_dir, tiny_clip, images, measured, monkeypatch, cosines, want):
    """int8 when its measured cosine meets :data:`MIN_COSINE`, the next candidate when it
    does not, torch when none does — forced both ways."""
    monkeypatch.setattr("pixql.models.clip.onnx_backend.runtime_available",
                        lambda backend: backend != "openvino")  # the same order everywhere
    measured({"openvino-int8": MIN_COSINE, "onnx-int8": MIN_COSINE, "onnx": 1.0, **cosines})
    e = fresh(tiny_clip, "auto")
    assert e.backend == want
    for tower, chosen in e.towers.chosen.items():
        assert e.batches(tower) == (chosen not in ROWWISE)
        if chosen != "torch":
            assert e.towers.cosine[tower] >= MIN_COSINE
    assert_runs_its_choice(e, tiny_clip, {"image": images, "text": TEXTS})


def test_auto_falls_back_to_torch_when_no_candidate_keeps_the_cosine(cache_dir, tiny_clip,
                                                                      measured, caplog):
    measured({"openvino-int8": BELOW, "onnx-int8": BELOW, "onnx": BELOW, "openvino": BELOW})
    with caplog.at_level("INFO", logger="pixql.models.clip.backends"):
        e = fresh(tiny_clip, "auto")
    assert e.towers is None
    assert e.backend == "torch"
    said = [r.getMessage() for r in caplog.records]
    assert any(f"onnx-int8 reaches only cosine {BELOW:.4f}" in m and "not used" in m
               for m in said)


def test_export_happens_once_and_is_reused(cache_dir, monkeypatch, tiny_clip):
    first_load = cache_dir["exports"]
    assert len(first_load) == len(set(first_load))  # each file once
    assert {("image", "fp32"), ("text", "fp32"), ("image", "int8s"), ("text", "int8s")} <= set(
        first_load)  # fp32, then the first candidate (what follows depends on its cosine)
    folder = cache_dir["folder"]
    assert folder.parent == cache_dir["root"] / "onnx"
    fresh(tiny_clip, "onnx-int8")
    files = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")}
    assert {"image.onnx", "text.onnx", "image.int8.onnx", "text.int8.onnx"} <= set(files)
    assert not list(folder.glob(".*.tmp"))  # written under temporary names, then renamed

    calls = _exports_counted(monkeypatch)
    first, second = fresh(tiny_clip, "onnx-int8"), fresh(tiny_clip, "onnx")
    assert calls == []
    assert first._export_folder == second._export_folder == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")} == files
    np.testing.assert_allclose(first.embed(TEXTS, "text"),
                               fresh(tiny_clip, "onnx-int8").embed(TEXTS, "text"),
                               rtol=1e-6, atol=1e-6)


def _copy_cache(cache_dir, tmp_path, monkeypatch) -> Path:
    shutil.copytree(cache_dir["root"], tmp_path / "cache")
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx" / cache_dir["folder"].name


def test_corrupt_cache_files_are_exported_again(cache_dir, tmp_path, monkeypatch, tiny_clip,
                                                images):
    pristine = fresh(tiny_clip, "onnx-int8").embed(images, "image")  # the intact cache
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
    recorded = export_cache.read_manifest(folder)["files"][int8.name]["sha256"]
    assert export_cache.sha256_file(int8) == recorded
    # the same export of the same weights: the repaired file computes what the intact one did
    np.testing.assert_allclose(e.embed(images, "image"), pristine, rtol=1e-5, atol=1e-5)

    fresh(tiny_clip, "onnx")
    assert calls == ["TextTower"]  # only the damaged fp32 file
    assert export_cache.file_ok(folder, "text.onnx", export_cache.read_manifest(folder))


def test_unreadable_manifest_means_nothing_is_trusted(cache_dir, tmp_path, monkeypatch):
    folder = _copy_cache(cache_dir, tmp_path, monkeypatch)
    assert export_cache.file_ok(folder, "image.onnx", export_cache.read_manifest(folder))
    for broken in ("{not json", json.dumps({"format": -1, "files": {}}), "[]"):
        (folder / export_cache.MANIFEST).write_text(broken)
        manifest = export_cache.read_manifest(folder)
        assert manifest["files"] == {}
        assert not export_cache.file_ok(folder, "image.onnx", manifest)


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
    """onnx-int8 towers run row by row: the server must not micro-batch them. For ``auto``
    the answer follows what it chose (guarded runners report what they wrap)."""
    assert tiny_clip.batches("text")
    assert tiny_clip.batches("image")
    e = fresh(tiny_clip, "onnx-int8")
    assert not e.batches("text")
    assert not e.batches("image")
    assert not e.batches("video")
    assert fresh(tiny_clip, "onnx").batches("text")
    auto = fresh(tiny_clip, "auto")
    for tower, chosen in auto.towers.chosen.items():
        assert auto.batches(tower) == (chosen not in ROWWISE), auto.backend
    assert auto.batches("video") == auto.batches("image")
