"""The three /clip routes against a live server: Roboflow's payload shapes and real numbers."""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from pixql.images import decode_image
from tests.server.conftest import TXT, VERSION, b64_image

if TYPE_CHECKING:
    from collections.abc import Callable

EMBED_KEYS = ["inference_id", "frame_id", "time", "embeddings"]
COMPARE_KEYS = ["inference_id", "frame_id", "time", "similarity", "parent_id"]


@pytest.fixture(scope="module")
def url_image(image_host: str) -> dict[str, str]:
    """The red image as a Roboflow URL declaration (served by the loopback host)."""
    return {"type": "url", "value": f"{image_host}/image.png?name=red"}


def post(client: httpx.Client, route: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/clip/{route}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def direct(embedder: Any, items: list[Any], modality: str) -> np.ndarray:
    return embedder.embed(items, modality, normalize=False)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------------- Roboflow's 9 cases
def test_case1_embed_one_url_image(client: httpx.Client, url_image: dict[str, str],
                                   embedder: Any) -> None:
    out = post(client, "embed_image", {"image": url_image})
    assert list(out) == EMBED_KEYS
    assert out["frame_id"] is None
    assert isinstance(out["time"], float)
    assert out["time"] >= 0
    uuid.UUID(out["inference_id"])
    assert np.asarray(out["embeddings"]).shape == (1, embedder.dim)


def test_case2_embed_three_images_gives_three_identical_rows(
    client: httpx.Client, url_image: dict[str, str], embedder: Any
) -> None:
    rows = np.asarray(post(client, "embed_image", {"image": [url_image] * 3})["embeddings"])
    assert rows.shape == (3, embedder.dim)
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-6)
    np.testing.assert_allclose(rows[0], rows[2], atol=1e-6)


def test_case3_and_4_embed_text(client: httpx.Client, embedder: Any) -> None:
    one = np.asarray(post(client, "embed_text", {"text": TXT})["embeddings"])
    three = np.asarray(post(client, "embed_text", {"text": [TXT] * 3})["embeddings"])
    assert one.shape == (1, embedder.dim)
    assert three.shape == (3, embedder.dim)
    np.testing.assert_allclose(three, np.repeat(one, 3, axis=0), atol=1e-5)


def test_case5_image_subject_text_prompt_is_a_one_element_list(
    client: httpx.Client, url_image: dict[str, str]
) -> None:
    out = post(client, "compare", {"subject": url_image, "prompt": TXT})
    assert list(out) == COMPARE_KEYS
    assert out["parent_id"] is None
    assert out["frame_id"] is None
    assert isinstance(out["similarity"], list)
    assert len(out["similarity"]) == 1
    assert -1.0 <= out["similarity"][0] <= 1.0


def test_case6_list_prompt(client: httpx.Client, url_image: dict[str, str]) -> None:
    sims = post(client, "compare", {"subject": url_image, "prompt": [TXT] * 3})["similarity"]
    assert len(sims) == 3
    assert sims[0] == pytest.approx(sims[1]) == pytest.approx(sims[2])


def test_case7_and_8_text_subject_image_prompts_is_symmetric(
    client: httpx.Client, url_image: dict[str, str]
) -> None:
    forward = post(client, "compare", {"subject": url_image, "prompt": TXT})["similarity"]
    body = {"subject": TXT, "subject_type": "text", "prompt": url_image, "prompt_type": "image"}
    backward = post(client, "compare", body)["similarity"]
    assert backward == pytest.approx(forward, abs=1e-6)
    body["prompt"] = [url_image] * 3
    many = post(client, "compare", body)["similarity"]
    assert many == pytest.approx(forward * 3, abs=1e-6)


def test_case9_dict_prompt_keeps_keys_in_order(
    client: httpx.Client, url_image: dict[str, str]
) -> None:
    prompt = {"Key3": TXT, "Key1": TXT, "Key2": "a photo of a cat"}
    sims = post(client, "compare", {"subject": url_image, "prompt": prompt})["similarity"]
    assert list(sims) == ["Key3", "Key1", "Key2"]
    assert sims["Key3"] == pytest.approx(sims["Key1"])


# ---------------------------------------------------------------------- numbers
def test_embed_image_equals_the_embedder_row_by_row(
    client: httpx.Client, images: dict[str, bytes], embedder: Any
) -> None:
    names = ["red", "wide", "blue", "jpeg"]  # different sizes: never stacked into one
    out = post(client, "embed_image", {"image": [b64_image(images[n]) for n in names]})
    expected = direct(embedder, [decode_image(images[n]) for n in names], "image")
    np.testing.assert_allclose(np.asarray(out["embeddings"]), expected, atol=1e-5)
    assert not np.allclose(expected[0], expected[1], atol=1e-3)


def test_url_and_base64_and_data_uri_give_the_same_embedding(
    client: httpx.Client, images: dict[str, bytes], url_image: dict[str, str]
) -> None:
    plain = b64_image(images["red"])
    data_uri = {"type": "base64", "value": "data:image/png;base64," + plain["value"]}
    out = post(client, "embed_image", {"image": [url_image, plain, data_uri]})
    rows = np.asarray(out["embeddings"])
    np.testing.assert_allclose(rows[1:], np.repeat(rows[:1], 2, axis=0), atol=1e-6)


