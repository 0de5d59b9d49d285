"""Download images named by URL, safely (no SSRF, no unbounded downloads).

Every hop of a download (the first request and each redirect, followed by hand up to a cap):

1. must be ``http`` or ``https``, and not a known cloud-metadata host name;
2. its host is resolved with :func:`socket.getaddrinfo` and EVERY resulting address is vetted:
   loopback, private, link-local, unique-local, site-local, multicast, reserved, unspecified,
   shared (CGNAT), IPv4-mapped/6to4/Teredo/NAT64 forms of those, and cloud-metadata addresses
   (``169.254.169.254``, ``fd00:ec2::254``) are refused unless ``url_allow_hosts`` lists the
   host name or a network holding the address;
3. the connection is then made to the vetted IP itself (the URL's host is replaced by the IP,
   the original ``Host`` header is sent, and for https the TLS SNI and certificate check use
   the original host name), so a DNS answer that changes between check and connect
   (DNS rebinding) cannot redirect the request. Keep-alive is off, so no connection is ever
   reused for another host name.

Downloads are bounded by a connect/read timeout, an overall deadline and a byte cap (a larger
``Content-Length`` is refused at once; a body growing past the cap is dropped mid-stream).
Proxies from the environment are ignored (``trust_env=False``): they would bypass pinning.

Residual risk: an allow-listed host name is trusted with whatever it resolves to.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pixql.errors import ImageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: host names of cloud metadata services, refused before any DNS look-up
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
#: addresses of cloud metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6)
METADATA_IPS = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: longest URL accepted
MAX_URL_CHARS = 4096

#: (reason, test) pairs: an address failing any test is refused, naming the first reason
_FORBIDDEN: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("a cloud metadata address", lambda ip: ip in METADATA_IPS),
    ("a loopback address", lambda ip: ip.is_loopback),
    ("a link-local address", lambda ip: ip.is_link_local),
    ("a multicast address", lambda ip: ip.is_multicast),
    ("an unspecified address", lambda ip: ip.is_unspecified),
    ("a reserved address", lambda ip: ip.is_reserved),
    ("a site-local address", lambda ip: getattr(ip, "is_site_local", False)),
    ("a shared (carrier-grade NAT) address", lambda ip: ip.version == 4 and ip in _CGNAT),
    ("a private address", lambda ip: ip.is_private),
    ("not a globally routable address", lambda ip: not ip.is_global),
)


@dataclass(frozen=True)
class UrlPolicy:
    """Where URL images may come from, and how much of them is read."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    timeout_s: float = 10.0
    total_timeout_s: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = "pixql"
    headers: dict[str, str] = field(default_factory=dict)
    #: CA bundle (PEM) trusted for https images instead of the system's (None: system)
    ca_bundle: str | None = None

    def tls(self) -> ssl.SSLContext:
        """The TLS context for https images (certificates and host names are verified)."""
        if self.ca_bundle:
            return ssl.create_default_context(cafile=self.ca_bundle)
        return httpx.create_ssl_context()  # certifi's bundle, as httpx by default

    @classmethod
    def from_entries(cls, entries: list[str], **kwargs: Any) -> UrlPolicy:
        """Split ``url_allow_hosts`` entries into host names and IP networks."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip().strip("[]"), strict=False))
            except ValueError:
                hosts.add(_normal_host(entry))
        return cls(allow_hosts=frozenset(hosts), allow_networks=tuple(networks), **kwargs)

    def allows(self, ip: IPAddress) -> bool:
        """Whether the allow-list names a network holding ``ip``."""
        return any(ip.version == net.version and ip in net for net in self.allow_networks)


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.version != 6:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be reached (e.g. ``'a loopback address'``), or None when it may."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        reason = address_problem(inner)
        if reason is not None:
            return f"an IPv6 form of {inner}, {reason}"
    return next((reason for reason, test in _FORBIDDEN if test(ip)), None)


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses ``host`` resolves to (IP literals resolve to themselves)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ImageError(f"could not resolve host {host!r} of image URL ({e})") from e
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(seen)


def vet_url(url: httpx.URL, policy: UrlPolicy) -> list[IPAddress]:
    """Check one hop's scheme and host; return its vetted addresses (ImageError if refused)."""
    if url.scheme not in ("http", "https"):
        raise ImageError(f"image URL must be http:// or https://, got {url.scheme or 'no'} scheme")
    host = _normal_host(url.host)
    if not host:
        raise ImageError("image URL has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    if host in METADATA_HOSTS and host not in policy.allow_hosts:
        raise ImageError(f"URL points to a network destination that is not allowed ({host})")
    addresses = resolve_host(host, port)
    if host in policy.allow_hosts:
        return addresses
    for ip in addresses:
        reason = None if policy.allows(ip) else address_problem(ip)
        if reason is not None:
            raise ImageError(
                f"URL points to a network destination that is not allowed: {host} is {ip}, "
                f"{reason} (the server's url_allow_hosts setting can allow it)"
            )
    return addresses


def _pinned_request(client: httpx.Client, url: httpx.URL, ip: IPAddress) -> httpx.Request:
    """A GET of ``url`` that connects to ``ip`` but presents ``url``'s host (Host, SNI)."""
    headers = {
        "Host": url.netloc.decode("ascii"),
        "Accept": "image/*, */*;q=0.5",
        "Accept-Encoding": "identity",  # no decompression bombs
    }
    extensions: dict[str, object] = {}
    if url.scheme == "https" and not _is_ip_literal(url.host):
        extensions["sni_hostname"] = url.host
    return client.build_request(
        "GET", url.copy_with(host=str(ip)), headers=headers, extensions=extensions
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
    client: httpx.Client, url: httpx.URL, addresses: list[IPAddress], deadline: _Deadline
) -> httpx.Response:
    """Send the pinned request to the first vetted address that accepts a connection."""
    error: Exception | None = None
    for ip in addresses:
        request = _pinned_request(client, url, ip)
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


def _follow(client: httpx.Client, url: httpx.URL, policy: UrlPolicy) -> bytes:
    deadline = _Deadline(policy.total_timeout_s)
    for _hop in range(policy.max_redirects + 1):
        addresses = vet_url(url, policy)
        response = _send(client, url, addresses, deadline)
        try:
            if response.status_code in _REDIRECTS:
                url = _next_hop(url, response)
                continue
            if response.status_code >= 400:
                raise ImageError(
                    f"Data pointed by URL could not be decoded into image: the server "
                    f"answered HTTP {response.status_code}"
                )
            return _read_capped(response, policy, deadline)
        finally:
            response.close()
    raise ImageError(f"image URL redirected more than {policy.max_redirects} times")


def fetch_url(url: str, policy: UrlPolicy) -> bytes:
    """Download the bytes at ``url`` under ``policy``; ImageError says why it could not.

    Examples:
        >>> fetch_url("http://127.0.0.1/x.png", UrlPolicy())
        Traceback (most recent call last):
        ...
        pixql.errors.ImageError: URL points to a network destination that is not allowed: \
127.0.0.1 is 127.0.0.1, a loopback address (the server's url_allow_hosts setting can allow it)
    """
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise ImageError(f"image URL must be a string of at most {MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError) as e:
        raise ImageError(f"Provided image URL is invalid ({e})") from e
    timeout = httpx.Timeout(policy.timeout_s)
    limits = httpx.Limits(max_keepalive_connections=0)
    headers = {"User-Agent": policy.user_agent, **policy.headers}
    with httpx.Client(
        timeout=timeout, limits=limits, trust_env=False, follow_redirects=False, headers=headers,
        verify=policy.tls(),
    ) as client:
        try:
            return _follow(client, parsed, policy)
        except httpx.TimeoutException as e:
            raise ImageError(f"timed out fetching image URL ({type(e).__name__})") from e
        except httpx.HTTPError as e:
            raise ImageError(f"could not fetch image URL ({type(e).__name__}: {e})") from e
