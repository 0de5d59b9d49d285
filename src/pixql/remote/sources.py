"""Read the objects URL values name, and tell which version of each was read.

=============== ============================================================================
scheme          read through
=============== ============================================================================
``http(s)://``  :mod:`pixql.remote.http`: every hop's addresses vetted, the connection
                pinned to the vetted address, byte cap, timeouts (the server's rules)
``s3://``       fsspec (``s3fs``); a custom ``s3_endpoint_url`` is vetted like an http host
``gs://``       fsspec (``gcsfs``'s JSON-API filesystem); a custom ``gcs_endpoint_url``
                likewise
=============== ============================================================================

Settings (:class:`UrlSettings`) keep the server's names: ``url_allow_hosts``,
``url_timeout_s``, ``url_total_timeout_s``, ``url_max_bytes``, ``url_max_redirects``,
``url_ca_bundle``, read from ``PIXQL_<NAME>`` unless given (``pixql.connect(...,
url_settings={...})``; ``pixql serve`` passes its own). The object-store libraries
(fsspec, s3fs, gcsfs) and httpx are imported on first use: without them a URL value fails
with an error naming the ``pixql[cloud]`` extra.

A version *signature* ``(size, token)`` identifies what was read: ``size`` in bytes (-2:
unknown) and ``token`` a 63-bit hash of the store's version validators (ETag,
Last-Modified, generation / version id; 0 when it gives none); ``(-1, -1)`` when the object
cannot be reached. CONVERT stores it in the provenance column's ``file_size`` /
``file_mtime_ns`` fields and re-embeds a row when it changes.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pixql.errors import ImageError, OptionError
from pixql.remote.addresses import UrlPolicy, vet_host

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: the signature of an object that cannot be reached (as a missing file's)
UNREACHABLE = (-1, -1)
#: the size of a signature when the store does not say
UNKNOWN_SIZE = -2
#: the extra that brings the URL readers
EXTRA = "pixql[cloud]"
#: URL scheme → the module (pip package) that reads it
MODULES = {"http": "httpx", "https": "httpx", "s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
#: fsspec info keys that identify an object's version, in order
VERSION_KEYS = ("ETag", "etag", "LastModified", "last_modified", "updated", "mtime",
                "generation", "VersionId", "version_id")
_MIB = 1024 * 1024


def is_url(value: Any) -> bool:
    """Whether ``value`` is a URL pixql reads (``http(s)://``, ``s3://``, ``gs://``).

    Examples:
        >>> is_url("s3://bucket/a.png"), is_url("images/a.png"), is_url("HTTP://x/a.png")
        (True, False, True)
    """
    if not isinstance(value, str):
        return False
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.lower() in MODULES


def _env_bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class UrlSettings:
    """Where URL values may come from and how they are read (see the module docstring)."""

    url_allow_hosts: tuple[str, ...] = ()
    url_timeout_s: float = 10.0
    url_total_timeout_s: float = 30.0
    url_max_bytes: int = 20 * _MIB
    url_max_redirects: int = 5
    url_ca_bundle: str | None = None
    #: S3: endpoint of an S3-compatible store (MinIO, ...; vetted), unsigned requests
    s3_endpoint_url: str | None = None
    s3_anon: bool = False
    #: GCS: endpoint (an emulator; vetted), anonymous access
    gcs_endpoint_url: str | None = None
    gcs_anon: bool = False
    #: more fsspec storage options per protocol (``{"s3": {"client_kwargs": ...}}``)
    storage_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: False: URL values are refused (a server with ``allow_url_input`` off)
    enabled: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> UrlSettings:
        """Settings from ``PIXQL_<NAME>`` variables, then ``overrides`` (which win)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"PIXQL_{f.name.upper()}")
            if raw is None or f.name in ("storage_options", "enabled"):
                continue
            values[f.name] = _from_text(f.name, raw, cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise OptionError(f"unknown URL setting(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(known))}", option=unknown[0],
                              allowed=sorted(known))
        values.update(overrides)
        if isinstance(values.get("url_allow_hosts"), (list, str)):
            hosts = values["url_allow_hosts"]
            values["url_allow_hosts"] = tuple(
                h.strip() for h in (hosts.split(",") if isinstance(hosts, str) else hosts)
                if h.strip())
        return cls(**values)

    def policy(self) -> UrlPolicy:
        """The address rules and limits of http(s) downloads (and of custom endpoints)."""
        return UrlPolicy.from_entries(
            list(self.url_allow_hosts), timeout_s=self.url_timeout_s,
            total_timeout_s=self.url_total_timeout_s, max_bytes=self.url_max_bytes,
            max_redirects=self.url_max_redirects, ca_bundle=self.url_ca_bundle)


def _from_text(name: str, raw: str, cls: type[UrlSettings]) -> Any:
    default = getattr(cls(), name)
    try:
        if isinstance(default, bool):
            return _env_bool(raw)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            return type(default)(raw)
    except ValueError:
        raise OptionError(f"${'PIXQL_' + name.upper()} must be a number, got {raw!r}",
                          option=name) from None
    if isinstance(default, tuple):
        return tuple(h.strip() for h in raw.split(",") if h.strip())
    return raw or None


#: object-store protocol → (module, class) of its fsspec filesystem. gcsfs's plain JSON-API
#: filesystem: its default export (ExtendedGcsFileSystem, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT)
#: first asks a gRPC control plane for each bucket's layout, which an emulator or a
#: restricted network answers only after a minute's timeout.
FILESYSTEMS = {"s3": ("s3fs", "S3FileSystem"), "gs": ("gcsfs.core", "GCSFileSystem")}


def _import(scheme: str) -> Any:
    """The filesystem class of ``scheme`` (None for http); ImageError naming the extra
    when its library is missing."""
    module = MODULES[scheme]
    try:
        importlib.import_module(module)
        if module == "httpx":
            return None
        mod, cls = FILESYSTEMS["gs" if scheme == "gcs" else scheme]
        return getattr(importlib.import_module(mod), cls)
    except ImportError as e:
        raise ImageError(f"reading {scheme}:// URLs needs {module} ({e.name or module} is "
                         f"not installed): pip install '{EXTRA}'") from None


def token_hash(*validators: Any) -> int:
    """A 63-bit hash of the version validators given (0 when all are empty)."""
    parts = [str(v) for v in validators if v not in (None, "")]
    if not parts:
        return 0
    digest = hashlib.md5("\x00".join(parts).encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class UrlReader:
    """Reads URL values under one :class:`UrlSettings` (thread-safe; picklable settings
    travel to Ray workers, the reader is rebuilt there)."""

    def __init__(self, settings: UrlSettings | None = None) -> None:
        self.settings = settings if settings is not None else UrlSettings.from_env()
        self._policy = self.settings.policy()
        self._fs: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: scheme → (read bytes, signature) of a URL
        self.readers: dict[str, tuple[Callable[[str], bytes],
                                      Callable[[str], tuple[int, int]]]] = {
            "http": (self._http_read, self._http_sig),
            "https": (self._http_read, self._http_sig),
            "s3": (self._fs_read, self._fs_sig),
            "gs": (self._fs_read, self._fs_sig),
            "gcs": (self._fs_read, self._fs_sig),
        }

    def _scheme(self, url: str) -> str:
        if not self.settings.enabled:
            raise ImageError(f"{url}: reading images from URLs is disabled here")
        scheme = url.partition("://")[0].lower()
        if scheme not in self.readers:
            raise ImageError(f"{url}: not a URL pixql reads; schemes: "
                             f"{', '.join(sorted(self.readers))}")
        return scheme

    def read(self, url: str) -> bytes:
        """The object's bytes; ImageError naming ``url`` and the reason when impossible."""
        scheme = self._scheme(url)
        try:
            return self.readers[scheme][0](url)
        except ImageError as e:
            raise ImageError(f"{url}: {e}", paths=[url]) from None

    def signature(self, url: str) -> tuple[int, int]:
        """``(size, version token)`` of the object; :data:`UNREACHABLE` when it cannot be
        reached (refused, missing, an error)."""
        try:
            return self.readers[self._scheme(url)][1](url)
        except Exception:  # noqa: BLE001 - any failure means: not readable now
            return UNREACHABLE

    def check(self, url: str) -> str | None:
        """Why ``url`` cannot be reached from here, or None (the Ray probe)."""
        try:
            scheme = self._scheme(url)
            if scheme in ("http", "https"):
                self._http_head(url)
            else:
                self._info(url)
        except Exception as e:  # noqa: BLE001 - the reason is the answer
            return f"{url}: {e}"
        return None

    # -- http(s) ------------------------------------------------------------------------
    def _http_read(self, url: str) -> bytes:
        _import("http")
        from pixql.remote.http import fetch

        return fetch(url, self._policy).data

    def _http_head(self, url: str) -> Any:
        _import("http")
        from pixql.remote.http import head_url

        return head_url(url, self._policy)

    def _http_sig(self, url: str) -> tuple[int, int]:
        got = self._http_head(url)
        size = got.size if got.size is not None else UNKNOWN_SIZE
        return size, token_hash(got.etag, got.last_modified)

    # -- object stores (fsspec) ---------------------------------------------------------
    def filesystem(self, scheme: str) -> Any:
        """The fsspec filesystem of ``s3`` / ``gs`` under these settings (made once)."""
        protocol = "gs" if scheme == "gcs" else scheme
        with self._lock:
            fs = self._fs.get(protocol)
            if fs is None:
                fs = _import(protocol)(skip_instance_cache=True,
                                       **self.storage_options(protocol))
                self._fs[protocol] = fs
            return fs

    def storage_options(self, protocol: str) -> dict[str, Any]:
        """fsspec options of ``protocol``; a custom endpoint is vetted first."""
        s = self.settings
        endpoint, anon = ((s.s3_endpoint_url, s.s3_anon) if protocol == "s3"
                          else (s.gcs_endpoint_url, s.gcs_anon))
        opts: dict[str, Any] = {}
        if endpoint:
            parts = urlsplit(endpoint)
            vet_host(parts.scheme, parts.hostname or "", parts.port, self._policy)
            opts["endpoint_url"] = endpoint
        if anon:
            opts["anon" if protocol == "s3" else "token"] = True if protocol == "s3" else "anon"
        opts.update(s.storage_options.get(protocol, {}))
        return opts

    def _info(self, url: str) -> dict[str, Any]:
        fs = self.filesystem(self._scheme(url))
        try:
            fs.invalidate_cache(url)  # a listing cached earlier must not hide a change
            info: dict[str, Any] = fs.info(url)
        except FileNotFoundError:
            raise ImageError("no such object") from None
        except ImageError:
            raise
        except Exception as e:  # noqa: BLE001 - the store's own error types
            raise ImageError(f"{type(e).__name__}: {e}") from None
        return info

    def _fs_read(self, url: str) -> bytes:
        """The object, in one ranged GET of at most the cap + 1 bytes (no info request
        first); its info is asked only when that fails or is over the cap, for the error."""
        fs = self.filesystem(self._scheme(url))
        cap = self.settings.url_max_bytes
        try:
            data: bytes = fs.cat_file(url, start=0, end=cap + 1)
        except FileNotFoundError:
            raise ImageError("no such object") from None
        except Exception as e:  # noqa: BLE001 - the store's own error types
            size = self._info(url).get("size")  # its ImageError when the store cannot say
            if size == 0:  # S3 refuses any range of an empty object (416)
                return b""
            _check_cap(size, cap)
            raise ImageError(f"{type(e).__name__}: {e}") from None
        if len(data) > cap:
            _check_cap(self._info(url).get("size"), cap)
            raise ImageError(f"object is over the cap of {cap} bytes (url_max_bytes)")
        return data

    def _fs_sig(self, url: str) -> tuple[int, int]:
        info = self._info(url)
        size = info.get("size")
        return (int(size) if isinstance(size, int) else UNKNOWN_SIZE,
                token_hash(*(info.get(k) for k in VERSION_KEYS)))


def _check_cap(size: Any, cap: int) -> None:
    """ImageError when the store says the object is over the cap."""
    if isinstance(size, int) and size > cap:
        raise ImageError(f"object is {size} bytes, over the cap of {cap} (url_max_bytes)")


_default: UrlReader | None = None


def default_reader() -> UrlReader:
    """A reader of the environment's settings (callers without settings of their own)."""
    global _default
    if _default is None:
        _default = UrlReader()
    return _default
