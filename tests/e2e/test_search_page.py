"""The search page in a real headless Chromium against a real uvicorn server.

The workspace holds generated shape images, a Pixels model and a tiny CLIP, both CONVERTed;
the tests drive the page as a user would: pick a table and a column, upload an image or
type a text, search, and look at the grid (a screenshot is checked to be a real rendering).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import pixql
from pixql.server.app import create_app
from pixql.server.settings import ServerSettings
from tests.conftest import make_image_folder
from tests.server.conftest import live_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

QUERY = "shapes/circle/002.png"
KEY = "e2e-secret-key"
ALL_IMAGES_LOADED = """() => {
  const imgs = [...document.querySelectorAll('#results img')];
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """12 shape images; ``convert_result`` by Pixels, ``clip_emb`` by a tiny CLIP."""
    from pixql.testing import make_tiny_clip

    tmp = tmp_path_factory.mktemp("e2e")
    clip_dir = make_tiny_clip(tmp / "tiny-clip")
    root = tmp / "ws"
    make_image_folder(root / "shapes", per_class=3, size=48)
    with pixql.connect(root, progress=False) as db:
        db.sql("COPY images OPTIONS (if_exists='replace') FROM 'shapes/';"
               "BUILD MODEL px USING Pixels OPTIONS (image_size=8) AS SELECT * FROM images;"
               "CONVERT USING px AS SELECT * FROM images;"
               f"BUILD MODEL c USING CLIP OPTIONS (path='{clip_dir}');"
               "CONVERT USING c OPTIONS (result_col='clip_emb') AS SELECT * FROM images")
    ws = pixql.connect(root, progress=False, confined=True)
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def base(workspace: Any) -> Iterator[str]:
    with live_server(create_app(ServerSettings(max_body_bytes=2_000_000),
                                workspace=workspace)) as url:
        yield url


@pytest.fixture(scope="module")
def secured_base(workspace: Any) -> Iterator[str]:
    with live_server(create_app(ServerSettings(api_keys=[KEY]), workspace=workspace)) as url:
        yield url


def choose(page: Any, table: str, column: str) -> None:
    page.wait_for_selector(f"#table option[value='{table}']", state="attached")
    page.select_option("#table", table)
    page.select_option("#column", column)


def search(page: Any, top_k: int) -> Any:
    """Click Search; return the tiles once the grid shows ``top_k`` of them."""
    page.fill("#top-k", str(top_k))
    page.click("#search")
    tiles = page.locator("#results figure.tile")
    tiles.nth(top_k - 1).wait_for()
    return tiles


def assert_real_rendering(png: bytes, grid: dict[str, float]) -> None:
    """The screenshot is a PNG, not blank, and its grid region is a varied picture."""
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    assert img.width >= 800
    pixels = np.asarray(img.convert("RGB"))
    assert pixels.std() > 10, "the screenshot is (almost) uniform"
    x, y = int(grid["x"]), int(grid["y"])
    region = pixels[y: y + int(grid["height"]), x: x + int(grid["width"])]
    colours = len(np.unique(region.reshape(-1, 3), axis=0))
    assert colours > 50, f"the result grid has only {colours} distinct colours"
    dark = (region.sum(axis=2) < 60).mean()  # thumbnails: white shapes on black
    assert 0.05 < dark < 0.95


def test_search_by_uploaded_image(page: Any, base: str, workspace: Any, tmp_path: Path) -> None:
    page.goto(base + "/")
    choose(page, "images", "convert_result")
    assert page.is_disabled("#mode-text"), "Pixels cannot embed text"
    page.set_input_files("#file", str(workspace.root / QUERY))
    assert page.is_visible("#preview")
    tiles = search(page, 8)
    assert tiles.count() == 8
    first = tiles.nth(0)
    assert first.locator(".score").inner_text() == "1.000"
    assert first.locator(".path").inner_text() == QUERY
    assert float(first.get_attribute("data-score")) == pytest.approx(1.0, abs=1e-5)
    scores = [float(s) for s in tiles.evaluate_all("ts => ts.map(t => t.dataset.score)")]
    assert scores == sorted(scores, reverse=True)
    assert "label: circle" in first.inner_text()
    page.wait_for_function(ALL_IMAGES_LOADED)
    shot = tmp_path / "search-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_real_rendering(shot.read_bytes(), page.locator("#results").bounding_box())
    assert page.is_hidden("#error")
    assert page.console_errors == []  # no script errors, no CSP violations


def test_search_by_text_on_a_clip_column(page: Any, base: str) -> None:
    page.goto(base + "/")
    choose(page, "images", "clip_emb")
    assert "CLIP" in page.inner_text("#column-info")
    page.check("#mode-text")
    assert page.is_visible("#text")
    assert page.is_hidden("#file")
    page.fill("#text", "a white circle on black")
    tiles = search(page, 5)
    assert tiles.count() == 5
    captions = tiles.locator(".score").all_inner_texts()
    assert all(-1.0 <= float(c) <= 1.0 and len(c.split(".")[1]) == 3 for c in captions)
    assert [float(c) for c in captions] == sorted(map(float, captions), reverse=True)
    assert tiles.nth(0).locator(".path").inner_text().startswith("shapes/")
    assert page.console_errors == []


def test_server_errors_are_shown_inline(page: Any, base: str, tmp_path: Path) -> None:
    bogus = tmp_path / "not-an-image.png"
    bogus.write_bytes(b"this is plain text")
    page.goto(base + "/")
    choose(page, "images", "convert_result")
    page.set_input_files("#file", str(bogus))
    page.click("#search")
    error = page.locator("#error")
    error.wait_for()
    assert "not-an-image.png" in error.inner_text()
    assert "decodable" in error.inner_text() or "corrupt" in error.inner_text()
    assert page.locator("#results figure.tile").count() == 0


def test_with_api_keys_the_page_asks_for_one(page: Any, secured_base: str,
                                             workspace: Any) -> None:
    page.goto(secured_base + "/")
    page.locator("#key-form").wait_for()
    assert "API key" in page.inner_text("#error")
    page.fill("#key", KEY)
    page.click("#key-save")
    choose(page, "images", "convert_result")
    assert page.is_hidden("#key-form")
    assert page.is_hidden("#error")
    page.set_input_files("#file", str(workspace.root / QUERY))
    tiles = search(page, 3)
    assert tiles.nth(0).locator(".path").inner_text() == QUERY
    page.wait_for_function(ALL_IMAGES_LOADED)
    sources = page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.src)")
    assert sources
    assert all(s.startswith("blob:") for s in sources)
