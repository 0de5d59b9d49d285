"""``/docs`` (Swagger UI) and ``/redoc`` render in a real headless Chromium with every request
outside the server refused: their assets come from the server itself, not a CDN."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from pixql.server.app import create_app
from pixql.server.settings import ServerSettings
from tests.server.conftest import live_server

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with live_server(create_app(ServerSettings(api_keys=["docs-key"]))) as url:
        yield url


@pytest.fixture
def offline_page(page: Any, base: str) -> Any:
    """The tab, with every request to another host aborted and recorded."""
    ours = urlsplit(base).netloc
    page.outside = []  # (resource type, URL) the page tried to load from elsewhere

    def route(r: Any) -> None:
        if urlsplit(r.request.url).netloc == ours or r.request.url.startswith("data:"):
            r.continue_()
        else:
            page.outside.append((r.request.resource_type, r.request.url))
            r.abort()

    page.route("**/*", route)
    return page


def test_swagger_ui_renders_offline(offline_page: Any, base: str) -> None:
    offline_page.goto(f"{base}/docs")
    offline_page.wait_for_selector('.opblock-summary-path[data-path="/clip/embed_text"]')
    assert offline_page.locator(".swagger-ui .opblock").count() >= 3
    assert offline_page.outside == []
    assert offline_page.console_errors == []


def test_redoc_renders_offline(offline_page: Any, base: str) -> None:
    offline_page.goto(f"{base}/redoc")
    offline_page.wait_for_function("() => document.body.innerText.includes('/clip/embed_text')")
    # ReDoc's bundle names its own "powered by" logo on cdn.redoc.ly: a decorative image
    # (refused here, the page works without it); no script, style or data from outside
    assert {kind for kind, _ in offline_page.outside} <= {"image"}, offline_page.outside
