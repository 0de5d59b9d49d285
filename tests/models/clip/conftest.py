"""Fixtures for CLIP tests: a tiny random CLIP in open_clip's hub layout (no downloads)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def isolated_hf_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """Point Hugging Face's cache at an empty folder: weights cached on this machine must
    not change what the tests see."""
    import huggingface_hub.constants

    cache = tmp_path_factory.mktemp("hf-cache")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP folder (open_clip_config.json + open_clip_model.safetensors)."""
    from pixql.testing import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny")


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir: Path):
    """The ClipEmbedder for the tiny CLIP, loaded through load_clip."""
    from pixql.models.clip import load_clip

    return load_clip("ViT-B-32", path=tiny_clip_dir)


@pytest.fixture(scope="session")
def reference(tiny_clip_dir: Path):
    """open_clip's own (model, preprocess, tokenizer) for the same weights."""
    import open_clip

    name = f"local-dir:{tiny_clip_dir}"
    model, preprocess = open_clip.create_model_from_pretrained(name)
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


def _random_image(seed: int, size: tuple[int, int] = (48, 40), mode: str = "RGB"):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


@pytest.fixture(scope="session")
def random_image():
    """``random_image(seed, size=(w, h), mode='RGB')``: a deterministic random PIL image."""
    return _random_image


@pytest.fixture(scope="session")
def default_cache(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, tiny_clip):
    """The first load with the default backend (``$PIXQL_CLIP_BACKEND`` unset), twice at
    once into one empty ``$PIXQL_CACHE_DIR``: ``load_clip`` in one thread and
    ``attach_backend`` on another embedder of the same weights in a second one.

    Exporting is the slow part (seconds even for the tiny CLIP), so the other ONNX tests
    reuse (or copy) this cache. ``exports`` lists the ``(tower, precision)`` files written.
    """
    import threading

    from pixql.models.clip import export, load_clip
    from pixql.models.clip.backends import BACKEND_ENV, attach_backend
    from pixql.models.clip.embedder import ClipEmbedder

    root = tmp_path_factory.mktemp("default-onnx-cache")
    exports: list[tuple[str, str]] = []
    counted = {precision: _counting(real, precision, exports)
               for precision, real in export._EXPORTERS.items()}
    other = ClipEmbedder(tiny_clip.model, tiny_clip.image_transform, tiny_clip.tokenizer,
                         version_id=tiny_clip.version_id, dim=tiny_clip.dim)
    start = threading.Barrier(2)
    out: dict[str, object] = {}

    def run(name: str, load) -> None:
        start.wait()
        try:
            out[name] = load()
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            out[name] = e

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(export.CACHE_ENV, str(root))
        mp.delenv(BACKEND_ENV, raising=False)
        mp.setattr(export, "_EXPORTERS", counted)
        threads = [threading.Thread(target=run, args=a) for a in (
            ("loaded", lambda: load_clip("ViT-B-32", path=tiny_clip_dir)),
            ("other", lambda: attach_backend(other)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not any(isinstance(v, Exception) for v in out.values()), out
    return {"root": root, "folder": out["other"]._export_folder, "exports": exports, **out}


def _counting(real, precision: str, calls: list[tuple[str, str]]):
    def exporter(job):
        calls.append((job.tower, precision))
        return real(job)
    return exporter


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch):
    """``measured({"onnx-int8": 0.5, ("onnx", "text"): 0.2})``: from now on the cosine check
    of a backend (or of one backend's tower) reports these values instead of what it
    measured, so a test decides whether ``auto`` accepts a candidate — how well int8 keeps
    a *random tiny* CLIP is the runtime's business, what ``auto`` does with it is pixql's."""
    from pixql.models.clip import backends

    real = backends._runner_and_cosine

    def control(cosines: dict) -> None:
        def controlled(embedder, backend: str, tower: str):
            runner, cosine = real(embedder, backend, tower)
            return runner, cosines.get((backend, tower), cosines.get(backend, cosine))

        monkeypatch.setattr(backends, "_runner_and_cosine", controlled)

    return control


def explicit_twin(embedder, backend: str):
    """A new embedder of the same weights running ``backend`` for both towers."""
    from pixql.models.clip.backends import attach_backend
    from pixql.models.clip.embedder import ClipEmbedder

    twin = ClipEmbedder(embedder.model, embedder.image_transform, embedder.tokenizer,
                        version_id=embedder.version_id, dim=embedder.dim)
    return attach_backend(twin, backend)


def assert_runs_its_choice(e, tiny_clip, items: dict[str, list]) -> None:
    """Each tower of ``e`` (an ``auto`` embedder) computes what the backend it reports
    computes: equal to the explicit backend's output (same files, same runtime), and equal
    to torch at fp32 precision where the choice is fp32 ONNX or torch. Never a quality bar
    on int8 (that would test the runtime's luck with random weights)."""
    import numpy as np

    for modality, inputs in items.items():
        chosen = e.towers.chosen[modality] if e.towers is not None else "torch"
        got = e.embed(inputs, modality, normalize=False)
        reference = tiny_clip if chosen == "torch" else explicit_twin(tiny_clip, chosen)
        want = reference.embed(inputs, modality, normalize=False)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=chosen)
        if chosen in ("torch", "onnx"):
            np.testing.assert_allclose(
                got, tiny_clip.embed(inputs, modality, normalize=False), rtol=1e-5, atol=1e-5)
