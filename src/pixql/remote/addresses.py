"""Which network destinations a URL may reach (the SSRF rules of every URL pixql reads).

A host is resolved with :func:`socket.getaddrinfo` and EVERY resulting address is vetted:
loopback, private, link-local, unique-local, site-local, multicast, reserved, unspecified,
shared (CGNAT), IPv4-mapped/6to4/Teredo/NAT64 forms of those, and cloud-metadata addresses
(``169.254.169.254``, ``fd00:ec2::254``) are refused unless ``url_allow_hosts`` lists the
host name or a network holding the address; cloud-metadata host names are refused before
any look-up. Standard library only: :mod:`pixql.remote.http` (downloads, needs httpx) and
:mod:`pixql.remote.sources` (object-store endpoints) both vet through here.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pixql.errors import ImageError

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

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


#: CA bundle (None: certifi's) → its TLS context (thread-safe once made)
_TLS: dict[str | None, ssl.SSLContext] = {}
_TLS_LOCK = threading.Lock()


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
        """The TLS context for https images (certificates and host names are verified),
        made once per CA bundle: loading a bundle costs tens of milliseconds, more than a
        small image's download."""
        import ssl  # only where https is read: it costs a few ms to import

        with _TLS_LOCK:
            context = _TLS.get(self.ca_bundle)
            if context is None:
                if self.ca_bundle:
                    context = ssl.create_default_context(cafile=self.ca_bundle)
                else:
                    import httpx

                    context = httpx.create_ssl_context()  # certifi's bundle, as httpx's
                _TLS[self.ca_bundle] = context
            return context

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


def vet_host(scheme: str, host: str, port: int | None, policy: UrlPolicy) -> list[IPAddress]:
    """Check one hop's scheme and host; return its vetted addresses (ImageError if refused)."""
    if scheme not in ("http", "https"):
        raise ImageError(f"image URL must be http:// or https://, got {scheme or 'no'} scheme")
    host = _normal_host(host)
    if not host:
        raise ImageError("image URL has no host")
    port = port or (443 if scheme == "https" else 80)
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
                f"{reason} (the url_allow_hosts setting, $PIXQL_URL_ALLOW_HOSTS, can allow it)"
            )
    return addresses
