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

import torch
import torch.nn.functional as F
from torch import nn


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

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
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
        n, v = z0.shape[0], len(views)
        z = F.normalize(torch.cat(views, dim=0).float(), dim=1)  # (v n, d)
        logits = z @ z.t() / self.temperature  # (v n, v n)
        logits.fill_diagonal_(float("-inf"))  # an anchor is never its own negative
        if v == 2:
            idx = torch.arange(n, device=z.device)
            targets = torch.cat([idx + n, idx])  # the positive of i is i+n and vice versa
            return F.cross_entropy(logits, targets)
        log_prob = F.log_softmax(logits, dim=1)
        image = torch.arange(n, device=z.device).repeat(v)  # which image each row is
        positive = image.view(-1, 1) == image.view(1, -1)
        positive.fill_diagonal_(False)
        pos_log_prob = log_prob.masked_fill(~positive, 0.0).sum(1) / (v - 1)
        return -pos_log_prob.mean()
