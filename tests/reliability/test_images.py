"""Images on both faces — the server's ``/clip/embed_image`` and SQL CONVERT / SEARCH with
Pixels and the tiny CLIP: every mode and format embeds, broken files and decompression bombs
are refused with a clear error (HTTP 400 / a named ``ImageError``), huge base64 hits the
caps, and an EXIF-rotated JPEG embeds like the upright picture."""

from __future__ import annotations

import base64
import io
import re
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from pixql.errors import ImageError
from pixql.images import decode_image
from tests.reliability.images import (
    STORED_AS,
    bad_images,
    encode,
    exif_rotated,
    good_images,
    jpeg,
    upright,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

CAP = 1_000_000  # the server's max_image_pixels here
BODY_CAP = 2 * 1024 * 1024
GOOD = good_images()
BAD = bad_images(CAP)


def b64(data: bytes) -> dict[str, str]:
    return {"type": "base64", "value": base64.b64encode(data).decode("ascii")}


@pytest.fixture(scope="module")
def http(start_server: Callable[..., tuple[str, Any]]) -> Iterator[httpx.Client]:
    base, _ = start_server(max_image_pixels=CAP, max_body_bytes=BODY_CAP, max_images=32)
    with httpx.Client(base_url=base, timeout=60) as client:
        yield client


def embed(http: httpx.Client, *images: bytes) -> np.ndarray:
    r = http.post("/clip/embed_image", json={"image": [b64(i) for i in images]})
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["embeddings"])


