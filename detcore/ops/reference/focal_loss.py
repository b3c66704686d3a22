"""Sigmoid focal loss (Lin et al. 2017) per element, in plain PyTorch.

For logit x with p = sigmoid(x): the target class of a row contributes ``-alpha (1 - p)^gamma log p``, the
other classes ``-(1 - alpha) p^gamma log(1 - p)``. Logs are computed as ``-softplus(-x)`` and
``-softplus(x)`` so large logits stay finite. A target equal to C (background) makes every class negative.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, weight: Optional[Tensor], gamma: float, alpha: float
) -> Tensor:
    """(N, C) logits, (N,) long targets in [0, C], optional (N,) weight -> (N, C) loss."""
    n, c = logits.shape
    classes = torch.arange(c, device=logits.device)
    pos = (targets[:, None] == classes[None, :]).to(logits.dtype)
    p = torch.sigmoid(logits)
    log_p = -F.softplus(-logits)
    log_1mp = -F.softplus(logits)
    loss = -alpha * pos * (1 - p).pow(gamma) * log_p - (1 - alpha) * (1 - pos) * p.pow(gamma) * log_1mp
    if weight is not None:
        loss = loss * weight[:, None]
    return loss
