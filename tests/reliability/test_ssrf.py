"""URL images (SSRF), the cases tests/server/test_fetch.py does not have: other spellings of
loopback, user-info tricks, other schemes, mixed DNS answers, a redirect to a name that
resolves inside, and a body trickling in under the read timeout but past the deadline."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from pixql.errors import ImageError
from pixql.remote.http import UrlPolicy, fetch_url

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.mark.parametrize("url", [
    "http://2130706433/a.png",             # 127.0.0.1 as one decimal number
    "http://017700000001/a.png",           # octal
    "http://127.1/a.png",                  # short form
    "http://0/a.png",                      # 0.0.0.0
    "http://[::ffff:7f00:1]/a.png",        # IPv4-mapped, hex
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",  # IPv4-mapped, long
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[::]/a.png",
    "http://8.8.8.8@127.0.0.1/a.png",     # user-info: the host is 127.0.0.1
    "http://127.0.0.1:80#@8.8.8.8/a.png",
    "http://localhost./a.png",
    "http://LOCALHOST/a.png",
    "http://metadata.google.internal./computeMetadata/v1/",
])
def test_other_spellings_of_inside_addresses(url: str) -> None:
    with pytest.raises(ImageError) as info:
        fetch_url(url, UrlPolicy())
    assert "not allowed" in str(info.value) or "metadata" in str(info.value), info.value


@pytest.mark.parametrize("url", ["gopher://127.0.0.1:70/", "data:image/png;base64,AAAA",
                                 "javascript:alert(1)", "dict://127.0.0.1:11211/",
                                 "//127.0.0.1/a.png", "http:///a.png", "http://", ""])
def test_other_schemes_and_broken_urls(url: str) -> None:
    with pytest.raises(ImageError):
        fetch_url(url, UrlPolicy())


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host name → addresses answered by getaddrinfo (others resolve normally)."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def lookup(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [info for ip in answers[host] for info in real(ip, port, *args, **kwargs)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return answers


def test_a_name_with_one_inside_address_among_public_ones_is_refused(
    fake_dns: dict[str, list[str]],
) -> None:
    fake_dns["mixed.pixql.test"] = ["93.184.216.34", "10.1.2.3"]
    with pytest.raises(ImageError, match=r"10\.1\.2\.3, a private address"):
        fetch_url("http://mixed.pixql.test/a.png", UrlPolicy())


class Handler(BaseHTTPRequestHandler):
    """``/redirect?to=URL`` and ``/drip`` (one byte every 0.2 s, forever)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        try:
            for _ in range(200):
                self.wfile.write(b"\x89")
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirect_to_a_name_resolving_inside_is_refused(
    host: str, fake_dns: dict[str, list[str]],
) -> None:
    """Each hop is resolved and vetted again: the first hop is allowed, the second is not."""
    fake_dns["inside.pixql.test"] = ["192.168.7.7"]
    policy = UrlPolicy.from_entries(["127.0.0.1"], timeout_s=1, total_timeout_s=5)
    with pytest.raises(ImageError, match=r"192\.168\.7\.7, a private address"):
        fetch_url(f"http://{host}/redirect?to=http://inside.pixql.test/a.png", policy)


def test_a_trickling_body_stops_at_the_overall_deadline(host: str) -> None:
    policy = UrlPolicy.from_entries(["127.0.0.1"], timeout_s=1, total_timeout_s=1.5)
    with pytest.raises(ImageError, match=r"took longer than 1\.5 s"):  # not after the 40 s drip
        fetch_url(f"http://{host}/drip", policy)
