"""Deformable convolution (DCNv1) and modulated deformable convolution (DCNv2) in plain PyTorch.

For kernel tap ``(i, j)`` at output ``(ho, wo)`` the input is sampled bilinearly at
``(ho * stride - pad + i * dilation + dy, wo * stride - pad + j * dilation + dx)`` with zeros outside the
map; the offset tensor is (B, 2 * deform_groups * kh * kw, Ho, Wo) holding, per deform group and per tap
(row-major), the pair (dy, dx) (the torchvision/mmcv layout). DCNv2 multiplies each sample by its mask
(B, deform_groups * kh * kw, Ho, Wo). The samples form im2col columns that a grouped matmul with the
weight turns into the output. Sampling uses ``grid_sample`` (zeros padding, pixel-centre convention),
which is the same per-corner bilinear rule as the native kernels and is differentiable in input and offset.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    mask: Optional[Tensor],
    stride: Tuple[int, int],
    padding: Tuple[int, int],
    dilation: Tuple[int, int],
    groups: int,
    deform_groups: int,
) -> Tensor:
    """(B, C, H, W) input -> (B, C_out, Ho, Wo); ``mask`` None means DCNv1."""
    b, c, h, w = input.shape
    c_out, _, kh, kw = weight.shape
    ho, wo = offset.shape[2], offset.shape[3]
    taps = kh * kw
    dg = deform_groups
    if b == 0 or ho == 0 or wo == 0:
        out = input.new_zeros((b, c_out, ho, wo))
        return out + bias.view(1, -1, 1, 1) if bias is not None else out
    dtype, device = input.dtype, input.device
    # base sampling positions (taps, Ho, Wo)
    ky = torch.arange(kh, device=device, dtype=dtype) * dilation[0]
    kx = torch.arange(kw, device=device, dtype=dtype) * dilation[1]
    oy = torch.arange(ho, device=device, dtype=dtype) * stride[0] - padding[0]
    ox = torch.arange(wo, device=device, dtype=dtype) * stride[1] - padding[1]
    base_y = (ky[:, None, None, None] + oy[None, None, :, None]).expand(kh, kw, ho, wo).reshape(taps, ho, wo)
    base_x = (kx[None, :, None, None] + ox[None, None, None, :]).expand(kh, kw, ho, wo).reshape(taps, ho, wo)
    off = offset.view(b, dg, taps, 2, ho, wo)
    y = base_y + off[:, :, :, 0]  # (B, dg, taps, Ho, Wo)
    x = base_x + off[:, :, :, 1]
    # grid_sample with align_corners=False maps pixel p to normalised (2p + 1) / size - 1
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1)
    grid = grid.view(b * dg, taps * ho, wo, 2)
    sampled = F.grid_sample(
        input.reshape(b * dg, c // dg, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    ).view(b, dg, c // dg, taps, ho, wo)
    if mask is not None:
        sampled = sampled * mask.view(b, dg, 1, taps, ho, wo)
    cols = sampled.reshape(b, groups, (c // groups) * taps, ho * wo)
    wmat = weight.reshape(groups, c_out // groups, (c // groups) * taps)
    out = torch.einsum("gok,bgkl->bgol", wmat, cols).reshape(b, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
