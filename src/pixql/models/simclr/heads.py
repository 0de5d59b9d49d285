"""The SimCLR projection head ``g``: features → space where the contrastive loss is taken.

Chen et al. 2020 (arXiv:2002.05709), section 2.1: a small MLP on top of the encoder helps
the representation *before* it, which is why the embeddings are the backbone's features and
the head is only used for training.
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """``Linear → BatchNorm → ReLU → Linear`` (the SimCLR v2 style MLP).

    Args:
        input_dim: backbone feature size.
        hidden_dim: width of the hidden layer.
        output_dim: size of the projections fed to the loss.

    Raises:
        ValueError: when a size is not a positive integer.

    Shapes:
        ``(n, input_dim)`` → ``(n, output_dim)``.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        for label, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim),
                             ("output_dim", output_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"ProjectionHead {label} must be a positive integer, got {value!r}")
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project backbone features."""
        return self.layers(x)
