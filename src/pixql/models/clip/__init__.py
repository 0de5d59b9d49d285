"""CLIP on open_clip: one embedder shared by the HTTP server and SQL.

Light to import: the names table is torch-free; :func:`load_clip` and :class:`ClipEmbedder`
load torch and open_clip on first access.

Examples:
    >>> from pixql.models.clip import load_clip
    >>> clip = load_clip("ViT-B-32")                             # doctest: +SKIP
    >>> clip.embed(["a black cat"], "text").shape                # doctest: +SKIP
    (1, 512)
"""

from __future__ import annotations

from typing import Any

from pixql.models.clip.names import (
    CLIP_VERSIONS,
    DEFAULT_VERSION_ID,
    ClipVariant,
    get_variant,
    resolve_version_id,
    valid_version_ids,
)

__all__ = [
    "CLIP_VERSIONS",
    "DEFAULT_VERSION_ID",
    "ClipEmbedder",
    "ClipVariant",
    "clear_cache",
    "get_variant",
    "load_clip",
    "resolve_version_id",
    "resolve_weights",
    "valid_version_ids",
]

_LAZY = {
    "ClipEmbedder": "pixql.models.clip.embedder",
    "load_clip": "pixql.models.clip.loader",
    "clear_cache": "pixql.models.clip.loader",
    "resolve_weights": "pixql.models.clip.loader",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixql.models.clip' has no attribute {name!r}")
