"""ClipEmbedder gives exactly open_clip's embeddings, batches texts by their longest one,
normalises on request and is safe to call from several threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from pixql.errors import ModelError
from pixql.models.clip.text import trim_padding

TEXTS = [
    "a cat",
    "!hello! a photo of a dog on a chair!!",  # '!' is token id 0, like the padding
    "x",
    " ".join(["long"] * 120),  # over 77 tokens: truncated
]


def _ref_images(reference, images):
    model, preprocess, _ = reference
    with torch.no_grad():
        return model.encode_image(torch.stack([preprocess(i.convert("RGB")) for i in images]))


def _ref_texts(reference, texts):
    model, _, tokenizer = reference
    with torch.no_grad():
        return model.encode_text(tokenizer(texts))  # always padded to 77


def test_image_embeddings_equal_open_clips(tiny_clip, reference, random_image):
    images = [random_image(1), random_image(2, size=(20, 90)), random_image(3, mode="L"),
              random_image(4, mode="RGBA")]
    ours = tiny_clip.embed(images, "image", normalize=False)
    assert ours.dtype == np.float32
    assert ours.shape == (4, 32)
    np.testing.assert_allclose(ours, _ref_images(reference, images).numpy(), atol=1e-5)


def test_preprocess_is_the_transform_bound_to_the_weights(tiny_clip, reference, random_image):
    img = random_image(5, size=(64, 40))
    x = tiny_clip.preprocess(img, "image")
    assert x.shape == (3, 32, 32)
    assert torch.equal(x, reference[1](img.convert("RGB")))


def test_text_embeddings_equal_open_clips_padded_to_77(tiny_clip, reference):
    ours = tiny_clip.embed(TEXTS, "text", normalize=False)
    np.testing.assert_allclose(ours, _ref_texts(reference, TEXTS).numpy(), atol=1e-5)


@pytest.mark.parametrize("texts", [TEXTS[:1], TEXTS[:3], TEXTS[1:3]])
def test_padding_to_longest_equals_padding_to_77(tiny_clip, reference, texts):
    tokens = tiny_clip.tokenizer(texts)
    trimmed = trim_padding(tokens)
    assert trimmed.shape[1] < 77
    assert tiny_clip.can_trim()
    ours = tiny_clip.embed(texts, "text", normalize=False)
    np.testing.assert_allclose(ours, _ref_texts(reference, texts).numpy(), atol=1e-5)
    one_by_one = np.concatenate([tiny_clip.embed([t], "text", normalize=False) for t in texts])
    np.testing.assert_allclose(ours, one_by_one, atol=1e-5)


def test_trim_padding_keeps_inner_zero_tokens():
    tokens = torch.tensor([[49406, 0, 5, 49407, 0, 0], [49406, 7, 49407, 0, 0, 0]])
    assert trim_padding(tokens).tolist() == [[49406, 0, 5, 49407], [49406, 7, 49407, 0]]


def test_long_text_is_truncated_to_context_length(tiny_clip):
    long_text = TEXTS[3]
    assert tiny_clip.text_token_count(long_text) > tiny_clip.max_text_tokens == 77
    assert tiny_clip.text_token_count("a cat") == 4
    longer = long_text + " and even more words at the end"
    np.testing.assert_allclose(tiny_clip.embed([long_text], "text"),
                               tiny_clip.embed([longer], "text"), atol=1e-6)


def test_normalize_true_is_l2_normalised_raw(tiny_clip, random_image):
    raw = tiny_clip.embed([random_image(6)], "image", normalize=False)
    unit = tiny_clip.embed([random_image(6)], "image")
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True),
                               atol=1e-6)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    texts = tiny_clip.embed(TEXTS, "text")
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-6)


def test_empty_batch(tiny_clip):
    assert tiny_clip.embed([], "text").shape == (0, 32)


def test_audio_is_refused(tiny_clip):
    with pytest.raises(ModelError, match="cannot embed audio; it embeds: image, text, video"):
        tiny_clip.embed(["song.wav"], "audio")
    with pytest.raises(ModelError, match="cannot embed audio"):
        tiny_clip.preprocess("song.wav", "audio")


def test_wrong_item_types_are_model_errors(tiny_clip, random_image):
    with pytest.raises(ModelError, match="must be a str"):
        tiny_clip.embed([random_image(1)], "text")
    with pytest.raises(ModelError, match="must be a PIL image"):
        tiny_clip.embed(["a.png"], "image")


def test_embed_from_four_threads_gives_same_results(tiny_clip, random_image):
    images = [random_image(i) for i in range(6)]
    texts = [f"photo number {i} of a {'big ' * i}dog" for i in range(6)]
    want_img = tiny_clip.embed(images, "image", normalize=False)
    want_txt = tiny_clip.embed(texts, "text", normalize=False)

    def work(k: int) -> tuple[np.ndarray, np.ndarray]:
        sl = slice(k % 3, k % 3 + 3)
        img = tiny_clip.embed(images[sl], "image", normalize=False)
        txt = tiny_clip.embed(texts[sl], "text", normalize=False)
        return img, txt

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(12)))
    for k, (img, txt) in enumerate(results):
        sl = slice(k % 3, k % 3 + 3)
        np.testing.assert_allclose(img, want_img[sl], atol=1e-5)
        np.testing.assert_allclose(txt, want_txt[sl], atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_embeddings_match_cpu(tiny_clip_dir, tiny_clip, random_image):
    from pixql.models.clip import load_clip

    gpu = load_clip("ViT-B-32", path=tiny_clip_dir, device="cuda")
    assert gpu.device.type == "cuda"
    images = [random_image(i) for i in range(3)]
    np.testing.assert_allclose(gpu.embed(images, "image"), tiny_clip.embed(images, "image"),
                               atol=1e-3)
    np.testing.assert_allclose(gpu.embed(TEXTS, "text"), tiny_clip.embed(TEXTS, "text"),
                               atol=1e-3)


# ---------------------------------------------------------------------- releasing torch
def _loaded_with(backend: str, folder, cache_root, monkeypatch):
    """A ClipEmbedder of the tiny weights in ``folder`` with ``backend``, via load_clip."""
    pytest.importorskip("onnxruntime")
    from pixql.models.clip import export, load_clip

    monkeypatch.setenv(export.CACHE_ENV, str(cache_root))
    return load_clip("ViT-B-32", path=folder, backend=backend)


@pytest.fixture
def weights_copy(tmp_path):
    """Another folder with the tiny CLIP's weights (a load_clip cache key of its own)."""
    from pixql.testing import make_tiny_clip

    return make_tiny_clip(tmp_path / "tiny-copy")


