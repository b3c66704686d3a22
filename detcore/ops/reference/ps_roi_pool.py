"""Position-sensitive RoI pooling (R-FCN, Dai et al. NIPS 2016) in plain PyTorch.

Semantics of the R-FCN Caffe layer: roi corners are rounded (half away from zero) in image pixels, the far
corner gets +1, then everything is multiplied by ``spatial_scale``; roi sizes are at least 0.1; bin
``(ph, pw)`` covers rows ``[floor(ph * bin_h + y1), ceil((ph + 1) * bin_h + y1))`` and the same for columns,
clipped to the map; it averages input channel ``(c * oh + ph) * ow + pw`` over that window (0 when the window
is empty). The window sums come from a summed-area table, so autograd gives the gradient.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _round_half_away(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _edges(start: Tensor, bin_size: Tensor, bins: int, size: int) -> Tuple[Tensor, Tensor]:
    p = torch.arange(bins, device=start.device, dtype=start.dtype)
    lo = torch.floor(p[None] * bin_size[:, None] + start[:, None])
    hi = torch.ceil((p[None] + 1) * bin_size[:, None] + start[:, None])
    lo = lo.nan_to_num(0).clamp(0, size).long()
    hi = hi.nan_to_num(0).clamp(0, size).long()
    return lo, hi


def ps_roi_pool(input: Tensor, rois: Tensor, output_size: Tuple[int, int], spatial_scale: float) -> Tensor:
    """(B, D*oh*ow, H, W) score maps, (K, 5) rois ``(batch, x1, y1, x2, y2)`` -> (K, D, oh, ow)."""
    b, c, h, w = input.shape
    oh, ow = output_size
    d = c // (oh * ow)
    k = rois.shape[0]
    if k == 0 or d == 0 or b * h * w == 0:
        return input.new_zeros((k, d, oh, ow))
    dtype = input.dtype
    rois = rois.detach().to(dtype)
    scale = torch.tensor(spatial_scale, dtype=dtype, device=rois.device)
    x1 = _round_half_away(rois[:, 1]) * scale
    y1 = _round_half_away(rois[:, 2]) * scale
    x2 = (_round_half_away(rois[:, 3]) + 1) * scale
    y2 = (_round_half_away(rois[:, 4]) + 1) * scale
    roi_w = torch.where(x2 - x1 > 0.1, x2 - x1, torch.full_like(x1, 0.1))
    roi_h = torch.where(y2 - y1 > 0.1, y2 - y1, torch.full_like(y1, 0.1))
    hs, he = _edges(y1, roi_h / oh, oh, h)  # (k, oh)
    ws, we = _edges(x1, roi_w / ow, ow, w)  # (k, ow)
    # summed-area table in float64 (exact enough for float32 maps of any size), (B, C, H+1, W+1)
    sat = F.pad(input.to(torch.float64).cumsum(2).cumsum(3), (1, 0, 1, 0))
    batch = rois[:, 0].long().view(k, 1, 1, 1)
    ch = (
        torch.arange(d, device=rois.device).view(1, d, 1, 1) * oh
        + torch.arange(oh, device=rois.device).view(1, 1, oh, 1)
    ) * ow + torch.arange(ow, device=rois.device).view(1, 1, 1, ow)
    hs_, he_ = hs.view(k, 1, oh, 1), he.view(k, 1, oh, 1)
    ws_, we_ = ws.view(k, 1, 1, ow), we.view(k, 1, 1, ow)
    total = (
        sat[batch, ch, he_, we_]
        - sat[batch, ch, hs_, we_]
        - sat[batch, ch, he_, ws_]
        + sat[batch, ch, hs_, ws_]
    )
    area = ((he_ - hs_) * (we_ - ws_)).to(torch.float64)
    out = torch.where(area > 0, total / area.clamp(min=1), torch.zeros_like(total))
    return out.to(dtype)
