"""``ClipEmbedder``: an open_clip model behind pixql's staged :class:`Embedder` interface.

The same object serves SQL (``CONVERT``/``SEARCH IMAGE``) and HTTP (``/clip/*``):

* ``preprocess(image, "image")`` — the transform bound to the weights (open_clip's
  ``create_model_from_pretrained``: resize (bicubic), centre crop, CLIP mean/std) applied
  to the PIL image converted to RGB → ``(3, H, W)`` float tensor.
* ``preprocess(text, "text")`` — the string itself; tokenization happens per batch in
  ``forward`` so each batch is padded to its *longest* text, not always to 77 tokens.
* ``preprocess(path, "video")`` — ``video_frames`` frames sampled evenly → ``(N, 3, H, W)``.
* ``forward`` — ``encode_image`` / ``encode_text`` under :func:`torch.inference_mode`, or
  the runners of another backend (ONNX Runtime, OpenVINO) when ``towers`` is set (see
  :mod:`pixql.models.clip.backends`).
* ``postprocess(normalize=True)`` — L2-normalised ``float32``; ``normalize=False`` returns the
  raw projections (what Roboflow's server returns).
"""

from __future__ import annotations

import gc
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from pixql.errors import ModelError
from pixql.models.base import Embedder
from pixql.models.clip.text import can_trim, encode_text_trimmed, trim_padding

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Sequence

    from pixql.models.clip.towers import ClipModule, Tokenizer, Towers

log = logging.getLogger(__name__)