def test_onnx_computing_both_towers_frees_the_torch_model(default_cache, weights_copy,
                                                          monkeypatch, tiny_clip, random_image):
    e = _loaded_with("onnx", weights_copy, default_cache["root"], monkeypatch)
    assert e.backend == "onnx"
    assert not e.torch_loaded
    images = [random_image(1), random_image(2, size=(20, 90))]
    np.testing.assert_allclose(e.embed(images, "image"), tiny_clip.embed(images, "image"),
                               rtol=1e-5, atol=1e-5)  # fp32 parity without torch
    np.testing.assert_allclose(e.embed(TEXTS, "text"), tiny_clip.embed(TEXTS, "text"),
                               rtol=1e-5, atol=1e-5)
    assert e.max_text_tokens == tiny_clip.max_text_tokens
    assert not e.torch_loaded  # nothing above needed it


def test_the_freed_model_is_garbage_collected(default_cache, monkeypatch, tiny_clip):
    import gc
    import weakref

    from pixql.models.clip import export
    from pixql.models.clip.backends import attach_backend
    from pixql.models.clip.embedder import ClipEmbedder

    monkeypatch.setenv(export.CACHE_ENV, str(default_cache["root"]))
    model = copy_of(tiny_clip.model)
    e = ClipEmbedder(model, tiny_clip.image_transform, tiny_clip.tokenizer,
                     version_id="ViT-B-32", dim=32, reload=lambda: copy_of(tiny_clip.model))
    alive = weakref.ref(model)
    del model
    attach_backend(e, "onnx")
    gc.collect()
    assert alive() is None  # no reference left anywhere (export, fingerprint, runners)


def copy_of(model):
    import copy

    return copy.deepcopy(model)


def test_a_failing_runner_reloads_torch_after_it_was_freed(default_cache, weights_copy,
                                                           monkeypatch, tiny_clip, caplog,
                                                           random_image):
    monkeypatch.delenv("PIXQL_CLIP_BACKEND", raising=False)
    e = _loaded_with("auto", weights_copy, default_cache["root"], monkeypatch)
    if "torch" in e.towers.chosen.values():  # pragma: no cover - a tower kept torch
        assert e.torch_loaded
        return
    assert not e.torch_loaded

    def broken(x):
        raise RuntimeError("runtime exploded")

    e.towers.image.runner = broken
    images = [random_image(3), random_image(4)]
    with caplog.at_level("WARNING"):
        got = e.embed(images, "image")
    assert e.torch_loaded
    assert "image=torch" in e.backend
    assert any("loading the torch model again" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(got, tiny_clip.embed(images, "image"), rtol=1e-6, atol=1e-6)


def test_a_tower_left_to_torch_keeps_the_model(default_cache, weights_copy, monkeypatch,
                                               measured):
    from pixql.models.clip.backends import AUTO_ORDER, MIN_COSINE

    measured({(b, "image"): MIN_COSINE - 0.01 for b in AUTO_ORDER})
    monkeypatch.delenv("PIXQL_CLIP_BACKEND", raising=False)
    e = _loaded_with("auto", weights_copy, default_cache["root"], monkeypatch)
    assert e.towers.chosen["image"] == "torch"
    assert e.torch_loaded


def test_an_embedder_that_cannot_reload_keeps_its_model(default_cache, monkeypatch, tiny_clip):
    from pixql.models.clip import export
    from pixql.models.clip.backends import attach_backend
    from pixql.models.clip.embedder import ClipEmbedder

    monkeypatch.setenv(export.CACHE_ENV, str(default_cache["root"]))
    e = ClipEmbedder(tiny_clip.model, tiny_clip.image_transform, tiny_clip.tokenizer,
                     version_id="ViT-B-32", dim=32)  # built in memory: no reload
    attach_backend(e, "onnx")
    assert e.torch_loaded
    assert not e.release_torch()