def test_embed_text_equals_the_embedder(client: httpx.Client, embedder: Any) -> None:
    texts = ["a cat", "a dog", TXT]
    out = post(client, "embed_text", {"text": texts})
    np.testing.assert_allclose(np.asarray(out["embeddings"]), direct(embedder, texts, "text"),
                               atol=1e-5)


def test_normalize_true_returns_unit_rows(client: httpx.Client, embedder: Any) -> None:
    out = post(client, "embed_text", {"text": ["a cat", "a dog"], "normalize": True})
    rows = np.asarray(out["embeddings"])
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(rows, embedder.embed(["a cat", "a dog"], "text"), atol=1e-5)
    raw = np.asarray(post(client, "embed_text", {"text": "a cat"})["embeddings"])
    assert abs(np.linalg.norm(raw) - 1.0) > 1e-3  # raw by default, as Roboflow


def test_compare_is_the_cosine_of_the_embeddings(
    client: httpx.Client, images: dict[str, bytes]
) -> None:
    image = b64_image(images["blue"])
    img = np.asarray(post(client, "embed_image", {"image": image})["embeddings"][0])
    txt = np.asarray(post(client, "embed_text", {"text": ["a cat", "a dog"]})["embeddings"])
    sims = post(client, "compare", {"subject": image, "prompt": ["a cat", "a dog"]})
    assert sims["similarity"] == pytest.approx([cos(img, t) for t in txt], abs=1e-5)


def test_compare_mixed_types(client: httpx.Client, images: dict[str, bytes],
                             embedder: Any) -> None:
    red, blue = b64_image(images["red"]), b64_image(images["blue"])
    prompt = {"same": red, "other": blue}
    out = post(client, "compare", {"subject": red, "prompt": prompt, "prompt_type": "image"})
    assert list(out["similarity"]) == ["same", "other"]
    assert out["similarity"]["same"] == pytest.approx(1.0, abs=1e-6)
    vecs = direct(embedder, [decode_image(images["red"]), decode_image(images["blue"])], "image")
    assert out["similarity"]["other"] == pytest.approx(cos(vecs[0], vecs[1]), abs=1e-5)
    texts = post(client, "compare", {"subject": "a cat", "subject_type": "text",
                                     "prompt": ["a cat", "a dog"]})["similarity"]
    assert texts[0] == pytest.approx(1.0, abs=1e-6)
    assert texts[1] < 1.0


def test_bare_string_image_prompt_is_inferred(
    client: httpx.Client, images: dict[str, bytes], url_image: dict[str, str]
) -> None:
    body = {"subject": b64_image(images["red"]), "prompt_type": "image",
            "prompt": [url_image["value"], b64_image(images["red"])["value"]]}
    sims = post(client, "compare", body)["similarity"]
    assert sims == pytest.approx([1.0, 1.0], abs=1e-6)


# ---------------------------------------------------------------------- versions, headers
def test_explicit_version_and_model_headers(client: httpx.Client) -> None:
    r = client.post("/clip/embed_text", json={"text": "x", "clip_version_id": VERSION,
                                              "model_id": "ignored", "unknown_field": 1})
    assert r.status_code == 200
    assert r.headers["X-Model-Id"] == f"clip/{VERSION}"
    assert r.headers["X-Model-Cold-Start"] in ("true", "false")
    assert float(r.headers["X-Processing-Time"]) >= 0


def test_unknown_version_lists_the_valid_ones(client: httpx.Client) -> None:
    r = client.post("/clip/embed_text", json={"text": "x", "clip_version_id": "ViT-H-99"})
    assert r.status_code == 400
    assert "ViT-H-99" in r.json()["message"]
    assert "ViT-B-16" in r.json()["message"]


def test_version_without_weights_is_404(client: httpx.Client) -> None:
    r = client.post("/clip/embed_text", json={"text": "x", "clip_version_id": "RN50"})
    assert r.status_code == 404
    assert "RN50" in r.json()["message"]
    assert "not found" in r.json()["message"]


def test_long_text_is_truncated_or_refused(client: httpx.Client, embedder: Any) -> None:
    long = " ".join(["word"] * 200)
    out = post(client, "embed_text", {"text": long})
    assert np.asarray(out["embeddings"]).shape == (1, embedder.dim)
    r = client.post("/clip/embed_text", json={"text": ["ok", long], "truncate": False})
    assert r.status_code == 400
    assert "text[1]" in r.json()["message"]
    assert "77" in r.json()["message"]


def test_a_slow_request_does_not_block_others(
    start_server: Callable[..., tuple[str, Any]], image_host: str, image_server: Any
) -> None:
    """Handlers run in the thread pool: while one waits on a slow image, others are served."""
    base, _ = start_server(url_allow_hosts=["127.0.0.1"], url_timeout_s=10)
    seen = len(image_server.seen_hosts)
    slow = {"type": "url", "value": f"{image_host}/slow?s=2"}
    result: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: result.update(
        r=httpx.post(f"{base}/clip/embed_image", json={"image": slow}, timeout=30)))
    worker.start()
    while len(image_server.seen_hosts) == seen:  # the slow download has started
        time.sleep(0.01)
    with httpx.Client(base_url=base, timeout=30) as other:
        assert other.get("/healthz").status_code == 200
        assert other.post("/clip/embed_text", json={"text": "x"}).status_code == 200
    assert worker.is_alive()  # both answered while the slow request was still running
    worker.join()
    assert result["r"].status_code == 200