class ClipEmbedder(Embedder):
    """CLIP image/text/video embedder built on open_clip.

    Args:
        model: an open_clip ``CLIP`` (or ``CustomTextCLIP``) model.
        preprocess: the inference image transform bound to the weights.
        tokenizer: open_clip's tokenizer for the model.
        version_id: Roboflow's ``clip_version_id`` (``model_id`` is ``clip/<version_id>``).
        dim: embedding dimension (``embed_dim`` of the model config).
        source: where the weights came from (a folder, or ``"open_clip:<name>/openai"``).
        video_frames: frames sampled per video.
        towers: runners replacing the torch towers (``None``: torch; see
            :func:`pixql.models.clip.backends.attach_backend`).
        weights_folder: the folder the weights were read from (None: downloaded, or built
            in memory).
        reload: builds the same torch model again (the loader passes one); with it, a
            backend that computes both towers without torch may free the torch model
            (:meth:`release_torch`), and :attr:`model` reloads it if it is needed again.

    Thread safety: ``preprocess`` and ``forward`` may be called from several threads at once;
    inference on the (read-only, eval-mode) torch module is re-entrant and the tokenizer's
    mutable BPE cache is guarded by a lock.
    """

    modalities = frozenset({"image", "text", "video"})

    def __init__(
        self,
        model: ClipModule,
        preprocess: Callable[[Any], torch.Tensor],
        tokenizer: Tokenizer,
        *,
        version_id: str,
        dim: int,
        source: str = "",
        video_frames: int = 8,
        towers: Towers | None = None,
        weights_folder: Path | None = None,
        reload: Callable[[], ClipModule] | None = None,
    ) -> None:
        if video_frames < 1:
            raise ValueError(f"video_frames must be >= 1, got {video_frames}")
        self._model: ClipModule | None = model.eval().requires_grad_(False)
        self._reload = reload
        self._model_lock = threading.Lock()
        self._context_length = int(getattr(model, "context_length", 0)
                                   or tokenizer.context_length)
        self._can_trim = can_trim(model)
        self.image_transform = preprocess
        self.tokenizer = tokenizer
        self.version_id = version_id
        self.model_id = f"clip/{version_id}"
        self.dim = int(dim)
        self.source = source
        self.video_frames = video_frames
        self.towers = towers
        self.weights_folder = weights_folder
        #: the export cache folder of these weights (set by the backends on first use)
        self._export_folder: Path | None = None
        self.device = next(model.parameters()).device
        self._tokenizer_lock = threading.Lock()
        self._preprocessors: dict[str, Callable[[Any], Any]] = {
            "image": self._preprocess_image,
            "text": self._preprocess_text,
            "video": self._preprocess_video,
        }
        self._forwards: dict[str, Callable[[Sequence[Any]], torch.Tensor]] = {
            "image": self._forward_image,
            "text": self._forward_text,
            "video": self._forward_video,
        }

    def __repr__(self) -> str:
        return (f"ClipEmbedder({self.model_id!r}, dim={self.dim}, source={self.source!r}, "
                f"backend={self.backend!r})")

    # ------------------------------------------------------------------ torch model
    @property
    def model(self) -> ClipModule:
        """open_clip's torch model; loaded again (once, with a warning) if it was released."""
        model = self._model
        if model is None:
            with self._model_lock:
                if self._model is None:
                    if self._reload is None:  # pragma: no cover - release_torch refuses
                        raise ModelError(f"{self.model_id}: the torch model was released")
                    log.warning("CLIP %s: loading the torch model again (a backend handed a "
                                "tower back to torch)", self.model_id)
                    self._model = self._reload().eval().requires_grad_(False)
                model = self._model
        return model

    @property
    def torch_loaded(self) -> bool:
        """Whether the torch model is in memory (False after :meth:`release_torch`)."""
        return self._model is not None

    def release_torch(self) -> bool:
        """Free the torch model (its weights) if it can be loaded again; True if freed.

        Backends call this once both towers run elsewhere (see
        :func:`pixql.models.clip.backends.attach_backend`)."""
        with self._model_lock:
            if self._reload is None or self._model is None:
                return False
            self._model = None
        free_heap()
        log.info("CLIP %s: torch model released (the backend computes both towers)",
                 self.model_id)
        return True

    @property
    def backend(self) -> str:
        """The backend computing the embeddings (``'torch'`` unless ``towers`` is set)."""
        return self.towers.name if self.towers is not None else "torch"

    def batches(self, modality: str) -> bool:
        """False when the tower of ``modality`` runs row by row (``onnx-int8``: see
        :class:`~pixql.models.clip.onnx_backend.RowwiseRunner`)."""
        tower = "text" if modality == "text" else "image"
        run = getattr(self.towers, tower, None) if self.towers is not None else None
        return not getattr(run, "rowwise", False)

    # ------------------------------------------------------------------ text limits
    @property
    def max_text_tokens(self) -> int:
        """Context length in tokens, start and end tokens included (77 for OpenAI CLIP).

        Longer texts are truncated to this length (the last kept token becomes the end
        token), as open_clip's tokenizer does; Roboflow's server answers 500 instead.
        """
        return self._context_length

    def text_token_count(self, text: str) -> int:
        """Tokens ``text`` needs, start and end tokens included (may exceed the limit)."""
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:  # HF tokenizers: count what fits
            return int((self._tokenize([text]) != 0).sum())
        with self._tokenizer_lock:
            return len(encode(text)) + 2

    # ------------------------------------------------------------------ stages
    def preprocess(self, item: Any, modality: str) -> Any:
        """One raw item → model input (PIL image → tensor, text → str, video path → frames)."""
        self.check_modality(modality)
        return self._preprocessors[modality](item)

    def forward(self, batch: Sequence[Any], modality: str) -> torch.Tensor:
        """A batch of preprocessed items → ``(n, dim)`` float tensor on the model's device."""
        self.check_modality(modality)
        with torch.inference_mode():
            return self._forwards[modality](batch)

    # ------------------------------------------------------------------ image
    def _preprocess_image(self, item: Any) -> torch.Tensor:
        if not hasattr(item, "convert"):
            raise ModelError(
                f"{self.model_id}: an image must be a PIL image, got {type(item).__name__}"
            )
        return self.image_transform(item.convert("RGB"))

    def _forward_image(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        pixels = torch.stack(list(batch)).to(self.device)
        return self._encode_image(pixels)

    def _encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        run = self.towers.image if self.towers is not None else None
        return run(pixels) if run is not None else self.encode_image_torch(pixels)

    def encode_image_torch(self, pixels: torch.Tensor) -> torch.Tensor:
        """The torch image tower, whatever the backend (pixels on the model's device)."""
        return self.model.encode_image(pixels).float()

    # ------------------------------------------------------------------ text
    def _preprocess_text(self, item: Any) -> str:
        if not isinstance(item, str):
            raise ModelError(f"{self.model_id}: a text must be a str, got {type(item).__name__}")
        return item

    def _tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        with self._tokenizer_lock:
            return self.tokenizer(list(texts))

    def tokens_for(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenize to the context length and drop the all-padding tail (when allowed)."""
        tokens = self._tokenize(texts)
        return trim_padding(tokens) if self.can_trim() else tokens

    def _forward_text(self, batch: Sequence[str]) -> torch.Tensor:
        """Tokenize to the context length, drop the all-padding tail, encode.

        Texts longer than :attr:`max_text_tokens` are truncated (see there).
        """
        tokens = self.tokens_for(batch)
        run = self.towers.text if self.towers is not None else None
        if run is not None:
            return run(tokens)
        return self.encode_text_torch(tokens.to(self.device))

    def encode_text_torch(self, tokens: torch.Tensor) -> torch.Tensor:
        """The torch text tower, whatever the backend (tokens on the model's device, full
        length or trimmed)."""
        if tokens.shape[1] == self.max_text_tokens:
            return self.model.encode_text(tokens).float()
        return encode_text_trimmed(self.model, tokens).float()

    def can_trim(self) -> bool:
        """Whether text batches drop their all-padding tail (see :mod:`.text`)."""
        return self._can_trim

    # ------------------------------------------------------------------ video
    def _preprocess_video(self, item: Any) -> torch.Tensor:
        from pixql.models.clip.video import sample_frames

        frames = sample_frames(Path(str(item)), self.video_frames)
        return torch.stack([self._preprocess_image(f) for f in frames])

    def _forward_video(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Embed every frame, L2-normalise, average per video, renormalise."""
        sizes = [int(clip.shape[0]) for clip in batch]
        frames = torch.cat(list(batch)).to(self.device)
        emb = F.normalize(self._encode_image(frames), dim=-1)
        means = torch.stack([part.mean(dim=0) for part in emb.split(sizes)])
        return F.normalize(means, dim=-1)



def free_heap() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc keeps freed blocks
    of a few MB, such as a ViT's weight matrices, in its arenas otherwise)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass
