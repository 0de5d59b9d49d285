"""End-to-end fixtures: Debian's Chromium driven by Playwright (no browser download).

Chromium comes from the system (``/usr/bin/chromium``, or ``$PIXQL_CHROMIUM``); when it is
missing and the tests run as root with ``apt-get`` (CI), the session installs it with
``apt-get update && apt-get install -y chromium``. Playwright's Python package (``pip install
playwright``) brings the driver; ``playwright install`` is never needed. Whatever cannot be
had makes the tests skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

CHROMIUM = Path(os.environ.get("PIXQL_CHROMIUM", "/usr/bin/chromium"))
#: launch flags that work in containers without a display, GPU or network
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
INSTALL_TIMEOUT_S = 1200
VIEWPORT = {"width": 1280, "height": 900}


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True,
                           timeout=INSTALL_TIMEOUT_S, check=False)


def install_chromium() -> str | None:
    """Install Debian's chromium; None on success, else why it could not be installed."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "installing needs root"
    for args in (("update",), ("install", "-y", "chromium")):
        try:
            done = _apt(*args)
        except subprocess.TimeoutExpired:
            return f"apt-get {' '.join(args)} took over {INSTALL_TIMEOUT_S} s"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return f"apt-get {' '.join(args)} failed: {' | '.join(tail)}"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The Chromium executable, installed with apt-get first when missing (else skip)."""
    if not CHROMIUM.exists():
        reason = install_chromium()
        if reason is not None or not CHROMIUM.exists():
            pytest.skip(f"Chromium is not installed at {CHROMIUM} and could not be installed "
                        f"({reason or 'no such file after apt-get install'}); install it "
                        f"with `apt-get install chromium`")
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def sync_api() -> Any:
    """``playwright.sync_api`` (checked before Chromium is installed), else skip."""
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