# ---------------------------------------------------------------------- server face
def test_every_mode_and_format_embeds_over_http(http: httpx.Client) -> None:
    vectors = embed(http, *GOOD.values())
    assert vectors.shape == (len(GOOD), 32)
    assert np.isfinite(vectors).all()
    grey, grey16 = vectors[list(GOOD).index("grey.png")], vectors[list(GOOD).index("grey16.png")]
    # 16 bits scaled down (v * 257 -> v), not clipped to white: the very pixels of grey.png
    np.testing.assert_allclose(grey16, grey, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_images_are_400_over_http(http: httpx.Client, name: str) -> None:
    data, words = BAD[name]
    r = http.post("/clip/embed_image", json={"image": [b64(GOOD["rgb.png"]), b64(data)]})
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert message.startswith("Could not load input image. Cause: image[1]")
    assert re.search(words, message), message


def test_huge_base64(http: httpx.Client) -> None:
    big = encode(upright((1000, 1000)).effect_spread(50), "BMP")  # ~3 MB, base64 ~4 MB
    r = http.post("/clip/embed_image", json={"image": b64(big)})
    assert r.status_code == 413
    assert str(BODY_CAP) in r.json()["message"]
    r = http.post("/clip/embed_image", json={"image": {"type": "base64", "value": "A" * (BODY_CAP
                                                                                        - 100)}})
    assert r.status_code == 400
    assert "not a decodable image" in r.json()["message"]
    wrapped = base64.encodebytes(GOOD["rgb.png"]).decode()  # MIME style: a newline every 76
    uri = "data:image/png;base64," + base64.b64encode(GOOD["rgb.png"]).decode()
    for value in (wrapped, uri):
        r = http.post("/clip/embed_image", json={"image": {"type": "base64", "value": value}})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_exif_rotated_jpeg_embeds_like_the_upright_one_over_http(
    http: httpx.Client, orientation: int
) -> None:
    """The server embeds the pixels as the EXIF tag says to show them: what it answers for
    the tagged JPEG is what it answers for those pixels stored losslessly (PIL's
    ``exif_transpose`` is the reference), and not what it answers ignoring the tag."""
    tagged, untagged = exif_rotated(upright(), orientation)
    shown = encode(ImageOps.exif_transpose(Image.open(io.BytesIO(tagged))), "PNG")
    rotated, reference, ignored = embed(http, tagged, shown, untagged)
    np.testing.assert_allclose(rotated, reference, rtol=1e-5, atol=1e-6)
    assert not np.allclose(rotated, ignored, rtol=1e-5, atol=1e-6)  # upright() is asymmetric


def test_exif_orientation_is_applied_when_decoding() -> None:
    """The tagged file decodes to its stored pixels turned back by the inverse transform
    (the same JPEG data without the tag, turned here): exactly, not roughly."""
    inverse = {Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
               Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90}
    for orientation, stored_as in STORED_AS.items():
        tagged, untagged = exif_rotated(upright(), orientation)
        got = np.asarray(decode_image(tagged))
        turned = Image.open(io.BytesIO(untagged)).transpose(inverse.get(stored_as, stored_as))
        assert got.shape == (48, 64, 3), orientation  # upright() is 64 x 48
        np.testing.assert_array_equal(got, np.asarray(turned), err_msg=str(orientation))


# ---------------------------------------------------------------------- SQL face
@pytest.fixture
def zoo_ws(fresh_ws: Any) -> Any:
    """The fuzz template workspace plus ``zoo/good/*``, ``zoo/bad/*`` and ``zoo/exif/*``."""
    root = fresh_ws.root / "zoo"
    for folder, files in (("good", GOOD), ("bad", {k: v[0] for k, v in BAD.items()})):
        (root / folder).mkdir(parents=True)
        for name, data in files.items():
            (root / folder / name).write_bytes(data)
    (root / "exif").mkdir()
    (root / "exif" / "upright.jpg").write_bytes(jpeg(upright()))
    for orientation in STORED_AS:
        (root / "exif" / f"o{orientation}.jpg").write_bytes(exif_rotated(upright(),
                                                                          orientation)[0])
    return fresh_ws


@pytest.mark.parametrize("model", ["px", "c"])
def test_every_mode_and_format_converts(zoo_ws: Any, model: str) -> None:
    zoo_ws.sql("COPY good OPTIONS (if_exists='replace') FROM 'zoo/good/'")
    zoo_ws.sql(f"CONVERT USING {model} OPTIONS (result_col='e') AS SELECT * FROM good")
    rows = zoo_ws.sql("SELECT filename, e FROM good ORDER BY filename").fetchall()
    assert len(rows) == len(GOOD)
    assert all(e is not None for _, e in rows)
    assert np.isfinite(np.asarray([e for _, e in rows])).all()


@pytest.mark.parametrize("model", ["px", "c"])
def test_bad_files_fail_the_convert_and_change_nothing(zoo_ws: Any, model: str) -> None:
    zoo_ws.sql("COPY mix OPTIONS (if_exists='replace') FROM 'zoo/bad/';"
               "COPY mix OPTIONS (if_exists='append') FROM 'zoo/good/'")
    before = zoo_ws.sql("SELECT * FROM mix ORDER BY ALL").fetchall()
    with pytest.raises(ImageError) as info:
        zoo_ws.sql(f"CONVERT USING {model} OPTIONS (batch_size=64) AS SELECT * FROM mix")
    assert "Nothing was changed" in str(info.value)
    assert "on_error='null'" in str(info.value)
    assert len(info.value.paths) == 5  # the first five bad files are named
    assert all("zoo/bad/" in p for p in info.value.paths)
    assert zoo_ws.sql("SELECT * FROM mix ORDER BY ALL").fetchall() == before


@pytest.mark.parametrize("model", ["px", "c"])
def test_on_error_null_stores_null_exactly_for_bad_files(zoo_ws: Any, model: str) -> None:
    zoo_ws.sql("COPY mix OPTIONS (if_exists='replace') FROM 'zoo/';"
               f"CONVERT USING {model} OPTIONS (on_error='null') AS SELECT * FROM mix")
    rows = zoo_ws.sql("SELECT image_path, convert_result IS NULL FROM mix").fetchall()
    nulls = {path.rsplit("/", 1)[1] for path, null in rows if null}
    assert nulls == set(BAD) - {"over-the-cap.png"}  # 1 Mpx is under SQL's 64 Mpx cap


@pytest.mark.parametrize("name", sorted(set(BAD) - {"over-the-cap.png"}))
def test_search_by_a_bad_file_is_a_named_image_error(zoo_ws: Any, name: str) -> None:
    _data, words = BAD[name]
    with pytest.raises(ImageError) as info:
        zoo_ws.sql("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input="
                   f"'zoo/bad/{name}', emb_col='convert_result') AS SELECT * FROM images")
    assert name in str(info.value)
    assert re.search(words.replace("empty", "empty|is empty"), str(info.value)), info.value


@pytest.mark.parametrize("model", ["px", "c"])
def test_exif_rotated_files_embed_like_the_upright_one(zoo_ws: Any, model: str) -> None:
    """Each tagged file embeds as its pixels shown upright do (stored losslessly, turned by
    PIL's ``exif_transpose``): the orientation is applied on the SQL path too."""
    shown = zoo_ws.root / "zoo" / "exif-shown"
    shown.mkdir()
    for path in sorted((zoo_ws.root / "zoo" / "exif").glob("*.jpg")):
        with Image.open(path) as img:
            ImageOps.exif_transpose(img).save(shown / f"{path.stem}.png")
    for table, folder in (("exif", "exif"), ("shown", "exif-shown")):
        zoo_ws.sql(f"COPY {table} OPTIONS (if_exists='replace') FROM 'zoo/{folder}/';"
                   f"CONVERT USING {model} AS SELECT * FROM {table}")
    vectors = dict(zoo_ws.sql("SELECT filename, convert_result FROM exif").fetchall())
    want = dict(zoo_ws.sql("SELECT filename, convert_result FROM shown").fetchall())
    assert len(vectors) == len(STORED_AS) + 1
    for name, vector in vectors.items():
        np.testing.assert_allclose(vector, want[name.replace(".jpg", ".png")], rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    top = zoo_ws.sql(f"SEARCH IMAGE USING {model} OPTIONS (search_by='image', search_input="
                     "'zoo/exif/o6.jpg', emb_col='convert_result', top_k=8) AS "
                     "SELECT * FROM exif").fetchall()
    assert "upright.jpg" in {row[1] for row in top}
