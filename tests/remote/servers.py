"""Real servers on 127.0.0.1 for the URL-reading tests: a folder over HTTP (with or without
version validators) and an S3 store (moto's server, when installed)."""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class FolderHandler(SimpleHTTPRequestHandler):
    """Serves a folder (GET and HEAD); ``validators``: send ETag (md5 of the content) and
    Last-Modified, or neither (a plain server: Content-Length only)."""

    validators = True

    def end_headers(self) -> None:
        if self.validators and self.command in ("GET", "HEAD"):
            path = self.translate_path(self.path)
            try:
                with open(path, "rb") as f:
                    self.send_header("ETag", '"' + hashlib.md5(f.read()).hexdigest() + '"')
            except OSError:
                pass
        super().end_headers()

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "last-modified" and not self.validators:
            return
        super().send_header(keyword, value)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def serve_folder(root: Path, *, validators: bool = True) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` serving ``root`` until the block ends."""
    handler = type("Handler", (FolderHandler,), {"validators": validators})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def moto_s3() -> Iterator[str]:
    """An S3 endpoint ``http://127.0.0.1:PORT`` (moto's server, from ``moto[server]``)."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:  # a free port on loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextmanager
def gcs_emulator(bucket: str) -> Iterator[str]:
    """A GCS endpoint ``http://127.0.0.1:PORT`` (gcp-storage-emulator, in memory) with
    ``bucket``; the caller skips the test when the emulator is not installed."""
    import socket

    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
