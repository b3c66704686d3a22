"""RoIPool (max pooling over quantised roi bins) in plain PyTorch.

Semantics of torchvision/mmcv (Caffe): roi corners are rounded (half away from zero) after scaling, the
roi spans ``x2 - x1 + 1`` pixels, bin ``i`` covers ``[floor(i * bin), ceil((i + 1) * bin))`` clipped to the
map; empty bins give 0; ties take the first maximum in row-major order. The gradient flows to the arg-max.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

_MAX_ELEMS = 1 << 25  # gathered values per chunk of rois


def _round_half_away(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _bin_edges(
    start: Tensor, length: Tensor, bins: int, size: int, dtype: torch.dtype
) -> Tuple[Tensor, Tensor]:
    """(k, bins) start/end pixel of each bin along one axis, clipped to [0, size]."""
    bin_size = length.to(dtype) / bins
    p = torch.arange(bins, device=start.device, dtype=dtype)
    lo = torch.floor(p[None] * bin_size[:, None]).long() + start[:, None]
    hi = torch.ceil((p[None] + 1) * bin_size[:, None]).long() + start[:, None]
    return lo.clamp(0, size), hi.clamp(0, size)


def roi_pool(input: Tensor, rois: Tensor, output_size: Tuple[int, int], spatial_scale: float) -> Tensor:
    """(B, C, H, W) features, (K, 5) rois ``(batch, x1, y1, x2, y2)`` -> (K, C, oh, ow)."""
    b, c, h, w = input.shape
    oh, ow = output_size
    k = rois.shape[0]
    if k == 0 or c == 0 or b * h * w == 0:
        return input.new_zeros((k, c, oh, ow))
    dtype = input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32
    rois = rois.detach().to(dtype)
    scale = torch.tensor(spatial_scale, dtype=dtype, device=rois.device)
    start = _round_half_away(rois[:, 1:] * scale).long()  # (k, 4): x1, y1, x2, y2
    roi_w = (start[:, 2] - start[:, 0] + 1).clamp(min=1)
    roi_h = (start[:, 3] - start[:, 1] + 1).clamp(min=1)
    hs, he = _bin_edges(start[:, 1], roi_h, oh, h, dtype)  # (k, oh)
    ws, we = _bin_edges(start[:, 0], roi_w, ow, w, dtype)  # (k, ow)
    feats = input.permute(0, 2, 3, 1).reshape(b * h * w, c)
    batch = rois[:, 0].long()

    mh = max(int((he - hs).max()), 1)
    mw = max(int((we - ws).max()), 1)
    chunk = max(1, _MAX_ELEMS // (oh * ow * mh * mw * c))
    outs = []
    dy = torch.arange(mh, device=rois.device)
    dx = torch.arange(mw, device=rois.device)
    for s in range(0, k, chunk):
        sl = slice(s, s + chunk)
        n = batch[sl].shape[0]
        ys = hs[sl][:, :, None] + dy  # (n, oh, mh)
        xs = ws[sl][:, :, None] + dx  # (n, ow, mw)
        vy = ys < he[sl][:, :, None]
        vx = xs < we[sl][:, :, None]
        idx = (
            batch[sl].view(n, 1, 1, 1, 1) * (h * w)
            + ys.clamp(max=h - 1).view(n, oh, 1, mh, 1) * w
            + xs.clamp(max=w - 1).view(n, 1, ow, 1, mw)
        ).reshape(n, oh, ow, mh * mw)
        valid = (vy.view(n, oh, 1, mh, 1) & vx.view(n, 1, ow, 1, mw)).reshape(n, oh, ow, mh * mw)
        vals = feats[idx]  # (n, oh, ow, m, c)
        masked = vals.masked_fill(~valid[..., None], float("-inf"))
        best = masked.argmax(dim=3, keepdim=True)
        out = torch.gather(vals, 3, best).squeeze(3)
        empty = ~valid.any(dim=3)
        outs.append(out.masked_fill(empty[..., None], 0))
    return torch.cat(outs).permute(0, 3, 1, 2).contiguous()
