"""Gaussian heatmap targets and their decoding (CornerNet, CenterNet, CentripetalNet).

Training: :func:`gaussian_radius` gives the radius a box's center (or corner) may move while the
shifted box keeps an IoU of at least ``min_overlap``; :func:`gen_gaussian_target` draws a peak of that
radius into a class heatmap. Testing: :func:`get_local_maximum` keeps the 3x3 peaks,
:func:`get_topk_from_heatmap` takes the ``k`` best over classes and positions, and
:func:`transpose_and_gather_feat` reads the regression maps at those positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian2D(radius: int, sigma: float = 1.0, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """A ``(2 radius + 1, 2 radius + 1)`` kernel ``exp(-(x^2 + y^2) / (2 sigma^2))`` for ``x, y`` in
    ``[-radius, radius]``, peak 1 at the center; values below ``eps * max`` are set to 0."""
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device).view(1, -1)
    y = torch.arange(-radius, radius + 1, dtype=dtype, device=device).view(-1, 1)
    h = (-(x * x + y * y) / (2 * sigma * sigma)).exp()
    h[h < torch.finfo(h.dtype).eps * h.max()] = 0
    return h


def gen_gaussian_target(heatmap: torch.Tensor, center: tuple[int, int], radius: int,
                        k: float = 1.0) -> torch.Tensor:
    """Draw a Gaussian peak (``sigma = (2 radius + 1) / 6``, height ``k``) into ``heatmap`` ``(H, W)``
    in place, keeping the element-wise maximum with what is there; ``center`` is ``(x, y)`` in
    heatmap pixels (integers). The part outside the map is cut off. Returns ``heatmap``."""
    diameter = 2 * radius + 1
    kernel = gaussian2D(radius, sigma=diameter / 6, dtype=heatmap.dtype, device=heatmap.device)
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return heatmap
    region = heatmap[y - top:y + bottom, x - left:x + right]
    patch = kernel[radius - top:radius + bottom, radius - left:radius + right]
    torch.max(region, patch * k, out=region)
    return heatmap


def gaussian_radius(det_size: tuple[float, float], min_overlap: float) -> float:
    """The largest radius by which both corners of a ``(height, width)`` box may move so that the moved
    box still has IoU ``>= min_overlap`` with it: the smallest root of the three cases of CornerNet
    (both corners inside, both outside, one of each), as the reference computes them."""
    height, width = det_size
    if not 0 < min_overlap < 1:
        raise ValueError(f"gaussian_radius: min_overlap must be in (0, 1), got {min_overlap}")
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 - math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 - math.sqrt(b2 ** 2 - 16 * c2)) / 8
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / (2 * a3)
    return min(r1, r2, r3)


def get_local_maximum(heat: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """``heat`` ``(B, C, H, W)`` with every value that is not the maximum of its ``kernel x kernel``
    neighbourhood set to 0 (a cheap NMS on heatmaps)."""
    pad = (kernel - 1) // 2
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=pad)
    return heat * (hmax == heat).to(heat.dtype)


def get_topk_from_heatmap(
    scores: torch.Tensor, k: int = 20
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` highest of ``scores`` ``(B, C, H, W)`` over classes and positions together.

    Returns ``(topk_scores, topk_inds, topk_clses, topk_ys, topk_xs)``, each ``(B, k)``: the scores,
    the flat position ``y * W + x`` in the map, the class, and the row and column (as floats, like the
    reference, for box arithmetic). ``k`` larger than ``C * H * W`` is an error."""
    batch, _, height, width = scores.shape
    if k > scores[0].numel():
        raise ValueError(f"get_topk_from_heatmap: k={k} > {scores[0].numel()} heatmap entries")
    topk_scores, topk_inds = torch.topk(scores.view(batch, -1), k)
    topk_clses = topk_inds // (height * width)
    topk_inds = topk_inds % (height * width)
    topk_ys = (topk_inds // width).to(scores.dtype)
    topk_xs = (topk_inds % width).to(scores.dtype)
    return topk_scores, topk_inds, topk_clses, topk_ys, topk_xs


def gather_feat(feat: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """Rows ``ind`` ``(B, K)`` of ``feat`` ``(B, N, D)``: ``(B, K, D)``."""
    return feat.gather(1, ind.unsqueeze(2).expand(ind.size(0), ind.size(1), feat.size(2)))


def transpose_and_gather_feat(feat: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """The channel vectors of ``feat`` ``(B, D, H, W)`` at flat positions ``ind`` ``(B, K)`` (``y * W +
    x``): ``(B, K, D)``."""
    batch, dim = feat.shape[:2]
    return gather_feat(feat.permute(0, 2, 3, 1).reshape(batch, -1, dim), ind)
