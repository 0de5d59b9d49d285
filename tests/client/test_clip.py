"""The CLIP methods of ``pixql.Client`` against a live server with a tiny CLIP: every image
form gives the same embedding, Roboflow's return shapes, and parity with ``inference_sdk``."""

from __future__ import annotations

import base64
import functools
import io
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import pixql
from pixql.client.http import ClientError
from tests.client.conftest import VERSION

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TEXT = "The quick brown fox jumps over the lazy dog."


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    w, h = size
    ramp = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None]
    arr = (np.broadcast_to(ramp, (h, w, 3)).astype(np.int16) // 2
           + np.array(color) // 2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("client-images")
    files = []
    for i in range(10):
        path = folder / f"img{i}.png"
        path.write_bytes(png((25 * i, 200 - 15 * i, 90), (32 + 4 * i, 30)))
        files.append(path)
    return files


@pytest.fixture(scope="module")
def image_host(image_files: list[Path]) -> Iterator[str]:
    """A local static file server holding ``image_files``."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(image_files[0].parent))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def row(out: dict[str, Any]) -> np.ndarray:
    assert len(out["embeddings"]) == 1
    return np.asarray(out["embeddings"][0])


def test_every_image_form_gives_the_same_embedding(client, image_files, image_host):
    from PIL import Image

    path = image_files[3]
    data = path.read_bytes()
    pil = Image.open(path).convert("RGB")
    b64 = base64.b64encode(data).decode()
    forms = [str(path), path, data, b64, "data:image/png;base64," + b64, pil,
             np.asarray(pil), np.asarray(pil, dtype=np.float32) / 255.0,
             f"{image_host}/{path.name}"]
    outs = [client.get_clip_image_embeddings(form) for form in forms]
    assert {"inference_id", "frame_id", "time", "embeddings"} <= set(outs[0])
    ref = row(outs[0])
    assert ref.shape == (32,)
    for form, out in zip(forms, outs, strict=True):
        np.testing.assert_allclose(row(out), ref, atol=1e-5, err_msg=type(form).__name__)


def test_a_list_is_batched_and_split_per_image_in_order(base, image_files):
    with pixql.Client(base, max_batch_size=4) as c:
        many = c.get_clip_image_embeddings([str(p) for p in image_files])
        singles = [row(c.get_clip_image_embeddings(str(p))) for p in image_files]
        one = c.get_clip_image_embeddings([str(image_files[0])])
    assert isinstance(many, list)
    assert len(many) == 10
    for out, single in zip(many, singles, strict=True):
        np.testing.assert_allclose(row(out), single, atol=1e-5)
    assert len({tuple(np.round(s, 4)) for s in singles}) == 10  # different images differ
    assert isinstance(one, dict)  # as Roboflow's client: a 1-element list is unwrapped


def test_text_embeddings_and_clip_version(client):
    out = client.get_clip_text_embeddings([TEXT, "a black cat"], clip_version=VERSION)
    assert np.asarray(out["embeddings"]).shape == (2, 32)
    single = client.get_clip_text_embeddings(TEXT)
    np.testing.assert_allclose(row(single), out["embeddings"][0], atol=1e-5)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_compare_matches_cosine_of_embeddings_in_every_shape(client, image_files):
    img, other = str(image_files[1]), str(image_files[7])
    e_img = row(client.get_clip_image_embeddings(img))
    e_other = row(client.get_clip_image_embeddings(other))
    e_txt = row(client.get_clip_text_embeddings(TEXT))
    expected = cos(e_img, e_txt)
    assert client.clip_compare(img, TEXT)["similarity"] == [pytest.approx(expected, abs=1e-5)]
    named = client.clip_compare(img, {"fox": TEXT, "cat": "a cat"})["similarity"]
    assert list(named) == ["fox", "cat"]
    assert named["fox"] == pytest.approx(expected, abs=1e-5)
    flipped = client.clip_compare(TEXT, [img, other], subject_type="text", prompt_type="image")
    assert flipped["similarity"] == [pytest.approx(expected, abs=1e-5),
                                     pytest.approx(cos(e_other, e_txt), abs=1e-5)]
    by_name = client.clip_compare(img, {"same": img, "other": other}, prompt_type="image")
    assert by_name["similarity"]["same"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="subject_type"):
        client.clip_compare(img, TEXT, subject_type="video")


def test_same_answers_as_roboflows_client(base, image_files):
    sdk = pytest.importorskip("inference_sdk")
    theirs = sdk.InferenceHTTPClient(api_url=base)
    theirs.configure(sdk.InferenceConfiguration(api_key_transport="header"))
    with pixql.Client(base) as ours:
        for method, arg in [("get_clip_text_embeddings", TEXT),
                            ("get_clip_image_embeddings", str(image_files[2]))]:
            a, b = getattr(ours, method)(arg), getattr(theirs, method)(arg)
            assert {"frame_id", "time", "embeddings"} <= set(a) & set(b)
            np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=1e-6)
        a = ours.clip_compare(str(image_files[2]), [TEXT, "x"])
        b = theirs.clip_compare(str(image_files[2]), [TEXT, "x"])
        np.testing.assert_allclose(a["similarity"], b["similarity"], atol=1e-6)


def test_bad_inputs_and_server_errors_are_clear(client, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        client.get_clip_image_embeddings(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="neither an existing file"):
        client.get_clip_image_embeddings(str(tmp_path / "missing.png"))
    with pytest.raises(TypeError, match="cannot send a int"):
        client.get_clip_image_embeddings(42)
    with pytest.raises(ClientError) as info:
        client.get_clip_image_embeddings(b"not an image at all")
    assert info.value.status_code == 400
    assert info.value.message
    with pytest.raises(ClientError) as info:
        client.get_clip_text_embeddings(TEXT, clip_version="RN50x64")
    assert 400 <= info.value.status_code < 500
    assert "RN50x64" in info.value.message


def test_image_url_errors_name_the_url(client, image_host):
    with pytest.raises(ClientError, match=r"cannot download image .*nope\.png"):
        client.get_clip_image_embeddings(f"{image_host}/nope.png")
