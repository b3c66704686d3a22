"""``TBLRBBoxCoder``: boxes as the distances from a prior's centre to their four sides.

FSAF's anchor-free branch regresses, at each location, the distances ``(top, bottom, left, right)``
from the location's centre to the sides of its object, divided by the prior's height (top, bottom)
or width (left, right) and by ``normalizer`` (4.0 in the reference's FSAF configs). The priors are
the one square "anchor" per location of side ``stride``, so a distance of 1 is ``normalizer * stride``
pixels. Boxes are ``(x1, y1, x2, y2)`` in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from detcore.structures.boxes import clip_boxes


def _normalizer(normalizer: float | Sequence[float], ref: torch.Tensor) -> torch.Tensor | float:
    if isinstance(normalizer, (int, float)):
        return float(normalizer)
    values = [float(v) for v in normalizer]
    if len(values) != 4:
        raise ValueError(f"TBLRBBoxCoder: normalizer must be a number or 4 numbers, got {normalizer}")
    return ref.new_tensor(values)


def bboxes2tblr(
    priors: torch.Tensor,
    gts: torch.Tensor,
    normalizer: float | Sequence[float] = 4.0,
    normalize_by_wh: bool = True,
) -> torch.Tensor:
    """``(N, 4)`` priors and ``(N, 4)`` boxes -> ``(N, 4)`` ``(top, bottom, left, right)``: the distances
    from each prior's centre to its box's sides, divided by the prior's ``(h, h, w, w)`` when
    ``normalize_by_wh`` and then by ``normalizer`` (a number or one per side)."""
    if priors.shape != gts.shape or priors.size(-1) != 4:
        raise ValueError(
            f"bboxes2tblr: priors {tuple(priors.shape)} and gts {tuple(gts.shape)} must both be (N, 4)"
        )
    cx = (priors[..., 0] + priors[..., 2]) / 2
    cy = (priors[..., 1] + priors[..., 3]) / 2
    loc = torch.stack([cy - gts[..., 1], gts[..., 3] - cy, cx - gts[..., 0], gts[..., 2] - cx], dim=-1)
    if normalize_by_wh:
        w = priors[..., 2] - priors[..., 0]
        h = priors[..., 3] - priors[..., 1]
        loc = loc / torch.stack([h, h, w, w], dim=-1)
    return loc / _normalizer(normalizer, loc)


def tblr2bboxes(
    priors: torch.Tensor,
    tblr: torch.Tensor,
    normalizer: float | Sequence[float] = 4.0,
    normalize_by_wh: bool = True,
    max_shape: Any = None,
    clip_border: bool = True,
) -> torch.Tensor:
    """The inverse of :func:`bboxes2tblr`: priors ``(N, 4)`` or ``(B, N, 4)`` and distances of the same
    shape -> boxes ``(x1, y1, x2, y2)``; clipped to ``max_shape`` ``(h, w)`` (one per image for a batch)
    when given and ``clip_border``."""
    if priors.shape != tblr.shape or priors.size(-1) != 4:
        raise ValueError(
            f"tblr2bboxes: priors {tuple(priors.shape)} and tblr {tuple(tblr.shape)} must match (..., 4)"
        )
    loc = tblr * _normalizer(normalizer, tblr)
    if normalize_by_wh:
        w = priors[..., 2] - priors[..., 0]
        h = priors[..., 3] - priors[..., 1]
        loc = loc * torch.stack([h, h, w, w], dim=-1)
    cx = (priors[..., 0] + priors[..., 2]) / 2
    cy = (priors[..., 1] + priors[..., 3]) / 2
    top, bottom, left, right = loc.unbind(-1)
    boxes = torch.stack([cx - left, cy - top, cx + right, cy + bottom], dim=-1)
    if clip_border and max_shape is not None:
        boxes = clip_boxes(boxes, max_shape)
    return boxes


class TBLRBBoxCoder:
    """Encode boxes as normalised ``(top, bottom, left, right)`` distances from priors' centres.

    Args:
        normalizer: the distances (in prior heights / widths) are divided by it; a number or 4.
        clip_border: clip decoded boxes to the image (``max_shape``).
    """

    def __init__(self, normalizer: float | Sequence[float] = 4.0, clip_border: bool = True) -> None:
        if isinstance(normalizer, (int, float)):
            if normalizer <= 0:
                raise ValueError(f"TBLRBBoxCoder: normalizer must be > 0, got {normalizer}")
        elif len(normalizer) != 4 or min(normalizer) <= 0:
            raise ValueError(f"TBLRBBoxCoder: normalizer must be > 0 or 4 numbers > 0, got {normalizer}")
        self.normalizer = normalizer if isinstance(normalizer, (int, float)) else tuple(normalizer)
        self.clip_border = clip_border
        self.encode_size = 4

    def encode(self, bboxes: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        """Priors ``bboxes`` ``(N, 4)`` and their targets ``gt_bboxes`` ``(N, 4)`` -> ``(N, 4)`` tblr."""
        return bboxes2tblr(bboxes, gt_bboxes.to(bboxes.dtype), self.normalizer)

    def decode(self, bboxes: torch.Tensor, pred_bboxes: torch.Tensor, max_shape: Any = None) -> torch.Tensor:
        """Priors ``(N, 4)`` / ``(B, N, 4)`` and predicted tblr of the same shape -> boxes."""
        return tblr2bboxes(bboxes, pred_bboxes, self.normalizer, max_shape=max_shape,
                           clip_border=self.clip_border)

    def __repr__(self) -> str:
        return f"TBLRBBoxCoder(normalizer={self.normalizer}, clip_border={self.clip_border})"
