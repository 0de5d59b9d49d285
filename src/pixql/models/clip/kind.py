"""Model kind ``CLIP``: register pretrained CLIP weights as a named model (no training).

::

    BUILD MODEL my_clip USING CLIP OPTIONS (clip_version_id='ViT-B-32')
    BUILD MODEL tiny USING CLIP OPTIONS (path='weights/tiny-clip')     -- hub-layout folder
    CONVERT USING my_clip OPTIONS (convert_type='image') AS SELECT * FROM photos
    SEARCH IMAGE USING my_clip OPTIONS (search_by='text', search_input='a black cat',
                                         emb_col='convert_result') AS SELECT * FROM photos

Building loads the weights once (so missing or corrupt files fail the BUILD, not a later
CONVERT) through :func:`~pixql.models.clip.loader.load_clip`, whose per-process cache the
HTTP server shares. Nothing is written next to the config: the weights stay where they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from pixql.errors import ProgrammingError
from pixql.models.base import BuildContext, BuildOptions, BuildResult, Embedder, ModelKind
from pixql.models.clip.names import CLIP_VERSIONS, resolve_version_id
from pixql.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from pixql.models.clip.embedder import ClipEmbedder


class ClipOptions(BuildOptions):
    """BUILD MODEL options of ``CLIP``."""

    clip_version_id: str | None = Field(
        default=None,
        description="Roboflow name of the OpenAI CLIP weights (default $CLIP_VERSION_ID or "
        "ViT-B-16); with path, only the model's label",
    )
    path: str | None = Field(
        default=None,
        description="folder in open_clip's hub layout (open_clip_config.json + "
        "open_clip_model.safetensors); workspace-relative or absolute",
    )
    video_frames: int = Field(default=8, ge=1, le=256, description="frames sampled per video")
    device: str = Field(default="cpu", description="torch device, e.g. 'cpu' or 'cuda'")
    backend: str | None = Field(
        default=None,
        description="runtime of the embeddings: torch, onnx, onnx-int8, openvino, "
        "openvino-int8 or auto (default $PIXQL_CLIP_BACKEND or auto: on the CPU the fastest "
        "installed one keeping cosine >= 0.99 vs torch, else torch)",
    )

    @field_validator("clip_version_id")
    @classmethod
    def _known_version(cls, value: str | None) -> str | None:
        if value is not None and value not in CLIP_VERSIONS:
            raise ValueError(f"unknown clip_version_id; valid values: {', '.join(CLIP_VERSIONS)}")
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        from pixql.models.clip.backends import BACKENDS

        if value is not None and value not in BACKENDS:
            raise ValueError(f"unknown backend; valid values: {', '.join(BACKENDS)}")
        return value


@register
class Clip(ModelKind):
    """Model kind ``CLIP`` (pretrained; BUILD records which weights to use)."""

    name: ClassVar[str] = "clip"
    display_name: ClassVar[str] = "CLIP"
    build_options = ClipOptions
    needs_data: ClassVar[bool] = False
    convert_defaults: ClassVar[dict[str, Any]] = {"batch_size": 16}

    @classmethod
    def build(cls, ctx: BuildContext, options: BuildOptions) -> BuildResult:
        """Resolve and load the weights; record version, absolute path and dimension."""
        assert isinstance(options, ClipOptions)
        if ctx.rows is not None:
            raise ProgrammingError(
                f"BUILD MODEL {ctx.name} USING CLIP takes no AS query: CLIP is pretrained. "
                "Drop the AS SELECT ... part, then CONVERT your table with the model."
            )
        version = resolve_version_id(options.clip_version_id)
        path = str(Path(ctx.resolve(options.path)).absolute()) if options.path else None
        embedder = _load(version, path, options.video_frames, options.device, options.backend)
        config = {
            "clip_version_id": version,
            "path": path,
            "video_frames": options.video_frames,
            "device": options.device,
            "backend": options.backend,
        }
        summary = {"epochs": 0, "weights": embedder.source, "model_id": embedder.model_id,
                   "backend": embedder.backend}
        return BuildResult(config=config, dim=embedder.dim, summary=summary,
                           modalities=tuple(sorted(embedder.modalities)))

    @classmethod
    def load(cls, artifact_dir: Path | None, config: dict[str, Any]) -> Embedder:
        """The shared :class:`ClipEmbedder` for the recorded version and path.

        CLIP keeps nothing in ``artifact_dir``: ``config`` alone names the weights, so the
        server loads ``clip/<version>`` with ``artifact_dir=None`` and a config that may
        also name ``models_dir`` (the folder of ``<version>/`` weight folders).
        """
        return _load(str(config["clip_version_id"]), config.get("path"),
                     int(config.get("video_frames", 8)), str(config.get("device", "cpu")),
                     config.get("backend"), models_dir=config.get("models_dir"))

    @classmethod
    def unload(cls, config: dict[str, Any] | None = None) -> None:
        """Drop the loader's cached models of ``config``'s version (all of them: None)."""
        from pixql.models.clip import loader

        if config is None:
            loader.clear_cache()
        else:
            loader.evict(str(config["clip_version_id"]))


def _load(
    version: str, path: str | None, video_frames: int, device: str, backend: str | None = None,
    *, models_dir: str | None = None,
) -> ClipEmbedder:
    from pixql.models.clip.loader import load_clip

    return load_clip(version, path=path, models_dir=models_dir, device=device,
                     video_frames=video_frames, backend=backend)
