"""RoIAlign in plain PyTorch, as a sparse interpolation matrix applied to the feature map.

Every output bin is the mean of ``grid_h x grid_w`` bilinear samples; each sample is four weighted taps of
the input. Those taps form a sparse (K*oh*ow, B*H*W) matrix ``M`` and the output is ``M @ features``
(features laid out (B*H*W, C)), so autograd gives the input gradient ``M^T @ grad`` for free.
Sampling follows torchvision/mmcv exactly: ``aligned`` shifts roi corners by -0.5 pixel (and lets rois be
smaller than a pixel), ``sampling_ratio <= 0`` uses ``ceil(roi_size / output_size)`` samples per bin, samples
outside ``[-1, H] x [-1, W]`` count as zero, and the others are clamped to the border.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

_MAX_TAPS = 1 << 23  # taps per chunk of rois: bounds the memory of the index/weight tensors


def _axis_taps(
    start: Tensor, bin_size: Tensor, grid: Tensor, bins: int, samples: int, size: int
) -> Tuple[Tensor, Tensor]:
    """Tap indices and weights along one axis: both (k, bins, samples, 2)."""
    dtype = start.dtype
    p = torch.arange(bins, device=start.device, dtype=dtype)[None, :, None]
    s = torch.arange(samples, device=start.device, dtype=dtype)[None, None, :]
    grid_f = grid.clamp(min=1).to(dtype)[:, None, None]
    bin_size = bin_size[:, None, None]
    pos = (start[:, None, None] + p * bin_size) + ((s + 0.5) * bin_size) / grid_f
    valid = (s < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    pos = torch.where(edge, low.to(dtype), pos)
    frac = pos - low.to(dtype)
    weight = torch.stack([1 - frac, frac], dim=-1) * valid[..., None].to(dtype)
    return torch.stack([low, high], dim=-1), weight


def roi_align(
    input: Tensor,
    rois: Tensor,
    output_size: Tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """(B, C, H, W) features, (K, 5) rois ``(batch, x1, y1, x2, y2)`` -> (K, C, oh, ow)."""
    b, c, h, w = input.shape
    oh, ow = output_size
    k = rois.shape[0]
    if k == 0 or c == 0 or b * h * w == 0:
        return input.new_zeros((k, c, oh, ow))
    compute_dtype = input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32
    feats = input.to(compute_dtype).permute(0, 2, 3, 1).reshape(b * h * w, c)
    rois = rois.detach().to(compute_dtype)
    offset = 0.5 if aligned else 0.0
    scale = torch.tensor(spatial_scale, dtype=compute_dtype, device=rois.device)
    x1 = rois[:, 1] * scale - offset
    y1 = rois[:, 2] * scale - offset
    roi_w = rois[:, 3] * scale - offset - x1
    roi_h = rois[:, 4] * scale - offset - y1
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_w = roi_w / ow
    bin_h = roi_h / oh
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.long, device=rois.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / oh).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / ow).long().clamp(min=0)
    count = (grid_h * grid_w).clamp(min=1).to(compute_dtype)
    batch = rois[:, 0].long()

    per_roi = oh * ow * 4 * max(int(grid_h.max()), 1) * max(int(grid_w.max()), 1)
    chunk = max(1, _MAX_TAPS // per_roi)
    outs = []
    for s in range(0, k, chunk):
        sl = slice(s, s + chunk)
        n = batch[sl].shape[0]
        gh, gw = max(int(grid_h[sl].max()), 1), max(int(grid_w[sl].max()), 1)
        yi, yw = _axis_taps(y1[sl], bin_h[sl], grid_h[sl], oh, gh, h)  # (n, oh, gh, 2)
        xi, xw = _axis_taps(x1[sl], bin_w[sl], grid_w[sl], ow, gw, w)  # (n, ow, gw, 2)
        shape = (n, oh, gh, 2, ow, gw, 2)
        cols = (
            batch[sl].view(n, 1, 1, 1, 1, 1, 1) * (h * w)
            + yi.view(n, oh, gh, 2, 1, 1, 1) * w
            + xi.view(n, 1, 1, 1, ow, gw, 2)
        ).expand(shape)
        vals = (
            yw.view(n, oh, gh, 2, 1, 1, 1)
            * xw.view(n, 1, 1, 1, ow, gw, 2)
            / count[sl].view(n, 1, 1, 1, 1, 1, 1)
        )
        rows = torch.arange(n * oh * ow, device=rois.device).view(n, oh, 1, 1, ow, 1, 1).expand(shape)
        mat = torch.sparse_coo_tensor(
            torch.stack([rows.reshape(-1), cols.reshape(-1)]),
            vals.reshape(-1),
            (n * oh * ow, b * h * w),
            check_invariants=False,
        )
        outs.append(torch.sparse.mm(mat, feats))
    out = torch.cat(outs).view(k, oh, ow, c).permute(0, 3, 1, 2).contiguous()
    return out.to(input.dtype)
