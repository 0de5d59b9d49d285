"""The embedding cache: LRU behaviour, digests, and hits through live servers."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from pixql.server.cache import EmbeddingCache, image_digest, text_digest
from pixql.server.schemas import ImageInput
from tests.server.conftest import TXT, b64_image, png_bytes

if TYPE_CHECKING:
    from collections.abc import Callable


def row(x: float) -> np.ndarray:
    return np.full(3, x, dtype=np.float32)


# ---------------------------------------------------------------------- the cache alone
def test_lru_evicts_the_least_recently_used() -> None:
    cache = EmbeddingCache(2)
    a, b, c = (("m@w", "text", d) for d in "abc")
    cache.put_many([(a, row(1)), (b, row(2))])
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, row(3))
    assert cache.get(b) is None
    assert cache.get(a) is not None
    assert cache.get(c) is not None
    s = cache.stats()
    assert (s.entries, s.hits, s.misses, s.evictions) == (2, 3, 1, 1)
    assert s.hit_rate == pytest.approx(0.75)


def test_rows_are_private_read_only_copies() -> None:
    cache = EmbeddingCache(4)
    key = ("m@w", "text", "d")
    original = row(1.0)
    cache.put(key, original)
    original[:] = 9.0
    stored = cache.get(key)
    assert stored is not None
    assert stored.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="read-only"):
        stored[0] = 5.0


def test_disabled_cache_stores_and_counts_nothing() -> None:
    cache = EmbeddingCache(0)
    key = ("m@w", "text", "d")
    cache.put(key, row(1))
    assert cache.get(key) is None
    assert len(cache) == 0
    s = cache.stats()
    assert not s.enabled
    assert (s.hits, s.misses) == (0, 0)


def test_uncacheable_keys_are_counted_apart() -> None:
    cache = EmbeddingCache(4)
    assert cache.get_many([None, ("m@w", "image", "d")]) == [None, None]
    s = cache.stats()
    assert (s.uncacheable, s.misses) == (1, 1)


def test_drop_model_forgets_every_weights_of_that_model_only() -> None:
    cache = EmbeddingCache(8)
    cache.put_many([(("clip/A@w1", "text", "x"), row(1)), (("clip/A@w2", "text", "x"), row(2)),
                    (("clip/AB@w1", "text", "x"), row(3))])
    assert cache.drop_model("clip/A") == 2
    assert cache.get(("clip/AB@w1", "text", "x")) is not None


def test_digests() -> None:
    data = png_bytes()
    plain = base64.b64encode(data).decode()
    expected = hashlib.sha256(data).hexdigest()
    assert image_digest(ImageInput(type="base64", value=plain)) == expected
    assert image_digest("data:image/png;base64," + plain) == expected
    assert image_digest(plain.rstrip("=")) == expected  # missing padding tolerated
    assert image_digest(ImageInput(type="url", value="http://x/a.png")) is None
    assert image_digest("https://x/a.png") is None
    assert image_digest(ImageInput(type="base64", value="%%%")) is None
    assert text_digest("a cat") != text_digest("a cat ")
    assert text_digest("\ud800") == text_digest("\ud800")  # lone surrogates do not crash


# ---------------------------------------------------------------------- live servers
@pytest.fixture(scope="module")
def cached(start_server: Callable[..., tuple[str, Any]]) -> str:
    base, _ = start_server(embedding_cache_size=64)
    return base


@pytest.fixture(scope="module")
def uncached(start_server: Callable[..., tuple[str, Any]]) -> str:
    base, _ = start_server(embedding_cache_size=0)
    return base


def post(base: str, route: str, body: dict[str, Any]) -> httpx.Response:
    r = httpx.post(f"{base}/clip/{route}", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r


def cache_stats(base: str) -> dict[str, Any]:
    return httpx.get(f"{base}/stats", timeout=10).json()["cache"]


def test_text_hits_return_identical_embeddings(cached: str, embedder: Any) -> None:
    text = f"{TXT} (cache test)"
    first = post(cached, "embed_text", {"text": text}).json()["embeddings"]
    before = cache_stats(cached)
    again = post(cached, "embed_text", {"text": [text, text]}).json()["embeddings"]
    after = cache_stats(cached)
    assert again == [first[0], first[0]]
    assert after["hits"] - before["hits"] == 2
    assert after["misses"] == before["misses"]
    np.testing.assert_allclose(first, embedder.embed([text], "text", normalize=False),
                               atol=1e-5)
    normalized = post(cached, "embed_text", {"text": text, "normalize": True}).json()
    v = np.asarray(first[0], dtype=np.float32)
    np.testing.assert_allclose(normalized["embeddings"][0], v / np.linalg.norm(v), atol=1e-6)


def test_image_hits_skip_decoding_and_match(cached: str) -> None:
    data = png_bytes((48, 36), (10, 200, 90))
    first = post(cached, "embed_image", {"image": b64_image(data)}).json()["embeddings"]
    before = cache_stats(cached)
    prefixed = {"type": "base64",
                "value": "data:image/png;base64," + base64.b64encode(data).decode()}
    again = post(cached, "embed_image", {"image": prefixed}).json()["embeddings"]
    assert again == first
    assert cache_stats(cached)["hits"] == before["hits"] + 1


def test_repeats_inside_one_request_are_computed_once(cached: str) -> None:
    text = "computed once, returned thrice"
    before = cache_stats(cached)
    out = post(cached, "embed_text", {"text": [text] * 3}).json()["embeddings"]
    after = cache_stats(cached)
    assert out[0] == out[1] == out[2]
    assert after["misses"] - before["misses"] == 3
    assert after["entries"] == before["entries"] + 1


def test_compare_uses_the_cache(cached: str) -> None:
    body = {"subject": "a red square", "subject_type": "text", "prompt": ["a red square"],
            "prompt_type": "text"}
    post(cached, "compare", body)
    before = cache_stats(cached)
    sims = post(cached, "compare", body).json()["similarity"]
    assert sims == [pytest.approx(1.0, abs=1e-5)]
    assert cache_stats(cached)["hits"] == before["hits"] + 2


def test_removing_the_model_empties_its_entries(cached: str) -> None:
    post(cached, "embed_text", {"text": "soon forgotten"})
    assert cache_stats(cached)["entries"] > 0
    r = httpx.post(f"{cached}/model/remove", json={"model_id": "clip/ViT-B-32"}, timeout=10)
    assert r.status_code == 200
    assert cache_stats(cached)["entries"] == 0


def test_cache_off_still_embeds(uncached: str, embedder: Any) -> None:
    texts = ["no cache here", "no cache here"]
    out = np.asarray(post(uncached, "embed_text", {"text": texts}).json()["embeddings"])
    np.testing.assert_allclose(out, embedder.embed(texts, "text", normalize=False), atol=1e-5)
    image = post(uncached, "embed_image", {"image": b64_image(png_bytes())}).json()
    assert len(image["embeddings"]) == 1
    s = cache_stats(uncached)
    assert not s["enabled"]
    assert (s["entries"], s["hits"], s["misses"]) == (0, 0, 0)


def test_embedding_responses_keep_roboflows_shape(uncached: str) -> None:
    r = post(uncached, "embed_text", {"text": TXT})
    assert r.headers["content-type"] == "application/json"
    assert list(r.json()) == ["inference_id", "frame_id", "time", "embeddings"]
    assert "X-Processing-Time" in r.headers
    assert r.headers["X-Model-Id"] == "clip/ViT-B-32"


@pytest.mark.parametrize("orjson", [True, False], ids=["orjson", "fallback"])
def test_json_numbers_round_trip_to_the_same_float32(
    orjson: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixql.server.routes.clip import encode_json

    if not orjson:
        monkeypatch.setitem(__import__("sys").modules, "orjson", None)  # import fails

    rng = np.random.default_rng(0)
    values = (rng.standard_normal((4, 64)) * np.logspace(-30, 30, 64)).astype(np.float32)
    values[0, :4] = [0.0, -0.0, np.finfo(np.float32).tiny, np.finfo(np.float32).max]
    text = encode_json({"time": 0.5, "embeddings": values})
    back = np.asarray(json.loads(text)["embeddings"], dtype=np.float64).astype(np.float32)
    assert np.array_equal(back, values)
    assert json.loads(text)["time"] == 0.5
