"""``GridHead``: Grid R-CNN's localisation branch (Lu et al., CVPR 2019; Grid R-CNN Plus, 2019).

A ``g x g`` grid of points (``g = 3``: the box's corners, edge midpoints and centre) is located on
per-point heatmaps instead of regressing deltas. Point ``k`` sits at column ``k // g`` and row
``k % g`` of the grid: point 0 is the top-left corner, 2 the bottom-left, 6 the top-right, 8 the
bottom-right.

Numerics follow the reference 2.x:

- the RoI features ``(N, C, S, S)`` (``S = roi_feat_size``, 14) go through ``num_convs`` 3x3 conv+GN+ReLU
  layers (the first with stride 2) to ``grid_points * point_feat_channels`` channels, one block of
  ``point_feat_channels`` per point;
- feature fusion: each point's block gets its 4-neighbours' blocks added through a transition (a 5x5
  depth-wise conv then a 1x1 conv): first order ``f1_i = x_i + sum_{n in N(i)} T1_in(x_n)``, then
  second order ``f2_i = x_i + sum_{n in N(i)} T2_in(f1_n)``, so information travels two grid steps;
- two grouped 4x4 deconvs (stride 2, one group per point, GN(``grid_points``) + ReLU between) give the
  heatmaps ``(N, grid_points, 2S, 2S)``; in training the unfused features also go through the deconvs
  and both heatmaps are supervised (``loss_grid = loss(fused) + loss(unfused)``);
- the heatmaps live on a ``4S x 4S`` map of the RoI enlarged 2x about its centre (the "whole map"), and
  each point's ``2S x 2S`` heatmap covers only its quarter-area sub-region of it (Grid R-CNN Plus);
- targets: every pixel within ``pos_radius`` of the gt's grid point (in whole-map pixels) is 1; RoIs
  whose enlarged width or height is at most ``g`` pixels get all-zero targets;
- decoding: each heatmap's argmax pixel ``p`` maps to ``(p + 0.5) / (2S) * w + x1 - w / 2`` (``w`` the
  RoI's width, likewise in y); each box edge is the average of the ``g`` points on it weighted by
  their sigmoid peak values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detcore.models.init import BaseModule
from detcore.models.layers.conv_module import ConvModule
from detcore.registry import build


def grid_neighbors(grid_size: int) -> list[tuple[int, ...]]:
    """The 4-neighbours of each point of a ``grid_size``-square grid (point ``k`` at column
    ``k // grid_size``, row ``k % grid_size``), in the order left, up, down, right (the order of the
    transition modules in the reference's checkpoints)."""
    neighbors = []
    for col in range(grid_size):
        for row in range(grid_size):
            found = []
            if col > 0:
                found.append((col - 1) * grid_size + row)
            if row > 0:
                found.append(col * grid_size + row - 1)
            if row < grid_size - 1:
                found.append(col * grid_size + row + 1)
            if col < grid_size - 1:
                found.append((col + 1) * grid_size + row)
            neighbors.append(tuple(found))
    return neighbors


def _transition(channels: int) -> nn.Sequential:
    """A fusion transition: 5x5 depth-wise conv then 1x1 conv (keys ``0.*``, ``1.*``)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 5, stride=1, padding=2, groups=channels),
        nn.Conv2d(channels, channels, 1),
    )


class GridHead(BaseModule):
    """Grid-point heatmaps of RoI features (see the module doc).

    Args:
        grid_points: number of grid points, a square ``>= 4`` (9).
        num_convs: 3x3 conv layers before the fusion (8; the first has stride 2).
        roi_feat_size: side ``S`` of the square RoI features (14); heatmaps are ``2S x 2S``.
        in_channels: channels of the RoI features.
        conv_kernel_size: kernel of the convs (3).
        point_feat_channels: channels per grid point (64); the convs have
            ``grid_points * point_feat_channels`` outputs.
        deconv_kernel_size: kernel of the two deconvs (4).
        conv_dilation: dilation of the convs after the first (1, as the reference's configs; the
            paper's "dilated convolutions" would be 2).
        class_agnostic: accepted for the reference's configs (the grid is always class-agnostic).
        loss_grid: heatmap loss table (sigmoid cross-entropy, weight 15).
        conv_cfg / norm_cfg: of the convs (GN with 36 groups).
        init_cfg: Kaiming for convs, N(0, 0.001) for the deconvs, ``deconv2``'s bias ``-log(99)``
            (initial heatmap probability 0.01).
    """

    def __init__(
        self,
        grid_points: int = 9,
        num_convs: int = 8,
        roi_feat_size: int = 14,
        in_channels: int = 256,
        conv_kernel_size: int = 3,
        point_feat_channels: int = 64,
        deconv_kernel_size: int = 4,
        conv_dilation: int = 1,
        class_agnostic: bool = False,
        loss_grid: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "CrossEntropyLoss",
            "use_sigmoid": True,
            "loss_weight": 15,
        },
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = {"type": "GN", "num_groups": 36},  # noqa: B006
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = (
            {"type": "Kaiming", "layer": ["Conv2d", "Linear"]},
            {
                "type": "Normal",
                "layer": "ConvTranspose2d",
                "std": 0.001,
                "override": {
                    "type": "Normal",
                    "name": "deconv2",
                    "std": 0.001,
                    "bias": -math.log(0.99 / 0.01),
                },
            },
        ),  # fmt: skip
    ) -> None:
        super().__init__(list(init_cfg) if isinstance(init_cfg, tuple) else init_cfg)
        name = type(self).__name__
        grid_size = math.isqrt(int(grid_points))
        if grid_points < 4 or grid_size * grid_size != grid_points:
            raise ValueError(f"{name}: grid_points must be a square number >= 4, got {grid_points}")
        if not isinstance(roi_feat_size, int) or roi_feat_size < 2:
            raise ValueError(
                f"{name}: roi_feat_size must be one int >= 2 (square RoIs), got {roi_feat_size!r}"
            )
        self.grid_points = int(grid_points)
        self.grid_size = grid_size
        self.num_convs = int(num_convs)
        self.roi_feat_size = roi_feat_size
        self.in_channels = int(in_channels)
        self.point_feat_channels = int(point_feat_channels)
        self.conv_out_channels = self.point_feat_channels * self.grid_points
        self.class_agnostic = class_agnostic
        if norm_cfg is not None and norm_cfg.get("type") == "GN":
            if self.conv_out_channels % int(norm_cfg["num_groups"]) != 0:
                raise ValueError(
                    f"{name}: norm_cfg.num_groups {norm_cfg['num_groups']} does not divide the "
                    f"{self.conv_out_channels} conv channels (grid_points x point_feat_channels)"
                )
        #: side of the map of the 2x-enlarged RoI; each heatmap covers a half-side sub-region
        self.whole_map_size = roi_feat_size * 4
        self.heatmap_size = self.whole_map_size // 4 * 2
        self.sub_regions = self.calc_sub_regions()

        convs = []
        for i in range(self.num_convs):
            dilation = 1 if i == 0 else int(conv_dilation)
            convs.append(
                ConvModule(
                    self.in_channels if i == 0 else self.conv_out_channels,
                    self.conv_out_channels,
                    conv_kernel_size,
                    stride=2 if i == 0 else 1,
                    padding=dilation * (conv_kernel_size - 1) // 2,
                    dilation=dilation,
                    conv_cfg=dict(conv_cfg) if conv_cfg is not None else None,
                    norm_cfg=dict(norm_cfg) if norm_cfg is not None else None,
                    bias=True,
                )
            )
        self.convs = nn.Sequential(*convs)
        pad = (deconv_kernel_size - 2) // 2
        self.deconv1 = nn.ConvTranspose2d(
            self.conv_out_channels, self.conv_out_channels, deconv_kernel_size, stride=2, padding=pad,
            groups=self.grid_points,
        )  # fmt: skip
        self.norm1 = nn.GroupNorm(self.grid_points, self.conv_out_channels)
        self.deconv2 = nn.ConvTranspose2d(
            self.conv_out_channels, self.grid_points, deconv_kernel_size, stride=2, padding=pad,
            groups=self.grid_points,
        )  # fmt: skip

        self.neighbor_points = grid_neighbors(grid_size)
        self.forder_trans = nn.ModuleList()  # first-order transitions, one per (point, neighbour)
        self.sorder_trans = nn.ModuleList()  # second-order transitions
        for neighbors in self.neighbor_points:
            self.forder_trans.append(nn.ModuleList(_transition(self.point_feat_channels) for _ in neighbors))
            self.sorder_trans.append(nn.ModuleList(_transition(self.point_feat_channels) for _ in neighbors))
        self.loss_grid = build("loss", loss_grid, where=f"{name}.loss_grid")

    # -- geometry ---------------------------------------------------------------------------------

    def calc_sub_regions(self) -> list[tuple[int, int, int, int]]:
        """Each point's ``(x1, y1, x2, y2)`` window (whole-map pixels, ``heatmap_size`` square): the
        first column / row starts at 0, the last ends at the map's edge, the inner ones start a
        quarter of the map before the point's nominal position."""
        half = self.heatmap_size
        g = self.grid_size

        def start(idx: int) -> int:
            if idx == 0:
                return 0
            if idx == g - 1:
                return half
            return max(int((idx / (g - 1) - 0.25) * self.whole_map_size), 0)

        regions = []
        for k in range(self.grid_points):
            x1, y1 = start(k // g), start(k % g)
            regions.append((x1, y1, x1 + half, y1 + half))
        return regions

    # -- forward ----------------------------------------------------------------------------------

    def fuse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Point features ``(N, grid_points * c, h, w)`` -> ``(first_order, second_order)`` fused
        features of the same shape (see the module doc)."""
        c = self.point_feat_channels
        blocks = list(x.split(c, dim=1))
        first = [
            blocks[i] + sum(self.forder_trans[i][j](blocks[n]) for j, n in enumerate(points))
            for i, points in enumerate(self.neighbor_points)
        ]
        second = [
            blocks[i] + sum(self.sorder_trans[i][j](first[n]) for j, n in enumerate(points))
            for i, points in enumerate(self.neighbor_points)
        ]
        return torch.cat(first, dim=1), torch.cat(second, dim=1)

    def _heatmap(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv2(F.relu(self.norm1(self.deconv1(x)), inplace=True))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """RoI features ``(N, in_channels, S, S)`` -> ``{"fused", "unfused"}`` heatmap logits
        ``(N, grid_points, 2S, 2S)`` (in eval mode ``unfused`` is ``fused``)."""
        if x.dim() != 4 or x.shape[-1] != self.roi_feat_size or x.shape[-2] != self.roi_feat_size:
            raise ValueError(
                f"{type(self).__name__}: expects RoI features (N, C, {self.roi_feat_size}, "
                f"{self.roi_feat_size}), got {tuple(x.shape)}"
            )
        x = self.convs(x)
        _, fused_feats = self.fuse(x)
        fused = self._heatmap(fused_feats)
        unfused = self._heatmap(x) if self.training else fused
        return {"fused": fused, "unfused": unfused}

    # -- targets and loss -------------------------------------------------------------------------

    def get_targets(
        self, pos_bboxes: torch.Tensor, pos_gt_bboxes: torch.Tensor, pos_radius: int = 1
    ) -> torch.Tensor:
        """Heatmap targets ``(N, grid_points, 2S, 2S)`` (0/1 floats) of ``N`` positive RoIs ``(N, 4)``
        and their gt boxes ``(N, 4)`` (xyxy pixels).

        The RoI is enlarged 2x about its centre and mapped to the ``4S``-pixel whole map; gt point
        ``k`` lands on whole-map pixel ``c = trunc((p - x1) / w * 4S)`` per axis; the pixels ``q`` of
        point ``k``'s sub-region with ``|q - c|^2 <= pos_radius^2`` are positive.
        """
        if pos_bboxes.shape != pos_gt_bboxes.shape or (pos_bboxes.dim() != 2 or pos_bboxes.shape[-1] != 4):
            raise ValueError(
                f"{type(self).__name__}.get_targets: pos_bboxes {tuple(pos_bboxes.shape)} and "
                f"pos_gt_bboxes {tuple(pos_gt_bboxes.shape)} must both be (N, 4)"
            )
        g, size = self.grid_size, self.whole_map_size
        boxes = pos_bboxes.float()
        gts = pos_gt_bboxes.float()
        wh = boxes[:, 2:] - boxes[:, :2]
        enlarged_x1y1 = boxes[:, :2] - wh / 2
        enlarged_wh = 2 * wh
        # point k's fraction along each axis: column k // g (x), row k % g (y)
        k = torch.arange(self.grid_points, device=boxes.device)
        frac = torch.stack([(k // g).float(), (k % g).float()], dim=1) / (g - 1)  # (P, 2)
        points = gts[:, None, :2] * (1 - frac) + gts[:, None, 2:] * frac  # (N, P, 2)
        centres = torch.trunc((points - enlarged_x1y1[:, None]) / enlarged_wh[:, None] * size)
        origins = torch.tensor([r[:2] for r in self.sub_regions], dtype=torch.float32, device=boxes.device)
        pix = torch.arange(self.heatmap_size, dtype=torch.float32, device=boxes.device)
        coords = origins[:, :, None] + pix  # (P, 2, H): whole-map x / y of each heatmap column / row
        d2 = (coords[None] - centres[..., None]) ** 2  # (N, P, 2, H)
        targets = (d2[:, :, 1, :, None] + d2[:, :, 0, None, :]) <= float(pos_radius) ** 2
        small = (enlarged_wh <= g).any(dim=1)
        targets[small] = False
        return targets.float()

    def loss(
        self, grid_pred: Mapping[str, torch.Tensor], grid_targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``{"loss_grid": loss(fused) + loss(unfused)}`` against targets of :meth:`get_targets`."""
        fused = self.loss_grid(grid_pred["fused"], grid_targets)
        unfused = self.loss_grid(grid_pred["unfused"], grid_targets)
        return {"loss_grid": fused + unfused}

    # -- decoding ---------------------------------------------------------------------------------

    def decode(self, bboxes: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
        """Refined boxes ``(N, 4)`` from the boxes the heatmaps were predicted on ``(N, 4)`` and the
        heatmap logits ``(N, grid_points, 2S, 2S)``: each edge the peak-score weighted average of the
        positions of the grid points on it (see the module doc). Not clipped."""
        n, p, h, w = heatmaps.shape
        side = self.heatmap_size
        if p != self.grid_points or h != side or w != side or bboxes.shape != (n, 4):
            raise ValueError(
                f"{type(self).__name__}.decode: boxes {tuple(bboxes.shape)} and heatmaps "
                f"{tuple(heatmaps.shape)}; expected (N, 4) and (N, {self.grid_points}, "
                f"{self.heatmap_size}, {self.heatmap_size})"
            )
        probs = heatmaps.sigmoid().flatten(2)
        scores, pos = probs.max(dim=2)  # (N, P)
        origins = torch.tensor(self.sub_regions, dtype=bboxes.dtype, device=bboxes.device)[:, :2]
        xs = (pos % w).to(bboxes.dtype) + origins[:, 0]
        ys = torch.div(pos, w, rounding_mode="floor").to(bboxes.dtype) + origins[:, 1]
        widths = (bboxes[:, 2] - bboxes[:, 0])[:, None]
        heights = (bboxes[:, 3] - bboxes[:, 1])[:, None]
        abs_xs = (xs + 0.5) / w * widths + bboxes[:, [0]] - widths / 2
        abs_ys = (ys + 0.5) / h * heights + bboxes[:, [1]] - heights / 2
        g = self.grid_size
        k = torch.arange(self.grid_points, device=bboxes.device)
        edges = (
            (abs_xs, k // g == 0),  # left column: x1
            (abs_ys, k % g == 0),  # top row: y1
            (abs_xs, k // g == g - 1),  # right column: x2
            (abs_ys, k % g == g - 1),  # bottom row: y2
        )
        out = [(coord[:, on] * scores[:, on]).sum(1) / scores[:, on].sum(1) for coord, on in edges]
        return torch.stack(out, dim=1)
