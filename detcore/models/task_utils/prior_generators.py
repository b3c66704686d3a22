"""Prior generators: anchors (:class:`AnchorGenerator`, :class:`LegacyAnchorGenerator`,
:class:`SSDAnchorGenerator`) and points (:class:`MlvlPointGenerator`) on multi-level feature maps.

Conventions (identical to the reference 2.x so its checkpoints give identical detections):
``strides[i]`` is ``(stride_w, stride_h)``; priors of one level are ordered by location row-major
(y outer, x inner) and, at each location, by base anchor; anchors are ``(x1, y1, x2, y2)`` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _pair(x: Any) -> tuple[float, float]:
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"a stride must be a number or a (w, h) pair, got {x!r}")
        return (x[0], x[1])
    return (x, x)


def _meshgrid(x: torch.Tensor, y: torch.Tensor, row_major: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened grid coordinates; x varies fastest."""
    xx = x.repeat(y.shape[0])
    yy = y.view(-1, 1).repeat(1, x.shape[0]).view(-1)
    return (xx, yy) if row_major else (yy, xx)


def _level_valid_size(
    featmap_size: Sequence[int], pad_shape: Sequence[int], stride: tuple
) -> tuple[int, int]:
    feat_h, feat_w = featmap_size
    h, w = pad_shape[:2]
    return min(int(np.ceil(h / stride[1])), feat_h), min(int(np.ceil(w / stride[0])), feat_w)


def _single_level_valid(
    featmap_size: Sequence[int], valid_size: Sequence[int], num_base: int, device: Any
) -> torch.Tensor:
    feat_h, feat_w = featmap_size
    valid_h, valid_w = valid_size
    valid_x = torch.zeros(feat_w, dtype=torch.bool, device=device)
    valid_y = torch.zeros(feat_h, dtype=torch.bool, device=device)
    valid_x[:valid_w] = True
    valid_y[:valid_h] = True
    valid_xx, valid_yy = _meshgrid(valid_x, valid_y)
    valid = valid_xx & valid_yy
    return valid[:, None].expand(valid.size(0), num_base).contiguous().view(-1)


class AnchorGenerator:
    """Anchors of several feature levels.

    Args:
        strides: per level, a stride or ``(stride_w, stride_h)``.
        ratios: height/width ratios of the anchors at each location.
        scales: anchor scales (relative to ``base_sizes``); or ``octave_base_scale`` with
            ``scales_per_octave`` giving ``octave_base_scale * 2**(i / scales_per_octave)``.
        base_sizes: per level base size (default: the smaller stride of the level).
        scale_major: order base anchors by scale within a ratio (True) or by ratio within a scale.
        centers: per level ``(x, y)`` of the base anchors' centre (default: ``center_offset * base``).
        center_offset: the centre as a fraction of the base size (0 in the reference 2.x).
    """

    def __init__(
        self,
        strides: Sequence[Any],
        ratios: Sequence[float],
        scales: Sequence[float] | None = None,
        base_sizes: Sequence[int] | None = None,
        scale_major: bool = True,
        octave_base_scale: float | None = None,
        scales_per_octave: int | None = None,
        centers: Sequence[tuple[float, float]] | None = None,
        center_offset: float = 0.0,
    ) -> None:
        name = type(self).__name__
        if center_offset != 0 and centers is not None:
            raise ValueError(f"{name}: give either centers or a non-zero center_offset, not both")
        if not 0 <= center_offset <= 1:
            raise ValueError(f"{name}: center_offset must be in [0, 1], got {center_offset}")
        if centers is not None and len(centers) != len(strides):
            raise ValueError(f"{name}: {len(centers)} centers for {len(strides)} strides")
        self.strides = [_pair(s) for s in strides]
        self.base_sizes = [min(s) for s in self.strides] if base_sizes is None else list(base_sizes)
        if len(self.base_sizes) != len(self.strides):
            raise ValueError(f"{name}: {len(self.base_sizes)} base_sizes for {len(self.strides)} strides")
        octave = octave_base_scale is not None and scales_per_octave is not None
        if octave == (scales is not None):
            raise ValueError(f"{name}: give either scales or octave_base_scale with scales_per_octave")
        if scales is not None:
            self.scales = torch.tensor(scales, dtype=torch.float32)
        else:
            octave_scales = np.array([2 ** (i / scales_per_octave) for i in range(scales_per_octave)])
            self.scales = torch.tensor(octave_scales * octave_base_scale, dtype=torch.float32)
        self.octave_base_scale = octave_base_scale
        self.scales_per_octave = scales_per_octave
        self.ratios = torch.tensor(ratios, dtype=torch.float32)
        self.scale_major = scale_major
        self.centers = centers
        self.center_offset = center_offset
        self.base_anchors = self.gen_base_anchors()

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def num_base_priors(self) -> list[int]:
        """Anchors per location, per level."""
        return [b.size(0) for b in self.base_anchors]

    num_base_anchors = num_base_priors

    def gen_base_anchors(self) -> list[torch.Tensor]:
        """Per level, the anchors ``(A, 4)`` of the location at the origin."""
        return [
            self.gen_single_level_base_anchors(
                base, self.scales, self.ratios, None if self.centers is None else self.centers[i]
            )
            for i, base in enumerate(self.base_sizes)
        ]

    def _anchor_sizes(
        self, base_size: float, scales: torch.Tensor, ratios: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Widths and heights ``(R * S,)`` of a level's anchors (ratio ``h / w``, area ``(base * scale)^2``),
        flattened from a (ratio, scale) grid when ``scale_major`` is set, else from a (scale, ratio) grid."""
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        if self.scale_major:
            ws = (base_size * w_ratios[:, None] * scales[None, :]).view(-1)
            hs = (base_size * h_ratios[:, None] * scales[None, :]).view(-1)
        else:
            ws = (base_size * scales[:, None] * w_ratios[None, :]).view(-1)
            hs = (base_size * scales[:, None] * h_ratios[None, :]).view(-1)
        return ws, hs

    def gen_single_level_base_anchors(
        self,
        base_size: float,
        scales: torch.Tensor,
        ratios: torch.Tensor,
        center: tuple[float, float] | None = None,
    ) -> torch.Tensor:
        w = h = base_size
        if center is None:
            x_center, y_center = self.center_offset * w, self.center_offset * h
        else:
            x_center, y_center = center
        ws, hs = self._anchor_sizes(base_size, scales, ratios)
        return torch.stack(
            [x_center - 0.5 * ws, y_center - 0.5 * hs, x_center + 0.5 * ws, y_center + 0.5 * hs], dim=-1
        )

    def grid_priors(
        self, featmap_sizes: Sequence[Sequence[int]], dtype: torch.dtype = torch.float32, device: Any = "cpu"
    ) -> list[torch.Tensor]:
        """Per level, all anchors ``(H * W * A, 4)`` for feature maps of sizes ``[(H, W), ...]``."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f"{type(self).__name__}: {len(featmap_sizes)} feature maps for {self.num_levels} levels"
            )
        return [
            self.single_level_grid_priors(featmap_sizes[i], i, dtype, device) for i in range(self.num_levels)
        ]

    def single_level_grid_priors(
        self,
        featmap_size: Sequence[int],
        level_idx: int,
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
    ) -> torch.Tensor:
        base_anchors = self.base_anchors[level_idx].to(device=device, dtype=dtype)
        feat_h, feat_w = featmap_size
        stride_w, stride_h = self.strides[level_idx]
        shift_x = torch.arange(0, feat_w, device=device).to(dtype) * stride_w
        shift_y = torch.arange(0, feat_h, device=device).to(dtype) * stride_h
        shift_xx, shift_yy = _meshgrid(shift_x, shift_y)
        shifts = torch.stack([shift_xx, shift_yy, shift_xx, shift_yy], dim=-1)
        return (base_anchors[None, :, :] + shifts[:, None, :]).view(-1, 4)

    def sparse_priors(
        self,
        prior_idxs: torch.Tensor,
        featmap_size: Sequence[int],
        level_idx: int,
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
    ) -> torch.Tensor:
        """The anchors at flat indices ``prior_idxs`` of one level (same order as grid_priors)."""
        height, width = featmap_size
        num_base = self.num_base_priors[level_idx]
        base_id = prior_idxs % num_base
        x = (prior_idxs // num_base) % width * self.strides[level_idx][0]
        y = (prior_idxs // width // num_base) % height * self.strides[level_idx][1]
        priors = torch.stack([x, y, x, y], 1).to(dtype).to(device)
        return priors + self.base_anchors[level_idx][base_id, :].to(device=device, dtype=dtype)

    def valid_flags(
        self, featmap_sizes: Sequence[Sequence[int]], pad_shape: Sequence[int], device: Any = "cpu"
    ) -> list[torch.Tensor]:
        """Per level, bool ``(H * W * A,)``: the anchor's location lies inside the padded image."""
        flags = []
        for i in range(self.num_levels):
            valid = _level_valid_size(featmap_sizes[i], pad_shape, self.strides[i])
            flags.append(_single_level_valid(featmap_sizes[i], valid, self.num_base_priors[i], device))
        return flags

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(strides={self.strides}, ratios={self.ratios.tolist()}, "
            f"scales={self.scales.tolist()}, base_sizes={self.base_sizes}, scale_major={self.scale_major}, "
            f"center_offset={self.center_offset})"
        )


class LegacyAnchorGenerator(AnchorGenerator):
    """The 1.x anchors: ``+1`` width convention, centre ``center_offset * (base - 1)``, rounded corners.

    Use with :class:`LegacyDeltaXYWHBBoxCoder` and ``center_offset=0.5`` for 1.x checkpoints.
    """

    def gen_single_level_base_anchors(
        self,
        base_size: float,
        scales: torch.Tensor,
        ratios: torch.Tensor,
        center: tuple[float, float] | None = None,
    ) -> torch.Tensor:
        w = h = base_size
        if center is None:
            x_center, y_center = self.center_offset * (w - 1), self.center_offset * (h - 1)
        else:
            x_center, y_center = center
        ws, hs = self._anchor_sizes(base_size, scales, ratios)
        return torch.stack(
            [
                x_center - 0.5 * (ws - 1),
                y_center - 0.5 * (hs - 1),
                x_center + 0.5 * (ws - 1),
                y_center + 0.5 * (hs - 1),
            ],
            dim=-1,
        ).round()


class SSDAnchorGenerator(AnchorGenerator):
    """SSD anchors: per level, sizes ``min_size`` and ``sqrt(min_size * max_size)`` at ratio 1 plus
    ``min_size`` at each ratio ``r`` and ``1/r`` of ``ratios[level]``, centred at half a stride.

    Without ``min_sizes``/``max_sizes`` they follow from ``basesize_ratio_range`` and ``input_size``
    (300 or 512) exactly as the reference computes them.
    """

    def __init__(
        self,
        strides: Sequence[Any],
        ratios: Sequence[Sequence[float]],
        min_sizes: Sequence[float] | None = None,
        max_sizes: Sequence[float] | None = None,
        basesize_ratio_range: Sequence[float] = (0.15, 0.9),
        input_size: int = 300,
        scale_major: bool = True,
    ) -> None:
        if len(strides) != len(ratios):
            raise ValueError(f"SSDAnchorGenerator: {len(strides)} strides but {len(ratios)} ratio lists")
        if (min_sizes is None) != (max_sizes is None):
            raise ValueError("SSDAnchorGenerator: give both min_sizes and max_sizes, or neither")
        self.strides = [_pair(s) for s in strides]
        self.centers = [(s[0] / 2.0, s[1] / 2.0) for s in self.strides]
        self.input_size = input_size
        self.basesize_ratio_range = tuple(basesize_ratio_range)
        if min_sizes is None:
            min_sizes, max_sizes = self._sizes_from_range(input_size, self.basesize_ratio_range, len(strides))
        if not len(min_sizes) == len(max_sizes) == len(strides):
            raise ValueError(
                f"SSDAnchorGenerator: {len(min_sizes)} min_sizes / {len(max_sizes)} max_sizes for "
                f"{len(strides)} strides"
            )
        self.scales, self.ratios = [], []
        for k in range(len(self.strides)):
            anchor_ratio = [1.0]
            for r in ratios[k]:
                anchor_ratio += [1 / r, r]
            self.ratios.append(torch.tensor(anchor_ratio, dtype=torch.float32))
            self.scales.append(torch.tensor([1.0, np.sqrt(max_sizes[k] / min_sizes[k])], dtype=torch.float32))
        self.base_sizes = list(min_sizes)
        self.min_sizes, self.max_sizes = list(min_sizes), list(max_sizes)
        self.scale_major = scale_major
        self.center_offset = 0
        self.octave_base_scale = self.scales_per_octave = None
        self.base_anchors = self.gen_base_anchors()

    @staticmethod
    def _sizes_from_range(
        input_size: int, ratio_range: tuple, num_levels: int
    ) -> tuple[list[int], list[int]]:
        min_ratio, max_ratio = int(ratio_range[0] * 100), int(ratio_range[1] * 100)
        step = int(np.floor(max_ratio - min_ratio) / (num_levels - 2))
        min_sizes, max_sizes = [], []
        for ratio in range(min_ratio, max_ratio + 1, step):
            min_sizes.append(int(input_size * ratio / 100))
            max_sizes.append(int(input_size * (ratio + step) / 100))
        first = {(300, 0.15): (7, 15), (300, 0.2): (10, 20), (512, 0.1): (4, 10), (512, 0.15): (7, 15)}
        key = (input_size, ratio_range[0])
        if key not in first:
            raise ValueError(
                f"SSDAnchorGenerator: without min_sizes/max_sizes, input_size must be 300 "
                f"(basesize_ratio_range starting at 0.15 or 0.2) "
                f"or 512 (starting at 0.1 or 0.15); got {input_size}, {ratio_range}"
            )
        lo, hi = first[key]
        min_sizes.insert(0, int(input_size * lo / 100))
        max_sizes.insert(0, int(input_size * hi / 100))
        return min_sizes, max_sizes

    def gen_base_anchors(self) -> list[torch.Tensor]:
        out = []
        for i, base_size in enumerate(self.base_sizes):
            anchors = self.gen_single_level_base_anchors(
                base_size, self.scales[i], self.ratios[i], self.centers[i]
            )
            indices = list(range(len(self.ratios[i])))
            indices.insert(1, len(indices))
            out.append(torch.index_select(anchors, 0, torch.tensor(indices, dtype=torch.long)))
        return out

    def __repr__(self) -> str:
        return (
            f"SSDAnchorGenerator(strides={self.strides}, min_sizes={self.min_sizes}, "
            f"max_sizes={self.max_sizes}, ratios={[r.tolist() for r in self.ratios]})"
        )


class MlvlPointGenerator:
    """Points (anchor-free priors) of several feature levels: ``((x + offset) * stride_w,
    (y + offset) * stride_h)``, row-major; with ``with_stride`` each point is
    ``(x, y, stride_w, stride_h)``."""

    def __init__(self, strides: Sequence[Any], offset: float = 0.5) -> None:
        self.strides = [_pair(s) for s in strides]
        self.offset = offset

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def num_base_priors(self) -> list[int]:
        return [1 for _ in self.strides]

    def grid_priors(
        self,
        featmap_sizes: Sequence[Sequence[int]],
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
        with_stride: bool = False,
    ) -> list[torch.Tensor]:
        """Per level, ``(H * W, 2)`` points (or ``(H * W, 4)`` with strides)."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f"MlvlPointGenerator: {len(featmap_sizes)} feature maps for {self.num_levels} levels"
            )
        return [
            self.single_level_grid_priors(featmap_sizes[i], i, dtype, device, with_stride)
            for i in range(self.num_levels)
        ]

    def single_level_grid_priors(
        self,
        featmap_size: Sequence[int],
        level_idx: int,
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
        with_stride: bool = False,
    ) -> torch.Tensor:
        feat_h, feat_w = featmap_size
        stride_w, stride_h = self.strides[level_idx]
        shift_x = ((torch.arange(0, feat_w, device=device) + self.offset) * stride_w).to(dtype)
        shift_y = ((torch.arange(0, feat_h, device=device) + self.offset) * stride_h).to(dtype)
        shift_xx, shift_yy = _meshgrid(shift_x, shift_y)
        if not with_stride:
            return torch.stack([shift_xx, shift_yy], dim=-1)
        sw = shift_xx.new_full((shift_xx.shape[0],), stride_w).to(dtype)
        sh = shift_xx.new_full((shift_yy.shape[0],), stride_h).to(dtype)
        return torch.stack([shift_xx, shift_yy, sw, sh], dim=-1)

    def valid_flags(
        self, featmap_sizes: Sequence[Sequence[int]], pad_shape: Sequence[int], device: Any = "cpu"
    ) -> list[torch.Tensor]:
        """Per level, bool ``(H * W,)``: the point's location lies inside the padded image."""
        flags = []
        for i in range(self.num_levels):
            valid = _level_valid_size(featmap_sizes[i], pad_shape, self.strides[i])
            flags.append(_single_level_valid(featmap_sizes[i], valid, 1, device))
        return flags

    def sparse_priors(
        self,
        prior_idxs: torch.Tensor,
        featmap_size: Sequence[int],
        level_idx: int,
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
    ) -> torch.Tensor:
        height, width = featmap_size
        x = (prior_idxs % width + self.offset) * self.strides[level_idx][0]
        y = ((prior_idxs // width) % height + self.offset) * self.strides[level_idx][1]
        return torch.stack([x, y], 1).to(dtype).to(device)

    def __repr__(self) -> str:
        return f"MlvlPointGenerator(strides={self.strides}, offset={self.offset})"
