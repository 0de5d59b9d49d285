"""End-to-end fixtures: Debian's Chromium driven by Playwright (no browser download).

Chromium comes from the system: ``/usr/bin/chromium``, or ``$PIXQL_CHROMIUM``. The tests
never install it; where it is missing they fail, naming the command that installs it
(:data:`INSTALL_COMMAND`, which CI runs before the tests). Playwright's Python package
(``pip install playwright``, in ``pixql[dev]``) brings the driver; ``playwright install`` is
never needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

CHROMIUM = Path(os.environ.get("PIXQL_CHROMIUM", "/usr/bin/chromium"))
#: what installs it on Debian (as root)
INSTALL_COMMAND = ("apt-get update && DEBIAN_FRONTEND=noninteractive "
                   "apt-get install -y chromium")
#: launch flags that work in containers without a display, GPU or network
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The Chromium executable; the test fails (never skips) when it is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: the e2e tests need it. Install "
                    f"it with `{INSTALL_COMMAND}` (or point PIXQL_CHROMIUM at a Chromium "
                    f"executable)", pytrace=False)
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def sync_api() -> Any:
    """``playwright.sync_api``, else skip (it comes with ``pixql[dev]``)."""
    return pytest.importorskip(
        "playwright.sync_api", reason="the e2e tests need Playwright: pip install playwright")


@pytest.fixture(scope="session")
def browser(sync_api: Any, chromium_path: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium (Playwright BrowserContext) with a fresh profile folder."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS,
            viewport=VIEWPORT, accept_downloads=False, service_workers="block")
        context.set_default_timeout(20_000)
        yield context
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab; its console errors are collected in ``page.console_errors``."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.console_errors = errors
    yield tab
    tab.close()
