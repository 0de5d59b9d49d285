"""A live pixql server for the client tests: real uvicorn on 127.0.0.1 (in a thread), a
workspace with generated images and a Pixels model, a tiny random CLIP for the CLIP routes."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

import pixql
from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

VERSION = "ViT-B-32"
KEY = "client-test-key"


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a background thread; yield its URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-client-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="package")
def clip_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny CLIP as ``ViT-B-32`` in a models folder the server reads (env restored after)."""
    from pixql.testing.tiny_clip import make_tiny_clip_models_dir

    models = make_tiny_clip_models_dir(tmp_path_factory.mktemp("clip-models"), VERSION)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIXQL_CLIP_MODELS_DIR", str(models))
        mp.setenv("CLIP_VERSION_ID", VERSION)
        mp.setenv("PIXQL_OFFLINE", "1")
        mp.delenv("PIXQL_API_KEYS", raising=False)
        mp.delenv("PIXQL_URL", raising=False)
        mp.delenv("PIXQL_API_KEY", raising=False)
        yield models


@pytest.fixture(scope="package")
def server_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A workspace with ``images`` (12 generated shapes), Pixels model ``px`` and its
    ``convert_result`` column, opened confined as ``pixql serve`` does."""
    root = tmp_path_factory.mktemp("client-ws") / "ws"
    make_image_folder(root / "shapes", per_class=3)
    with pixql.connect(root, progress=False) as db:
        db.sql("COPY images OPTIONS (if_exists='replace') FROM 'shapes/';"
               "BUILD MODEL px USING Pixels OPTIONS (image_size=8) AS SELECT * FROM images;"
               "CONVERT USING px AS SELECT * FROM images")
    db = pixql.connect(root, progress=False, confined=True)
    yield db
    db.close()


def _start(stack: list[Any], workspace: Any, **settings: Any) -> str:
    from pixql.errors import MissingDependencyError
    from pixql.server.app import create_app
    from pixql.server.settings import ServerSettings

    try:
        app = create_app(ServerSettings.from_env(**settings), workspace=workspace)
    except MissingDependencyError:  # the /sql route is not there yet: serve without it
        settings.pop("enable_sql", None)
        app = create_app(ServerSettings.from_env(**settings), workspace=workspace)
    ctx = live_server(app)
    stack.append(ctx)
    return ctx.__enter__()


@pytest.fixture(scope="package")
def servers(clip_env: Path, server_ws: Any) -> Iterator[dict[str, str]]:
    """Base URLs: ``open`` (no key) and ``secured`` (needs :data:`KEY`), both with /sql;
    ``nosql`` without it."""
    stack: list[Any] = []
    urls = {
        "open": _start(stack, server_ws, enable_sql=True),
        "secured": _start(stack, server_ws, enable_sql=True, api_keys=[KEY]),
        "nosql": _start(stack, server_ws),
    }
    yield urls
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture(scope="package")
def base(servers: dict[str, str]) -> str:
    return servers["open"]


@pytest.fixture
def client(base: str) -> Iterator[pixql.Client]:
    with pixql.Client(base, timeout=30) as c:
        yield c
