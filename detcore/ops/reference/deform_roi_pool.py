"""Deformable RoI pooling (Dai et al. 2017, DCN v1; DCNv2 modulates it by a mask) in plain PyTorch.

Each bin is RoIAlign with aligned corners (scaled coordinates shifted by -0.5 pixel, no minimum roi size,
``sampling_ratio`` or ``ceil(roi_size / output_size)`` samples per bin axis, samples outside
``[-1, H] x [-1, W]`` count as zero and the others are clamped to the border), but bin ``(ph, pw)`` is first
moved by ``gamma * (roi_w * offset[:, 0, ph, pw], roi_h * offset[:, 1, ph, pw])``: the offsets are in units
of the roi size. The samples are gathered from a ``(B*H*W, C)`` view of the features, so autograd gives the
gradients with respect to the features and to the offsets (those of the clamped bilinear function).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

_MAX_ELEMS = 1 << 24  # gathered values per chunk of rois


def _axis(
    start: Tensor, shift: Tensor, bin_size: Tensor, grid: Tensor, bins: int, samples: int, size: int, dim: int
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sample positions along one axis for each (roi, ph, pw, sample): low/high indices, weights, validity.

    ``shift`` is (k, oh, ow); ``dim`` says whether this axis runs over ph (1) or pw (2).
    """
    dtype = start.dtype
    p = torch.arange(bins, device=start.device, dtype=dtype)
    p = p.view(1, bins, 1, 1) if dim == 1 else p.view(1, 1, bins, 1)
    s = torch.arange(samples, device=start.device, dtype=dtype).view(1, 1, 1, samples)
    k = start.shape[0]
    grid_f = grid.clamp(min=1).to(dtype).view(k, 1, 1, 1)
    bin_size = bin_size.view(k, 1, 1, 1)
    pos = (start.view(k, 1, 1, 1) + shift[..., None]) + p * bin_size + ((s + 0.5) * bin_size) / grid_f
    valid = (s < grid.view(k, 1, 1, 1)) & (pos >= -1.0) & (pos <= size)  # NaN counts as outside
    pos = torch.where(valid, pos, torch.zeros_like(pos)).clamp(min=0)
    low = pos.detach().floor().long()
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    frac = torch.where(edge, torch.zeros_like(pos), pos - low.to(dtype))
    return low, high, frac, valid


def deform_roi_pool(
    input: Tensor,
    rois: Tensor,
    offset: Optional[Tensor],
    output_size: Tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    gamma: float,
) -> Tensor:
    """(B, C, H, W) features, (K, 5) rois ``(batch, x1, y1, x2, y2)``, offsets (K, 2, oh, ow) as (dx, dy)
    or None -> (K, C, oh, ow)."""
    b, c, h, w = input.shape
    oh, ow = output_size
    k = rois.shape[0]
    if k == 0 or c == 0 or b * h * w == 0:
        out = input.new_zeros((k, c, oh, ow))
        return out if offset is None else out + offset.sum() * 0
    dtype = input.dtype
    feats = input.permute(0, 2, 3, 1).reshape(b * h * w, c)
    rois = rois.detach().to(dtype)
    scale = torch.tensor(spatial_scale, dtype=dtype, device=rois.device)
    x1 = rois[:, 1] * scale - 0.5
    y1 = rois[:, 2] * scale - 0.5
    roi_w = (rois[:, 3] * scale - 0.5) - x1
    roi_h = (rois[:, 4] * scale - 0.5) - y1
    bin_w, bin_h = roi_w / ow, roi_h / oh
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.long, device=rois.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / oh).nan_to_num(0).clamp(0, 65536).long()
        grid_w = torch.ceil(roi_w / ow).nan_to_num(0).clamp(0, 65536).long()
    count = (grid_h * grid_w).clamp(min=1).to(dtype)
    if offset is None:
        shift_x = shift_y = rois.new_zeros((k, oh, ow))
    else:
        shift_x = gamma * roi_w.view(k, 1, 1) * offset[:, 0]
        shift_y = gamma * roi_h.view(k, 1, 1) * offset[:, 1]
    batch = rois[:, 0].long()

    gh_max, gw_max = max(int(grid_h.max()), 1), max(int(grid_w.max()), 1)
    chunk = max(1, _MAX_ELEMS // (oh * ow * gh_max * gw_max * 4 * max(c, 1)))
    outs = []
    for s0 in range(0, k, chunk):
        sl = slice(s0, s0 + chunk)
        n = batch[sl].shape[0]
        gh, gw = max(int(grid_h[sl].max()), 1), max(int(grid_w[sl].max()), 1)
        # y runs over ph, x over pw; both carry the per-bin shift, so they are (n, oh, ow, samples)
        y_lo, y_hi, ly, vy = _axis(y1[sl], shift_y[sl], bin_h[sl], grid_h[sl], oh, gh, h, dim=1)
        x_lo, x_hi, lx, vx = _axis(x1[sl], shift_x[sl], bin_w[sl], grid_w[sl], ow, gw, w, dim=2)
        base = batch[sl].view(n, 1, 1, 1, 1) * (h * w)
        yl, yh = y_lo[..., :, None] * w, y_hi[..., :, None] * w  # (n, oh, ow, gh, 1)
        xl, xh = x_lo[..., None, :], x_hi[..., None, :]  # (n, oh, ow, 1, gw)
        ly_, lx_ = ly[..., :, None], lx[..., None, :]
        valid = (vy[..., :, None] & vx[..., None, :]).to(dtype)
        acc = 0
        for rows, cols, wt in (
            (yl, xl, (1 - ly_) * (1 - lx_)),
            (yl, xh, (1 - ly_) * lx_),
            (yh, xl, ly_ * (1 - lx_)),
            (yh, xh, ly_ * lx_),
        ):
            idx = (base + rows + cols).reshape(-1)
            vals = feats[idx].view(n, oh, ow, gh, gw, c)
            acc = acc + (wt * valid)[..., None] * vals
        outs.append(acc.sum(dim=(3, 4)) / count[sl].view(n, 1, 1, 1))
    return torch.cat(outs).permute(0, 3, 1, 2).contiguous()
