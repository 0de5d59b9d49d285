"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR.

Chen et al. 2020 (arXiv:2002.05709), eq. 1: for a batch of ``n`` images seen in two views,
each of the ``2n`` projections ``z_i`` has one positive (the other view of its image) and
``2n - 2`` negatives (every other projection). With cosine similarity ``s`` and temperature
``t``::

    l(i, j) = -log( exp(s(z_i, z_j) / t) / sum_{k != i} exp(s(z_i, z_k) / t) )

and the loss is the mean of ``l`` over all ``2n`` anchors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Callable


class NTXentLoss(nn.Module):
    """NT-Xent over two views.

    Args:
        temperature: the softmax temperature ``t`` (> 0). Smaller values weigh hard
            negatives more; 0.1–0.5 are usual.

    Raises:
        ValueError: if ``temperature`` is not a positive number.

    Examples:
        >>> loss = NTXentLoss(temperature=0.5)
        >>> z0, z1 = torch.randn(8, 16), torch.randn(8, 16)
        >>> float(loss(z0, z1)) > 0
        True
    """

    def __init__(self, temperature: float = 0.5, *,
                 gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 rank: int = 0) -> None:
        super().__init__()
        #: data-parallel training: ``gather`` concatenates every worker's rows in rank order
        #: (with gradients), and this worker's anchors (``rank``) meet the global batch's
        #: negatives (:meth:`global_loss`)
        self.gather, self.rank = gather, rank
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(
                "NTXentLoss temperature must be a number > 0 (e.g. 0.1 to 0.5), "
                f"got {temperature!r}"
            )
        self.temperature = float(temperature)

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """The mean loss over the ``2n`` anchors.

        Args:
            z0: projections of the first views, shape ``(n, d)``; row ``i`` is image ``i``.
            z1: projections of the second views, shape ``(n, d)``.

        Returns:
            A scalar tensor.

        Raises:
            ValueError: when the shapes differ or ``n < 1``.
        """
        if z0.shape != z1.shape or z0.dim() != 2 or z0.shape[0] < 1:
            raise ValueError(
                "NTXentLoss expects two (n, d) tensors of the same shape with n >= 1, "
                f"got {tuple(z0.shape)} and {tuple(z1.shape)}"
            )
        if self.gather is not None:
            return self.global_loss(z0, z1)
        n = z0.shape[0]
        z = F.normalize(torch.cat([z0, z1], dim=0).float(), dim=1)  # (2n, d)
        logits = z @ z.t() / self.temperature  # (2n, 2n)
        logits.fill_diagonal_(float("-inf"))  # an anchor is never its own negative
        idx = torch.arange(n, device=z.device)
        targets = torch.cat([idx + n, idx])  # the positive of i is i+n and vice versa
        return F.cross_entropy(logits, targets)

    def global_loss(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """The mean loss of this worker's ``2n`` anchors over the global batch of ``N``
        images gathered from every worker (``2N - 2`` negatives each). With equal ``n``
        per worker, the mean of the workers' losses — which is what data-parallel training
        averages the gradients of — is the one-process loss of the global batch."""
        assert self.gather is not None
        n = z0.shape[0]
        g0, g1 = self.gather(z0), self.gather(z1)  # (N, d) each, rank order
        big = g0.shape[0]
        z = F.normalize(torch.cat([g0, g1], dim=0).float(), dim=1)  # (2N, d)
        idx = torch.arange(n, device=z.device) + self.rank * n
        anchors = torch.cat([idx, idx + big])
        logits = z[anchors] @ z.t() / self.temperature  # (2n, 2N)
        rows = torch.arange(2 * n, device=z.device)
        logits[rows, anchors] = float("-inf")  # an anchor is never its own negative
        targets = torch.cat([idx + big, idx])
        return F.cross_entropy(logits, targets)
