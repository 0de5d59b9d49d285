"""Server settings: one pydantic model, filled from the environment and CLI overrides.

Nothing is read at import time: :meth:`ServerSettings.from_env` reads the environment when
called, so tests and the CLI build settings explicitly.

Environment variables (the first one set wins; Roboflow's names are accepted for
compatibility):

=========================  ==============================================================
field                      variables
=========================  ==============================================================
host / port                ``PIXQL_HOST`` / ``PIXQL_PORT``
api_keys                   ``PIXQL_API_KEYS`` (comma-separated)
clip_version_id            ``PIXQL_CLIP_VERSION_ID``, ``CLIP_VERSION_ID``
clip_models_dir            ``PIXQL_CLIP_MODELS_DIR``
preload_models             ``PIXQL_PRELOAD_MODELS``, ``PRELOAD_MODELS`` (comma-separated)
max_prompts                ``PIXQL_MAX_PROMPTS``, ``CLIP_MAX_BATCH_SIZE``
max_images                 ``PIXQL_MAX_IMAGES``
url_allow_hosts            ``PIXQL_URL_ALLOW_HOSTS`` (comma-separated hosts, IPs or CIDRs)
allowed_dirs               ``PIXQL_ALLOWED_DIRS`` (folders separated by ``os.pathsep``, ``:``
                           on Linux and macOS, like ``PATH``)
others                     ``PIXQL_<FIELD NAME IN CAPITALS>``
=========================  ==============================================================

Examples:
    >>> s = ServerSettings.from_env(port=9002, api_keys=["k1"])
    >>> s.port, s.max_prompts
    (9002, 8)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from pixql.images import DEFAULT_MAX_PIXELS

MIB = 1024 * 1024

#: fields whose environment values are comma-separated lists
_LIST_FIELDS = frozenset({"api_keys", "preload_models", "url_allow_hosts", "cors_origins"})
#: fields whose environment values are lists of paths, separated by os.pathsep (like PATH)
_PATH_LIST_FIELDS = frozenset({"allowed_dirs"})


class ServerSettings(BaseModel):
    """Everything ``pixql serve`` can be configured with (all limits have safe defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    #: field → extra environment variables read before ``PIXQL_<FIELD>``
    ENV_ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {
        "clip_version_id": ("PIXQL_CLIP_VERSION_ID", "CLIP_VERSION_ID"),
        "preload_models": ("PIXQL_PRELOAD_MODELS", "PRELOAD_MODELS"),
        "max_prompts": ("PIXQL_MAX_PROMPTS", "CLIP_MAX_BATCH_SIZE"),
    }

    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=9001, ge=0, le=65535, description="TCP port (0: any free one)")
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="accepted API keys; empty: no authentication (every request is allowed)",
    )
    clip_version_id: str | None = Field(
        default=None,
        description="default clip_version_id (None: $CLIP_VERSION_ID, else 'ViT-B-16')",
    )
    clip_models_dir: Path | None = Field(
        default=None,
        description="folder of <version_id>/ CLIP weights (None: the loader's default, "
        "$PIXQL_CLIP_MODELS_DIR)",
    )
    device: str = Field(default="cpu", description="torch device the models run on")
    preload_models: list[str] = Field(
        default_factory=list,
        description="models loaded at start-up, e.g. 'clip/ViT-B-32'; /readiness waits for them",
    )
    max_prompts: int = Field(default=8, ge=1, description="most prompts one /clip/compare takes")
    max_images: int = Field(default=8, ge=1, description="most images one /clip/embed_image takes")
    max_texts: int = Field(default=64, ge=1, description="most texts one /clip/embed_text takes")
    max_text_chars: int = Field(
        default=4096, ge=1, description="longest text (characters) accepted before tokenizing"
    )
    max_body_bytes: int = Field(default=32 * MIB, ge=1024, description="request body cap")
    max_image_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=1, description="decoded image cap (width × height)"
    )
    allow_url_input: bool = Field(default=True, description="accept {'type': 'url'} images")
    allow_file_input: bool = Field(
        default=False,
        description="accept {'type': 'file'} images (only paths inside the workspace)",
    )
    allowed_dirs: list[Path] = Field(
        default_factory=list,
        description="folders outside the workspace that SQL over HTTP (pixql serve -w) and "
        "{'type': 'file'} images may use too (symlinks are resolved first); empty: the "
        "workspace only",
    )
    url_allow_hosts: list[str] = Field(
        default_factory=list,
        description="host names, IPs or CIDRs that URL images may reach even though they are "
        "private, loopback or link-local (e.g. '127.0.0.1' for tests)",
    )
    url_timeout_s: float = Field(default=10.0, gt=0, description="connect and read timeout")
    url_total_timeout_s: float = Field(
        default=30.0, gt=0, description="deadline for one image download, redirects included"
    )
    url_max_bytes: int = Field(default=20 * MIB, ge=1, description="download size cap")
    url_max_redirects: int = Field(default=5, ge=0, description="redirects followed at most")
    url_ca_bundle: Path | None = Field(
        default=None, description="PEM CA bundle trusted for https images (None: the system's)"
    )
    cors_origins: list[str] = Field(default_factory=list, description="CORS allowed origins")
    batching: bool = Field(
        default=True,
        description="micro-batch the items of concurrent requests into one forward pass "
        "per model (see docs/performance-server.md)",
    )
    max_batch: int = Field(default=32, ge=1, description="most items in one batched forward")
    batch_wait_ms: float = Field(
        default=3.0, ge=0, le=1000,
        description="longest wait for more items after the first of a batch (only while "
        "other requests are still preparing theirs)",
    )
    torch_threads: int | None = Field(
        default=None, ge=1,
        description="intra-op torch threads of the batch workers (None: usable cores - 1, "
        "at least 1)",
    )
    embedding_cache_size: int = Field(
        default=4096, ge=0,
        description="embeddings kept in the LRU cache of texts and base64 images (0: off)",
    )
    pg_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="serve the workspace over the PostgreSQL protocol on this TCP port too "
        "(0: any free one; None: off); see docs/clients/postgresql.md")
    pg_host: str = Field(default="127.0.0.1", description="interface of the PostgreSQL port")
    enable_sql: bool = Field(
        default=False,
        description="mount POST /sql (also on whenever api_keys are configured)")

    @field_validator("api_keys")
    @classmethod
    def _non_empty_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        if any(not k.get_secret_value() for k in keys):
            raise ValueError("API keys must not be empty strings")
        return keys

    @property
    def sql_enabled(self) -> bool:
        """Whether SQL is served (``POST /sql``, ThanoSQL's API): asked for, or implied by
        configured keys or by a PostgreSQL port."""
        return self.enable_sql or bool(self.api_keys) or self.pg_port is not None

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must carry one of :attr:`api_keys`."""
        return bool(self.api_keys)

    @classmethod
    def env_names(cls, field: str) -> tuple[str, ...]:
        """Environment variables read for ``field``, in priority order."""
        return cls.ENV_ALIASES.get(field, (f"PIXQL_{field.upper()}",))

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, /, **overrides: Any
    ) -> ServerSettings:
        """Settings from ``env`` (default ``os.environ``), then ``overrides`` (None: unset).

        Examples:
            >>> ServerSettings.from_env({"CLIP_MAX_BATCH_SIZE": "4"}).max_prompts
            4
            >>> ServerSettings.from_env({}, port=None).port
            9001
        """
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in cls.model_fields:
            raw = next((source[n] for n in cls.env_names(field) if source.get(n)), None)
            if raw is not None:
                values[field] = _parse_env(field, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def public_dict(self) -> dict[str, Any]:
        """The settings without secrets (safe to log or show)."""
        out = self.model_dump(mode="json", exclude={"api_keys"})
        out["auth_enabled"] = self.auth_enabled
        return out


def _parse_env(field: str, raw: str) -> str | list[str]:
    """An environment value: a list for list fields, else the stripped text."""
    if field in _PATH_LIST_FIELDS:
        return _split(raw, os.pathsep)
    return _split(raw) if field in _LIST_FIELDS else raw.strip()


def _split(raw: str, sep: str = ",") -> list[str]:
    return [part.strip() for part in raw.split(sep) if part.strip()]


def url_settings(settings: ServerSettings) -> dict[str, Any]:
    """The server's URL rules as the workspace's (CONVERT over ``/sql`` reads URL values
    under the same SSRF rules and caps as ``{'type': 'url'}`` images)."""
    return {"url_allow_hosts": tuple(settings.url_allow_hosts),
            "url_timeout_s": settings.url_timeout_s,
            "url_total_timeout_s": settings.url_total_timeout_s,
            "url_max_bytes": settings.url_max_bytes,
            "url_max_redirects": settings.url_max_redirects,
            "url_ca_bundle": str(settings.url_ca_bundle) if settings.url_ca_bundle else None,
            "enabled": settings.allow_url_input}

