"""Download images named by ``http(s)://`` URLs, safely (no SSRF, no unbounded downloads).

One implementation for the server's ``{"type": "url"}`` images and CONVERT's URL values.
Every hop of a download (the first request and each redirect, followed by hand up to a cap):

1. must be ``http`` or ``https``, and not a known cloud-metadata host name;
2. its host's addresses are vetted by :func:`pixql.remote.addresses.vet_host` (loopback,
   private, link-local, metadata... refused unless ``url_allow_hosts`` allows them);
3. the connection is then made to the vetted IP itself (the URL's host is replaced by the IP,
   the original ``Host`` header is sent, and for https the TLS SNI and certificate check use
   the original host name), so a DNS answer that changes between check and connect
   (DNS rebinding) cannot redirect the request. Keep-alive is off, so no connection is ever
   reused for another host name.

Downloads are bounded by a connect/read timeout, an overall deadline and a byte cap (a larger
``Content-Length`` is refused at once; a body growing past the cap is dropped mid-stream).
Proxies from the environment are ignored (``trust_env=False``): they would bypass pinning.
:func:`head_url` asks for the same headers without the body (``HEAD``, else a ``GET`` whose
body is not read): what identifies the version of the object (ETag, Last-Modified, size).

Residual risk: an allow-listed host name is trusted with whatever it resolves to.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import httpx

from pixql.errors import ImageError
from pixql.remote.addresses import (
    MAX_URL_CHARS,
    IPAddress,
    UrlPolicy,
    address_problem,
    resolve_host,
    vet_host,
)

__all__ = ["Fetched", "UrlPolicy", "address_problem", "fetch", "fetch_url", "head_url",
           "resolve_host", "vet_url"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def vet_url(url: httpx.URL, policy: UrlPolicy) -> list[IPAddress]:
    """Check one hop's scheme and host; return its vetted addresses (ImageError if refused)."""
    return vet_host(url.scheme, url.host, url.port, policy)


