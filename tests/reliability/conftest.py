"""Fixtures of the reliability tests: the fuzz and load scripts (imported as modules, so the
quick profiles here run the very code of the long runs), live servers and workspaces.

The live-server fixtures (a real uvicorn on 127.0.0.1, a tiny CLIP, a local image host) are
those of ``tests/server/conftest.py``, imported here.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.server.conftest import (  # noqa: F401 - fixtures, re-exported for this folder
    embedder,
    image_host,
    image_server,
    images,
    server_env,
    start_server,
    tiny_models_dir,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def fuzz_engine() -> ModuleType:
    """``scripts/fuzz_engine.py``: the fuzzing workspace, its fingerprint, the harness."""
    return load_script("fuzz_engine")


@pytest.fixture(scope="session")
def fuzz_inputs() -> ModuleType:
    """``scripts/fuzz_inputs.py``: the fuzzer's input generators and corpus."""
    return load_script("fuzz_inputs")


@pytest.fixture(scope="session")
def template(fuzz_engine: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template workspace: 9 shape images (table ``images``, embedded by the Pixels model
    ``px`` and the tiny CLIP ``c``), bad image files (table ``mixed``), ``captions``, a
    symlink ``link`` leading outside. Copy it before changing anything."""
    return fuzz_engine.build_template(tmp_path_factory.mktemp("template") / "ws", clip=True)


@pytest.fixture
def fresh_ws(fuzz_engine: ModuleType, template: Path, tmp_path: Path) -> Iterator[Any]:
    """A confined (server-like) copy of :func:`template`."""
    folder = tmp_path / "ws"
    shutil.copytree(template, folder, symlinks=True)
    ws = fuzz_engine.open_workspace(folder)
    yield ws
    ws.close()
