"""Roboflow's own Python client (``inference_sdk``) against a live pixql server."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from pixql.images import decode_image
from tests.server.conftest import TXT, VERSION

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

sdk = pytest.importorskip("inference_sdk")

KEY = "sdk-key"


@pytest.fixture(scope="module")
def secured_base(start_server: Callable[..., tuple[str, Any]]) -> str:
    return start_server(api_keys=[KEY])[0]


def make_client(base: str, key: str, transport: str = "legacy") -> Any:
    """A Roboflow client sending ``key`` in the body ("legacy") or as a Bearer ("header")."""
    client = sdk.InferenceHTTPClient(api_url=base, api_key=key)
    client.configure(sdk.InferenceConfiguration(api_key_transport=transport))
    return client


@pytest.fixture(scope="module")
def sdk_client(secured_base: str) -> Any:
    return make_client(secured_base, KEY)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory, images: dict[str, bytes]) -> Path:
    path = tmp_path_factory.mktemp("sdk") / "blue.png"
    path.write_bytes(images["blue"])
    return path


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_image_embeddings_from_a_file_path(sdk_client: Any, image_file: Path,
                                           embedder: Any) -> None:
    out = sdk_client.get_clip_image_embeddings(inference_input=str(image_file))
    assert {"frame_id", "time", "embeddings"} <= set(out)
    expected = embedder.embed([decode_image(image_file.read_bytes())], "image",
                              normalize=False)
    np.testing.assert_allclose(np.asarray(out["embeddings"]), expected, atol=1e-5)


def test_image_embeddings_of_a_list_and_a_base64_string(
    sdk_client: Any, image_file: Path, images: dict[str, bytes], embedder: Any
) -> None:
    red = base64.b64encode(images["red"]).decode()
    out = sdk_client.get_clip_image_embeddings(inference_input=[str(image_file), red],
                                               clip_version=VERSION)
    assert isinstance(out, list)
    assert len(out) == 2
    expected = embedder.embed([decode_image(images["blue"]), decode_image(images["red"])],
                              "image", normalize=False)
    got = np.asarray([o["embeddings"][0] for o in out])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_text_embeddings(sdk_client: Any, embedder: Any) -> None:
    out = sdk_client.get_clip_text_embeddings(text=[TXT, "a cat"])
    np.testing.assert_allclose(np.asarray(out["embeddings"]),
                               embedder.embed([TXT, "a cat"], "text", normalize=False),
                               atol=1e-5)


def test_compare(sdk_client: Any, image_file: Path, embedder: Any) -> None:
    out = sdk_client.clip_compare(subject=str(image_file), prompt=["a cat", TXT])
    img = embedder.embed([decode_image(image_file.read_bytes())], "image", normalize=False)[0]
    txt = embedder.embed(["a cat", TXT], "text", normalize=False)
    assert out["similarity"] == pytest.approx([cos(img, t) for t in txt], abs=1e-5)
    back = sdk_client.clip_compare(subject="a cat", subject_type="text",
                                   prompt=str(image_file), prompt_type="image")
    assert back["similarity"] == pytest.approx(out["similarity"][:1], abs=1e-5)


def test_bearer_header_transport(secured_base: str, embedder: Any) -> None:
    out = make_client(secured_base, KEY, "header").get_clip_text_embeddings(text="a cat")
    np.testing.assert_allclose(np.asarray(out["embeddings"]),
                               embedder.embed(["a cat"], "text", normalize=False), atol=1e-5)


@pytest.mark.parametrize("transport", ["legacy", "header"])
def test_errors_reach_the_client_with_our_message(secured_base: str, sdk_client: Any,
                                                  transport: str) -> None:
    from inference_sdk.http.errors import HTTPCallErrorError

    with pytest.raises(HTTPCallErrorError) as info:
        make_client(secured_base, "wrong", transport).get_clip_text_embeddings(text="a cat")
    assert info.value.status_code == 401
    assert "API key" in info.value.api_message
    with pytest.raises(HTTPCallErrorError) as info:
        sdk_client.get_clip_text_embeddings(text="a cat", clip_version="ViT-H-99")
    assert info.value.status_code == 400
    assert "valid values" in info.value.api_message
