"""Live-server fixtures: real uvicorn servers on 127.0.0.1, a tiny CLIP, a local image host.

Servers are module-scoped (each test module starts its own, in a background thread) and
read the tiny CLIP through ``PIXQL_CLIP_MODELS_DIR`` + ``CLIP_VERSION_ID``, which are set
for the module's duration only.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest

from pixql.server.settings import ServerSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

VERSION = "ViT-B-32"
TXT = "The quick brown fox jumps over the lazy dog."


def png_bytes(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (200, 30, 30),
              *, fmt: str = "PNG") -> bytes:
    """A small image with a gradient (so different sizes/colours embed differently)."""
    from PIL import Image

    w, h = size
    ramp = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None]
    arr = np.clip(np.broadcast_to(ramp, (h, w, 3)).astype(np.int16) // 2 + np.array(color) // 2,
                  0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def b64_image(data: bytes) -> dict[str, str]:
    """A Roboflow base64 image declaration."""
    return {"type": "base64", "value": base64.b64encode(data).decode("ascii")}


# ---------------------------------------------------------------------- image host
class ImageHandler(BaseHTTPRequestHandler):
    """Serves test images and misbehaviours (redirects, loops, slowness, huge bodies)."""

    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              *, length: bool = True) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.seen_hosts.append(self.headers.get("Host"))
        route = ROUTES.get(url.path)
        try:
            if route is None:
                self._send(404, b"not found")
            else:
                route(self, query)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeouts, byte caps): expected


def _image(h: ImageHandler, q: dict[str, str]) -> None:
    h._send(200, h.server.images[q.get("name", "red")], {"Content-Type": "image/png"})


def _redirect(h: ImageHandler, q: dict[str, str]) -> None:
    h._send(302, b"", {"Location": q["to"]})


def _loop(h: ImageHandler, q: dict[str, str]) -> None:
    n = int(q.get("n", "0"))
    h._send(302, b"", {"Location": f"/loop?n={n + 1}"})


def _slow(h: ImageHandler, q: dict[str, str]) -> None:
    time.sleep(float(q.get("s", "3")))
    _image(h, q)


def _big(h: ImageHandler, q: dict[str, str]) -> None:
    size = int(q.get("bytes", "1000000"))
    if q.get("chunked"):
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.end_headers()  # no length: the client must count
        for _ in range(size // 10_000):
            h.wfile.write(b"\0" * 10_000)
        return
    h._send(200, b"\0" * size, {"Content-Type": "image/png"})


def _text(h: ImageHandler, q: dict[str, str]) -> None:
    h._send(200, b"hello, not an image", {"Content-Type": "text/plain"})


ROUTES: dict[str, Callable[[ImageHandler, dict[str, str]], None]] = {
    "/image.png": _image, "/redirect": _redirect, "/loop": _loop, "/slow": _slow,
    "/big": _big, "/text": _text,
}


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    """Named test images (PNG bytes)."""
    return {
        "red": png_bytes(),
        "blue": png_bytes((64, 48), (20, 40, 220)),
        "wide": png_bytes((90, 20), (20, 200, 40)),
        "jpeg": png_bytes((50, 50), (120, 120, 30), fmt="JPEG"),
    }


@pytest.fixture(scope="session")
def image_server(images: dict[str, bytes]) -> Iterator[ThreadingHTTPServer]:
    """A local image server (see ROUTES); ``.seen_hosts`` lists the Host headers it got."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.daemon_threads = True
    server.images = images  # type: ignore[attr-defined]
    server.seen_hosts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def image_host(image_server: ThreadingHTTPServer) -> str:
    """``http://127.0.0.1:<port>`` of :func:`image_server`."""
    return f"http://127.0.0.1:{image_server.server_address[1]}"


# ---------------------------------------------------------------------- CLIP + servers
@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding a tiny random CLIP as ``ViT-B-32/``."""
    from pixql.testing.tiny_clip import make_tiny_clip_models_dir

    return make_tiny_clip_models_dir(tmp_path_factory.mktemp("clip-models"), VERSION)


@pytest.fixture(scope="module")
def server_env(tiny_models_dir: Path) -> Iterator[Path]:
    """The CLIP environment of this module's servers (restored afterwards)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIXQL_CLIP_MODELS_DIR", str(tiny_models_dir))
        mp.setenv("CLIP_VERSION_ID", VERSION)
        mp.setenv("PIXQL_OFFLINE", "1")
        mp.delenv("PIXQL_API_KEYS", raising=False)
        yield tiny_models_dir


@pytest.fixture(scope="module")
def embedder(server_env: Path) -> Any:
    """The very embedder the servers use (``load_clip`` caches per process)."""
    from pixql.models.clip import load_clip

    return load_clip(VERSION, models_dir=server_env)


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free port in a thread; yield its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def start_server(server_env: Path) -> Iterator[Callable[..., tuple[str, Any]]]:
    """Factory: ``start_server(workspace=None, **settings)`` → (base URL, app)."""
    from pixql.server.app import create_app

    stack: list[Any] = []

    def start(workspace: Any = None, **overrides: Any) -> tuple[str, Any]:
        app = create_app(ServerSettings.from_env(**overrides), workspace=workspace)
        ctx = live_server(app)
        base = ctx.__enter__()
        stack.append(ctx)
        return base, app

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


#: settings of the main test server: loopback images allowed, small caps, short timeouts
OPEN_SERVER = {
    "url_allow_hosts": ["127.0.0.1"],
    "url_timeout_s": 0.5,
    "url_total_timeout_s": 5.0,
    "url_max_bytes": 100_000,
    "max_body_bytes": 200_000,
    "max_text_chars": 1000,
}


@pytest.fixture(scope="module")
def open_server(start_server: Callable[..., tuple[str, Any]]) -> tuple[str, Any]:
    """(base URL, app) of a server without keys, allowing images from 127.0.0.1."""
    return start_server(**OPEN_SERVER)


@pytest.fixture(scope="module")
def base(open_server: tuple[str, Any]) -> str:
    """Base URL of :func:`open_server`."""
    return open_server[0]


@pytest.fixture(scope="module")
def client(base: str) -> Iterator[httpx.Client]:
    """An httpx client for :func:`open_server`."""
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c
