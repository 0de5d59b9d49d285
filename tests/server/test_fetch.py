"""URL images: SSRF refusals (every hop, after DNS), pinning, timeouts and byte caps."""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from pixql.errors import ImageError
from pixql.remote.http import UrlPolicy, address_problem, fetch_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

LOOPBACK = UrlPolicy.from_entries(["127.0.0.1"], timeout_s=0.5, total_timeout_s=5,
                                  max_bytes=100_000)


def url_error(client: httpx.Client, url: str) -> str:
    r = client.post("/clip/embed_image", json={"image": {"type": "url", "value": url}})
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert message.startswith("Could not load input image. Cause: image: ")
    return message


# ---------------------------------------------------------------------- address rules
@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.1.20", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::5", "private"),
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("239.1.2.3", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("::ffff:127.0.0.1", "IPv6 form of 127.0.0.1"),
        ("::ffff:10.1.1.1", "IPv6 form of 10.1.1.1"),
        ("64:ff9b::a9fe:a9fe", "IPv6 form of 169.254.169.254"),
        ("2002:7f00:1::1", "IPv6 form of 127.0.0.1"),
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_allow_list_takes_hosts_ips_and_cidrs() -> None:
    policy = UrlPolicy.from_entries(["127.0.0.1", "10.0.0.0/8", "Images.Local.", "[::1]"])
    assert policy.allow_hosts == frozenset({"images.local"})
    assert policy.allows(ipaddress.ip_address("10.2.3.4"))
    assert policy.allows(ipaddress.ip_address("::1"))
    assert not policy.allows(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not policy.allows(ipaddress.ip_address("192.168.0.1"))


# ---------------------------------------------------------------------- unit: fetch_url
@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("ftp://example.com/a.png", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal"),
        ("http://127.0.0.1:9/a.png", "loopback"),
        ("http://[::ffff:127.0.0.1]:9/a.png", "IPv6 form of 127.0.0.1"),
        ("http://localhost:9/a.png", "loopback"),
        ("http://0x7f000001/a.png", "loopback"),
    ],
)
def test_fetch_refuses_before_connecting(url: str, cause: str) -> None:
    with pytest.raises(ImageError) as info:
        fetch_url(url, UrlPolicy())
    assert cause in str(info.value)


def test_dns_is_resolved_once_and_the_vetted_ip_is_pinned(
    image_host: str, images: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebinding DNS answer (loopback first, then elsewhere) cannot redirect the fetch."""
    port = int(image_host.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "images.pixql.test":
            lookups.append(host)
            target = "127.0.0.1" if len(lookups) == 1 else "192.0.2.1"
            return real(target, *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://images.pixql.test:{port}/image.png?name=blue"
    assert fetch_url(url, LOOPBACK) == images["blue"]
    assert lookups == ["images.pixql.test"]  # httpx connected to the IP, no second look-up


def test_pinned_request_sends_the_original_host_header(
    image_host: str, image_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = int(image_host.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real(
        "127.0.0.1" if host == "named.pixql.test" else host, *a, **k))
    fetch_url(f"http://named.pixql.test:{port}/image.png", LOOPBACK)
    assert image_server.seen_hosts[-1] == f"named.pixql.test:{port}"


# ---------------------------------------------------------------------- through the server
@pytest.mark.parametrize(
    ("target", "cause"),
    [
        ("http://10.0.0.1/a.png", "10.0.0.1, a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://[::ffff:127.0.0.1]/a.png", "IPv6 form of 127.0.0.1"),
        ("http://[fd00:ec2::254]/", "a cloud metadata address"),
    ],
)
def test_redirect_to_a_forbidden_address_is_refused(
    client: httpx.Client, image_host: str, target: str, cause: str
) -> None:
    message = url_error(client, f"{image_host}/redirect?to={target}")
    assert "not allowed" in message
    assert cause in message


def test_redirect_to_an_allowed_address_is_followed(
    client: httpx.Client, image_host: str
) -> None:
    target = f"{image_host}/image.png?name=red"
    r = client.post("/clip/embed_image", json={"image": {
        "type": "url", "value": f"{image_host}/redirect?to={target}"}})
    assert r.status_code == 200


def test_redirect_loop_stops_at_the_cap(client: httpx.Client, image_host: str) -> None:
    assert "redirected more than 5 times" in url_error(client, f"{image_host}/loop")


def test_slow_server_hits_the_timeout(client: httpx.Client, image_host: str) -> None:
    assert "timed out" in url_error(client, f"{image_host}/slow?s=2")


@pytest.mark.parametrize("chunked", ["", "1"])
def test_oversized_download_hits_the_byte_cap(
    client: httpx.Client, image_host: str, chunked: str
) -> None:
    message = url_error(client, f"{image_host}/big?bytes=1000000&chunked={chunked}")
    assert "over the cap of 100000" in message


@pytest.mark.parametrize(
    ("path", "cause"),
    [("/missing.png", "HTTP 404"), ("/text", "not a decodable image")],
)
def test_bad_responses(client: httpx.Client, image_host: str, path: str, cause: str) -> None:
    assert cause in url_error(client, f"{image_host}{path}")


def test_loopback_without_the_allow_list_is_refused(
    start_server: Callable[..., tuple[str, Any]], image_host: str
) -> None:
    base, _ = start_server()
    with httpx.Client(base_url=base, timeout=30) as strict:
        for url in (f"{image_host}/image.png", "http://10.0.0.1/a.png",
                    "http://169.254.169.254/", "http://[::ffff:127.0.0.1]/a.png"):
            assert "not allowed" in url_error(strict, url)


def test_url_input_can_be_disabled(start_server: Callable[..., tuple[str, Any]],
                                   image_host: str) -> None:
    base, _ = start_server(allow_url_input=False, url_allow_hosts=["127.0.0.1"])
    with httpx.Client(base_url=base, timeout=30) as c:
        assert "URL is disabled" in url_error(c, f"{image_host}/image.png")


# ---------------------------------------------------------------------- https + pinning
@pytest.fixture(scope="module")
def tls_host(
    tmp_path_factory: pytest.TempPathFactory, image_server: Any
) -> Iterator[tuple[int, str]]:
    """An https image server for ``images.pixql.test`` (self-signed): (port, CA file)."""
    import shutil
    import ssl
    import subprocess
    import threading
    from http.server import ThreadingHTTPServer

    from tests.server.conftest import ImageHandler

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=images.pixql.test", "-addext", "subjectAltName=DNS:images.pixql.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.images = image_server.images  # type: ignore[attr-defined]
    server.seen_hosts = []  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], str(cert)
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """``*.pixql.test`` resolves to 127.0.0.1."""
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real(
        "127.0.0.1" if str(host).endswith(".pixql.test") else host, *a, **k))


def test_https_is_pinned_with_sni_and_certificate_checks(
    tls_host: tuple[int, str], images: dict[str, bytes], fake_dns: None
) -> None:
    port, ca = tls_host
    policy = UrlPolicy.from_entries(["127.0.0.1"], ca_bundle=ca)
    assert fetch_url(f"https://images.pixql.test:{port}/image.png", policy) == images["red"]
    # same IP, another name: the certificate does not match it, so the fetch fails
    with pytest.raises(ImageError, match=r"CERTIFICATE_VERIFY_FAILED.*[Hh]ostname mismatch"):
        fetch_url(f"https://other.pixql.test:{port}/image.png", policy)
    # an untrusted certificate fails too
    with pytest.raises(ImageError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_url(f"https://images.pixql.test:{port}/image.png",
                  UrlPolicy.from_entries(["127.0.0.1"]))
