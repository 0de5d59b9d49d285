"""The two towers of a CLIP model, and what computes them: types shared by the embedder,
the backends and the exporter (a module of its own, so none of them imports another for a
type).

* :class:`ClipModule` — what pixql uses of an open_clip model (open_clip publishes no type
  information);
* :class:`Tokenizer` — what pixql uses of an open_clip tokenizer;
* :data:`Runner` and :class:`Towers` — the runners that replace ``encode_image`` /
  ``encode_text`` when a backend other than torch computes the embeddings (see
  :mod:`pixql.models.clip.backends`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

    import torch

#: the towers of a CLIP model, in the order backends set them up
TOWERS = ("image", "text")

#: one exported tower: a CPU tensor in, a float32 CPU tensor out
Runner = Callable[["torch.Tensor"], "torch.Tensor"]


class ClipModule(Protocol):
    """An open_clip ``CLIP`` (or ``CustomTextCLIP``) model, as pixql uses it: the two
    encoders and the ``torch.nn.Module`` methods the embedder and the exporter call."""

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` float pixels → ``(n, dim)`` unnormalised embeddings."""

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """``(n, context_length)`` int64 tokens → ``(n, dim)`` unnormalised embeddings."""

    def eval(self) -> ClipModule:
        """Inference mode (returns the model itself)."""

    def requires_grad_(self, requires_grad: bool = True) -> ClipModule:
        """Turn gradients on or off for every parameter (returns the model itself)."""

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """The model's parameters."""

    def modules(self) -> Iterator[torch.nn.Module]:
        """The model and all its submodules."""

    def state_dict(self) -> dict[str, Any]:
        """Parameter and buffer name → tensor."""


class Tokenizer(Protocol):
    """An open_clip tokenizer: texts → ``(n, context_length)`` int64 tokens, padded with 0
    and truncated to the context length."""

    context_length: int

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """Tokenize ``texts``."""


@dataclass
class Towers:
    """The runners replacing ``encode_image`` / ``encode_text`` (``None``: torch's)."""

    name: str
    image: Runner | None = None
    text: Runner | None = None
    #: tower → backend actually used, and the validated min cosine vs torch
    chosen: dict[str, str] = field(default_factory=dict)
    cosine: dict[str, float] = field(default_factory=dict)