def _pinned_request(client: httpx.Client, url: httpx.URL, ip: IPAddress,
                    method: str = "GET") -> httpx.Request:
    """A request for ``url`` that connects to ``ip`` but presents ``url``'s host (Host, SNI)."""
    headers = {
        "Host": url.netloc.decode("ascii"),
        "Accept": "image/*, */*;q=0.5",
        "Accept-Encoding": "identity",  # no decompression bombs
    }
    extensions: dict[str, object] = {}
    if url.scheme == "https" and not _is_ip_literal(url.host):
        extensions["sni_hostname"] = url.host
    return client.build_request(
        method, url.copy_with(host=str(ip)), headers=headers, extensions=extensions
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Deadline:
    """The overall time budget of one download."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise ImageError(f"image URL took longer than {self.seconds:g} s to download")
        return left


def _send(
    client: httpx.Client, url: httpx.URL, addresses: list[IPAddress], deadline: _Deadline,
    method: str = "GET",
) -> httpx.Response:
    """Send the pinned request to the first vetted address that accepts a connection."""
    error: Exception | None = None
    for ip in addresses:
        request = _pinned_request(client, url, ip, method)
        timeout = min(client.timeout.read or deadline.left(), deadline.left())
        request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as e:
            error = e
    raise ImageError(f"could not connect to {url.host} to fetch the image ({error})")


def _read_capped(response: httpx.Response, policy: UrlPolicy, deadline: _Deadline) -> bytes:
    """The response body, refusing it as soon as it is known to exceed the byte cap."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise ImageError(
            f"image URL content is {int(declared)} bytes, over the cap of {policy.max_bytes}"
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > policy.max_bytes:
            raise ImageError(f"image URL content is over the cap of {policy.max_bytes} bytes")
        chunks.append(chunk)
        deadline.left()
    return b"".join(chunks)


def _next_hop(url: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise ImageError(f"image URL answered HTTP {response.status_code} without a Location")
    return url.join(location)


@dataclass(frozen=True)
class Fetched:
    """What a download (or :func:`head_url`) got: the body (empty for HEAD) and the
    headers that identify the object's version."""

    data: bytes
    size: int | None  # Content-Length (HEAD) or the body's length
    etag: str | None
    last_modified: str | None


def _fetched(response: httpx.Response, data: bytes | None) -> Fetched:
    declared = response.headers.get("content-length", "")
    size = len(data) if data is not None else (int(declared) if declared.isdigit() else None)
    return Fetched(data or b"", size, response.headers.get("etag"),
                   response.headers.get("last-modified"))


def _follow(client: httpx.Client, url: httpx.URL, policy: UrlPolicy,
            mode: str = "GET") -> Fetched:
    """Follow redirects by hand; ``mode``: ``GET`` (read the body), ``HEAD``, or
    ``GET_HEADERS`` (a GET whose body is not read)."""
    deadline = _Deadline(policy.total_timeout_s)
    for _hop in range(policy.max_redirects + 1):
        addresses = vet_url(url, policy)
        response = _send(client, url, addresses, deadline, "HEAD" if mode == "HEAD" else "GET")
        try:
            if response.status_code in _REDIRECTS:
                url = _next_hop(url, response)
                continue
            if response.status_code >= 400:
                raise HttpStatusError(
                    f"Data pointed by URL could not be decoded into image: the server "
                    f"answered HTTP {response.status_code}", response.status_code)
            return _fetched(response, _read_capped(response, policy, deadline)
                            if mode == "GET" else None)
        finally:
            response.close()
    raise ImageError(f"image URL redirected more than {policy.max_redirects} times")


class HttpStatusError(ImageError):
    """The server answered an error status (``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _parse(url: str) -> httpx.URL:
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise ImageError(f"image URL must be a string of at most {MAX_URL_CHARS} characters")
    try:
        return httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError) as e:
        raise ImageError(f"Provided image URL is invalid ({e})") from e


def _request(url: str, policy: UrlPolicy, method: str) -> Fetched:
    parsed = _parse(url)
    timeout = httpx.Timeout(policy.timeout_s)
    limits = httpx.Limits(max_keepalive_connections=0)
    headers = {"User-Agent": policy.user_agent, **policy.headers}
    with httpx.Client(
        timeout=timeout, limits=limits, trust_env=False, follow_redirects=False, headers=headers,
        verify=policy.tls(),
    ) as client:
        try:
            return _follow(client, parsed, policy, method)
        except httpx.TimeoutException as e:
            raise ImageError(f"timed out fetching image URL ({type(e).__name__})") from e
        except httpx.HTTPError as e:
            raise ImageError(f"could not fetch image URL ({type(e).__name__}: {e})") from e


def fetch(url: str, policy: UrlPolicy) -> Fetched:
    """Download ``url`` under ``policy``: its bytes and version headers."""
    return _request(url, policy, "GET")


def head_url(url: str, policy: UrlPolicy) -> Fetched:
    """The version headers of ``url`` (same rules, no body): ``HEAD``, else — when the
    server does not take HEAD (405, 501) — a ``GET`` whose body is not read."""
    try:
        return _request(url, policy, "HEAD")
    except HttpStatusError as e:
        if e.status not in (405, 501):
            raise
    return _request(url, policy, "GET_HEADERS")


def fetch_url(url: str, policy: UrlPolicy) -> bytes:
    """Download the bytes at ``url`` under ``policy``; ImageError says why it could not.

    Examples:
        >>> fetch_url("http://127.0.0.1/x.png", UrlPolicy())
        Traceback (most recent call last):
        ...
        pixql.errors.ImageError: URL points to a network destination that is not allowed: \
127.0.0.1 is 127.0.0.1, a loopback address (the url_allow_hosts setting, \
$PIXQL_URL_ALLOW_HOSTS, can allow it)
    """
    return fetch(url, policy).data
