"""Registry of model kinds: ``USING <Kind>`` resolves here, case-insensitively.

Kinds register with the :func:`register` decorator. Built-in kinds whose modules import
heavy libraries (torch, open_clip) are registered lazily by module path, so looking up
``pixels`` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pixql.errors import NotFoundError

if TYPE_CHECKING:
    from pixql.models.base import ModelKind

_KINDS: dict[str, type[ModelKind]] = {}

#: kind name → module that registers it on import (imported on first use)
_LAZY: dict[str, str] = {
    "pixels": "pixql.models.pixels",
    "simclr": "pixql.models.simclr.kind",
    "clip": "pixql.models.clip.kind",
}


def register(cls: type[ModelKind]) -> type[ModelKind]:
    """Class decorator: make ``cls`` available as ``USING <cls.display_name>``."""
    _KINDS[cls.name.lower()] = cls
    return cls


def get_kind(name: str) -> type[ModelKind]:
    """The kind registered under ``name`` (case-insensitive); NotFoundError lists the known ones."""
    key = name.lower()
    if key not in _KINDS and key in _LAZY:
        importlib.import_module(_LAZY[key])
    try:
        return _KINDS[key]
    except KeyError:
        known = ", ".join(available_kinds())
        raise NotFoundError(f"unknown model kind {name!r}; available kinds: {known}") from None


def available_kinds() -> list[str]:
    """Display names of all kinds, registered or lazily known."""
    names = {k: cls.display_name for k, cls in _KINDS.items()}
    for key in _LAZY:
        names.setdefault(key, {"pixels": "Pixels", "simclr": "SimCLR", "clip": "CLIP"}[key])
    return sorted(names.values(), key=str.lower)
