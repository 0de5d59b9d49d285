"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR, over V views.

Chen et al. 2020 (arXiv:2002.05709), eq. 1: for a batch of ``n`` images seen in two views,
each of the ``2n`` projections ``z_i`` has one positive (the other view of its image) and
``2n - 2`` negatives (every other projection). With cosine similarity ``s`` and temperature
``t``::

    l(i, j) = -log( exp(s(z_i, z_j) / t) / sum_{k != i} exp(s(z_i, z_k) / t) )

and the loss is the mean of ``l`` over all ``2n`` anchors.

With ``V > 2`` views per image (``views`` BUILD option) every anchor has ``V - 1`` positives,
the other views of its image, and the loss is the multi-positive form of Khosla et al. 2020
(SupCon, arXiv:2004.11362, eq. 2 with "same image" as the class): ``l(i, p)`` averaged over
the positives ``p`` of each anchor, then over the ``V n`` anchors. With ``V = 2`` this is
exactly eq. 1 above. More views give each image more signal per step, which matters most when
there is a single pass over the data (``max_epochs=1``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Callable


class NTXentLoss(nn.Module):
    """NT-Xent over two or more views.

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
        >>> float(loss(z0, z1, torch.randn(8, 16))) > 0
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

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        """The mean loss over the ``V n`` anchors.

        Args:
            z0: projections of the first views, shape ``(n, d)``; row ``i`` is image ``i``.
            z1: projections of the second views, shape ``(n, d)``.
            more: projections of further views, each ``(n, d)``.

        Returns:
            A scalar tensor.

        Raises:
            ValueError: when the shapes differ or ``n < 1``.
        """
        views = (z0, z1, *more)
        if any(z.shape != z0.shape for z in views) or z0.dim() != 2 or z0.shape[0] < 1:
            got = " and ".join(str(tuple(z.shape)) for z in views)
            raise ValueError(
                f"NTXentLoss expects {len(views)} (n, d) tensors of the same shape with "
                f"n >= 1, got {got}"
            )
        if self.gather is not None:
            return self.global_loss(*views)
        n, v = z0.shape[0], len(views)
        z = F.normalize(torch.cat(views, dim=0).float(), dim=1)  # (v n, d)
        return self._loss(z, torch.arange(v * n, device=z.device), n, v)

    def global_loss(self, *views: torch.Tensor) -> torch.Tensor:
        """The mean loss of this worker's ``v n`` anchors over the global batch of ``N``
        images gathered from every worker (``v N - v`` negatives each). With equal ``n``
        per worker, the mean of the workers' losses — which is what data-parallel training
        averages the gradients of — is the one-process loss of the global batch."""
        assert self.gather is not None
        n, v = views[0].shape[0], len(views)
        gathered = [self.gather(z) for z in views]  # (N, d) each, rank order
        big = gathered[0].shape[0]
        z = F.normalize(torch.cat(gathered, dim=0).float(), dim=1)  # (v N, d)
        idx = torch.arange(n, device=z.device) + self.rank * n
        anchors = torch.cat([idx + k * big for k in range(v)])
        return self._loss(z, anchors, big, v)

    def _loss(self, z: torch.Tensor, anchors: torch.Tensor, big: int, v: int) -> torch.Tensor:
        """Mean loss of the ``anchors`` rows of ``z`` (``v`` views of ``big`` images, view-major):
        each anchor's positives are the other views of its image, everything else negative."""
        logits = z[anchors] @ z.t() / self.temperature  # (anchors, v big)
        rows = torch.arange(len(anchors), device=z.device)
        logits[rows, anchors] = float("-inf")  # an anchor is never its own negative
        if v == 2:  # one positive: the other view
            targets = torch.where(anchors < big, anchors + big, anchors - big)
            return F.cross_entropy(logits, targets)
        log_prob = F.log_softmax(logits, dim=1)
        image = torch.arange(big, device=z.device).repeat(v)  # which image each column is
        positive = image[anchors].view(-1, 1) == image.view(1, -1)
        positive[rows, anchors] = False
        pos_log_prob = log_prob.masked_fill(~positive, 0.0).sum(1) / (v - 1)
        return -pos_log_prob.mean()
