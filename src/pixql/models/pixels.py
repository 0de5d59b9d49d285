"""``Pixels``: a training-free baseline that embeds an image as its resized grey pixels.

Raw-pixel retrieval is a genuine baseline (precision@10 ≈ 0.92 on MNIST) and needs neither
torch nor weights, so every SQL feature can be tested with it in seconds::

    BUILD MODEL px USING Pixels OPTIONS (image_size=16) AS SELECT * FROM images
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from pixql.models.base import BuildContext, BuildOptions, BuildResult, Embedder, ModelKind
from pixql.models.registry import register

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


class PixelsOptions(BuildOptions):
    """BUILD MODEL options of ``Pixels``."""

    image_size: int = Field(default=16, ge=1, le=512, description="side of the square grid")
    grayscale: bool = Field(default=True, description="embed grey levels (False: RGB)")
    image_col: str = Field(default="image_path", description="ignored by Pixels; accepted")
    center: bool = Field(
        default=True, description="subtract each image's mean before normalising"
    )


class PixelsEmbedder(Embedder):
    """Resize → (optionally) grey → flatten → centre → L2-normalise."""

    modalities = frozenset({"image"})

    def __init__(self, image_size: int, grayscale: bool = True, center: bool = True) -> None:
        self.image_size = image_size
        self.grayscale = grayscale
        self.center = center
        self.dim = image_size * image_size * (1 if grayscale else 3)
        self.model_id = f"pixels/{image_size}{'' if grayscale else '-rgb'}"

    def preprocess(self, item: Any, modality: str) -> np.ndarray:
        from PIL import Image

        img = item.convert("L" if self.grayscale else "RGB")
        img = img.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.float32).reshape(-1) / 255.0

    def forward(self, batch: Sequence[np.ndarray], modality: str) -> np.ndarray:
        arr = np.stack(list(batch)).astype(np.float32, copy=False)
        if self.center:
            arr = arr - arr.mean(axis=1, keepdims=True)
        return arr


@register
class Pixels(ModelKind):
    """Model kind ``Pixels`` (no training)."""

    name: ClassVar[str] = "pixels"
    display_name: ClassVar[str] = "Pixels"
    build_options = PixelsOptions
    needs_data: ClassVar[bool] = False

    @classmethod
    def build(cls, ctx: BuildContext, options: BuildOptions) -> BuildResult:
        assert isinstance(options, PixelsOptions)
        emb = PixelsEmbedder(options.image_size, options.grayscale, options.center)
        config = {"image_size": options.image_size, "grayscale": options.grayscale,
                  "center": options.center}
        rows = 0 if ctx.rows is None else ctx.rows.num_rows
        return BuildResult(config=config, dim=emb.dim,
                           summary={"epochs": 0, "images": rows, "final_loss": None})

    @classmethod
    def load(cls, artifact_dir: Path | None, config: dict[str, Any]) -> Embedder:
        return PixelsEmbedder(int(config["image_size"]), bool(config.get("grayscale", True)),
                              bool(config.get("center", True)))
