"""A tiny, randomly initialised CLIP saved in open_clip's Hugging Face hub layout.

Real CLIP weights cannot be downloaded everywhere (CI, air-gapped machines), yet the CLIP
code path — loading, preprocessing bound to the weights, tokenization, the HTTP server and
SQL — should run end to end. :func:`make_tiny_clip` writes a ~13 MB model that open_clip
loads exactly like a downloaded checkpoint::

    folder/
      open_clip_config.json         {"model_cfg": {...}, "preprocess_cfg": {...}}
      open_clip_model.safetensors   the state dict

Its embeddings are meaningless (random weights) but deterministic for a given ``seed``.

Examples:
    >>> from pixql.testing.tiny_clip import make_tiny_clip
    >>> folder = make_tiny_clip(tmp_path / "tiny")
    >>> from pixql.models.clip import load_clip
    >>> load_clip("ViT-B-32", path=folder, backend="torch").dim
    32
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: file names of open_clip's hub layout
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"

#: OpenAI's CLIP normalisation constants (open_clip.constants.OPENAI_DATASET_MEAN/STD)
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_clip_config(*, embed_dim: int = 32, image_size: int = 32) -> dict[str, Any]:
    """The ``open_clip_config.json`` content of the tiny model.

    A ViT (width 64, 2 layers, patch 8) and a text transformer (width 64, 2 layers) with the
    real tokenizer's vocabulary (49,408) and context length (77), so open_clip's default
    tokenizer works unchanged.
    """
    model_cfg = {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": image_size,
            "layers": 2,
            "width": 64,
            "head_width": 32,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    }
    preprocess_cfg = {
        "mean": list(_OPENAI_MEAN),
        "std": list(_OPENAI_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}


def make_tiny_clip(
    folder: Path | str, *, seed: int = 0, embed_dim: int = 32, image_size: int = 32
) -> Path:
    """Write a tiny random CLIP in open_clip's hub layout into ``folder``; return ``folder``.

    Args:
        folder: created if missing; existing files of the layout are overwritten.
        seed: torch seed of the random initialisation (same seed → same weights).
        embed_dim: embedding dimension of both towers' projections.
        image_size: input side in pixels (a multiple of the patch size, 8).

    Returns:
        ``folder`` as an absolute :class:`Path`.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    if image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 (the patch size), got {image_size}")
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_clip_config(embed_dim=embed_dim, image_size=image_size)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = open_clip.CLIP(**config["model_cfg"])
    finally:
        torch.random.set_rng_state(generator_state)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def make_tiny_clip_models_dir(
    root: Path | str, version_id: str = "ViT-B-32", *, seed: int = 0, embed_dim: int = 32
) -> Path:
    """Create ``root/<version_id>/`` holding a tiny CLIP; return ``root``.

    With ``PIXQL_CLIP_MODELS_DIR=root`` (or ``load_clip(version_id, models_dir=root)``),
    ``clip_version_id=version_id`` then resolves to the tiny model without any download.
    """
    root = Path(root).absolute()
    make_tiny_clip(root / version_id, seed=seed, embed_dim=embed_dim)
    return root
