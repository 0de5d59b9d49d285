"""Helpers for tests, docs and demos: small models that need no download.

Heavy libraries (torch, open_clip) are imported only when a helper is called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["make_tiny_clip", "make_tiny_clip_models_dir"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pixql.testing import tiny_clip

        return getattr(tiny_clip, name)
    raise AttributeError(f"module 'pixql.testing' has no attribute {name!r}")
