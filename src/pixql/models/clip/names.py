"""Roboflow's ``clip_version_id`` names and the open_clip model each one maps to.

Roboflow (and OpenAI's ``clip`` package) name the nine OpenAI CLIP checkpoints ``RN50`` …
``ViT-L-14-336px``; open_clip names the same architectures ``RN50`` … ``ViT-L-14-336`` and
their weights ``pretrained='openai'``. The OpenAI checkpoints were trained with QuickGELU,
so the open_clip model must be built with ``force_quick_gelu=True`` (open_clip's built-in
configs default to plain GELU).

This module imports neither torch nor open_clip: the server can validate names cheaply.

Examples:
    >>> get_variant("ViT-L-14-336px").open_clip_name
    'ViT-L-14-336'
    >>> resolve_version_id(None) in CLIP_VERSIONS
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pixql.errors import ModelError

#: Roboflow's default (``CLIP_VERSION_ID`` env var overrides it)
DEFAULT_VERSION_ID = "ViT-B-16"
#: environment variable naming the default version, as in Roboflow's server
VERSION_ENV = "CLIP_VERSION_ID"


@dataclass(frozen=True)
class ClipVariant:
    """One OpenAI CLIP checkpoint under its Roboflow name and its open_clip names."""

    #: Roboflow's ``clip_version_id``
    version_id: str
    #: open_clip architecture name (``open_clip.create_model(name, ...)``)
    open_clip_name: str
    #: open_clip pretrained tag
    pretrained: str
    #: Hugging Face Hub repository holding the weights in open_clip's hub layout
    hf_hub: str
    #: input side in pixels
    image_size: int
    #: embedding dimension
    dim: int
    #: the checkpoint was trained with QuickGELU activations
    quick_gelu: bool = True

    @property
    def model_id(self) -> str:
        """Roboflow's model id, ``clip/<version_id>``."""
        return f"clip/{self.version_id}"


def _v(version: str, name: str, hub: str, size: int, dim: int) -> ClipVariant:
    return ClipVariant(version, name, "openai", f"timm/{hub}.openai", size, dim)


#: Roboflow ``clip_version_id`` → variant (the nine ids Roboflow documents)
CLIP_VERSIONS: dict[str, ClipVariant] = {
    v.version_id: v
    for v in (
        _v("RN50", "RN50", "resnet50_clip", 224, 1024),
        _v("RN101", "RN101", "resnet101_clip", 224, 512),
        _v("RN50x4", "RN50x4", "resnet50x4_clip", 288, 640),
        _v("RN50x16", "RN50x16", "resnet50x16_clip", 384, 768),
        _v("RN50x64", "RN50x64", "resnet50x64_clip", 448, 1024),
        _v("ViT-B-16", "ViT-B-16", "vit_base_patch16_clip_224", 224, 512),
        _v("ViT-B-32", "ViT-B-32", "vit_base_patch32_clip_224", 224, 512),
        _v("ViT-L-14", "ViT-L-14", "vit_large_patch14_clip_224", 224, 768),
        _v("ViT-L-14-336px", "ViT-L-14-336", "vit_large_patch14_clip_336", 336, 768),
    )
}


def valid_version_ids() -> list[str]:
    """The accepted ``clip_version_id`` values, in Roboflow's documented order."""
    return list(CLIP_VERSIONS)


def resolve_version_id(version_id: str | None = None) -> str:
    """``version_id``, else ``$CLIP_VERSION_ID``, else ``'ViT-B-16'``; validated."""
    chosen = version_id or os.environ.get(VERSION_ENV, "").strip() or DEFAULT_VERSION_ID
    get_variant(chosen)
    return chosen


def get_variant(version_id: str) -> ClipVariant:
    """The variant named ``version_id``; ModelError lists the valid names otherwise."""
    try:
        return CLIP_VERSIONS[version_id]
    except (KeyError, TypeError):
        valid = ", ".join(CLIP_VERSIONS)
        raise ModelError(
            f"unknown clip_version_id {version_id!r}; valid values: {valid}"
        ) from None
