"""The two interfaces every model plugs into: :class:`ModelKind` and :class:`Embedder`.

A *model kind* (``Pixels``, ``SimCLR``, ``CLIP``) knows how to build a model from rows
(training, or just recording a configuration) and how to load a built model from its
artifact folder as an :class:`Embedder`.

An *embedder* is staged, so SQL (CONVERT/SEARCH) and HTTP (``/clip/*``) call the very
same object:

``preprocess`` (one item → CPU array/tensor; thread-safe, runs in worker threads)
→ ``forward`` (a list of preprocessed items → model output on its device)
→ ``postprocess`` (output → ``float32`` numpy ``(n, dim)``, L2-normalised by default).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence
    from pathlib import Path

    import pyarrow as pa

#: Modalities an embedder may accept. Items: PIL images for "image", ``str`` for "text",
#: a file path (``str``) for "video" and "audio".
MODALITIES = ("image", "text", "video", "audio")


class Options(BaseModel):
    """Base of every options model: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class BuildOptions(Options):
    """Options every BUILD MODEL accepts."""

    overwrite: bool = Field(default=False, description="replace a model of the same name")


class Embedder(ABC):
    """A loaded model that turns items of one or more modalities into vectors."""

    #: embedding dimension
    dim: int
    #: subset of :data:`MODALITIES` this embedder accepts
    modalities: frozenset[str] = frozenset({"image"})
    #: a stable identifier, e.g. ``"pixels"`` or ``"clip/ViT-B-32"``
    model_id: str = ""
    #: the folder the weights were read from when they live outside the model's artifacts
    #: (CLIP's weights folder; None otherwise): the server's readiness checks it is there
    weights_folder: Path | None = None

    @abstractmethod
    def preprocess(self, item: Any, modality: str) -> Any:
        """Turn one raw item into model input (CPU only; must be thread-safe)."""

    @abstractmethod
    def forward(self, batch: Sequence[Any], modality: str) -> Any:
        """Run the model on a batch of preprocessed items."""

    def batches(self, modality: str) -> bool:
        """Whether one forward over a batch beats forwards of its items one by one (the
        server micro-batches concurrent requests only then). True for most models; False
        where the forward runs row by row anyway (CLIP's ``onnx-int8`` towers)."""
        return True

    def postprocess(self, output: Any, *, normalize: bool = True) -> np.ndarray:
        """Model output → ``float32`` array ``(n, dim)``, L2-normalised unless told not to."""
        if hasattr(output, "detach"):
            output = output.detach().float().cpu().numpy()
        arr = np.ascontiguousarray(np.asarray(output, dtype=np.float32))
        if normalize:
            arr = l2_normalize(arr)
        return arr

    def embed(
        self, items: Sequence[Any], modality: str, *, normalize: bool = True
    ) -> np.ndarray:
        """All three stages on a list of raw items, in order. ``(len(items), dim)``."""
        self.check_modality(modality)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = [self.preprocess(item, modality) for item in items]
        return self.postprocess(self.forward(batch, modality), normalize=normalize)

    def check_modality(self, modality: str) -> None:
        """Raise a clear ModelError when this embedder cannot embed ``modality``."""
        if modality not in self.modalities:
            from pixql.errors import ModelError

            allowed = ", ".join(sorted(self.modalities))
            raise ModelError(
                f"model {self.model_id or type(self).__name__!r} cannot embed {modality}; "
                f"it embeds: {allowed}"
            )


@dataclass
class BuildContext:
    """What a model kind gets to build a model.

    ``artifact_dir`` is an empty folder of its own: write weights there. The engine moves it
    into place atomically once the build succeeds. ``rows`` is the AS query's result (or
    ``None`` when BUILD has no AS query); ``resolve`` turns a path as stored in a table into
    an absolute :class:`Path` (relative paths are relative to the workspace root).
    """

    name: str
    artifact_dir: Path
    workspace: Path
    rows: pa.Table | None
    resolve: Any  # Callable[[str], Path]
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildResult:
    """What a build returns: enough to load the model again, plus a summary for users."""

    config: dict[str, Any]
    dim: int
    summary: dict[str, Any] = field(default_factory=dict)
    metric: str = "cosine"
    modalities: tuple[str, ...] = ("image",)


class ModelKind(ABC):
    """A family of models, registered by name (see :mod:`pixql.models.registry`)."""

    #: registry key, lower-case (``USING SimCLR`` resolves to ``"simclr"``)
    name: ClassVar[str]
    #: the spelling shown to users
    display_name: ClassVar[str]
    #: pydantic model of the BUILD MODEL options (must derive from BuildOptions)
    build_options: ClassVar[type[BuildOptions]] = BuildOptions
    #: whether BUILD needs an AS query (training data)
    needs_data: ClassVar[bool] = True
    #: defaults for CONVERT options that differ per kind (e.g. CLIP's batch_size=16)
    convert_defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    @abstractmethod
    def build(cls, ctx: BuildContext, options: BuildOptions) -> BuildResult:
        """Build (train) a model; write its weights under ``ctx.artifact_dir``."""

    @classmethod
    @abstractmethod
    def load(cls, artifact_dir: Path | None, config: dict[str, Any]) -> Embedder:
        """Load a built model from its artifact folder and the config ``build`` returned.

        SQL loads a workspace's models so (:meth:`pixql.workspace.Workspace.load_embedder`),
        and so does the server. ``artifact_dir`` is None for a model named by ``config``
        alone, outside any workspace (the server's ``clip/<version>``); a kind whose models
        live in their artifacts raises ModelError then (see :func:`require_artifacts`).
        """

    @classmethod
    def unload(cls, config: dict[str, Any] | None = None) -> None:
        """Forget what this kind keeps loaded for reuse between callers: the model
        ``config`` names, or every one (None). The default keeps nothing."""
        return None


def require_artifacts(kind: str, artifact_dir: Path | None) -> Path:
    """``artifact_dir``, or ModelError when a model of ``kind`` is loaded without one."""
    if artifact_dir is None:
        from pixql.errors import ModelError

        raise ModelError(f"a {kind} model is loaded from its artifact folder in a workspace; "
                         f"it cannot be named by its configuration alone")
    return artifact_dir


def l2_normalize(arr: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation of a 2-D float32 array (zero rows stay zero)."""
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return (arr / np.maximum(norms, eps)).astype(np.float32, copy=False)
