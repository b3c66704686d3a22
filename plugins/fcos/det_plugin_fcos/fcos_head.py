"""``FCOSHead``: fully convolutional one-stage detection (Tian et al., 2019), reference 2.x numerics.

Every point of every level predicts class scores, its distances ``(l, t, r, b)`` to the four sides
of a box, and a centerness logit. Training targets: a point is positive for a ground-truth box if it
lies inside the box (or, with ``center_sampling``, inside a ``center_sample_radius * stride`` square
around the box centre clipped to the box) and its largest distance falls in its level's
``regress_ranges`` interval (bounds included); among several such boxes the smallest-area one wins.
Losses: focal loss over all points (averaged over positives), IoU loss of the decoded boxes of the
positives weighted by their centerness targets (averaged over the sum of those targets), and binary
cross-entropy of centerness (averaged over positives). At test time, ``sigmoid(centerness)``
multiplies the class scores before NMS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.dense_heads.anchor_free_head import AnchorFreeHead, Scale
from detcore.models.utils import multi_apply, reduce_mean
from detcore.registry import build
from detcore.structures.boxes import Boxes
from detcore.structures.instances import Instances

INF = 1e8

_DEFAULT_INIT = {
    "type": "Normal",
    "layer": "Conv2d",
    "std": 0.01,
    "override": {"type": "Normal", "name": "conv_cls", "std": 0.01, "bias_prob": 0.01},
}


class FCOSHead(AnchorFreeHead):
    """The FCOS head (see the module docstring).

    Args (besides :class:`AnchorFreeHead`'s):
        regress_ranges: per level ``(lo, hi)``: a point of that level regresses objects whose largest
            side distance ``max(l, t, r, b)`` lies in ``[lo, hi]``.
        center_sampling: positives only near the box centre (a training trick).
        center_sample_radius: the centre region's half size, in strides of the level.
        norm_on_bbox: regress distances divided by the stride with ``relu`` (instead of ``exp``);
            at test time the prediction is multiplied back by the stride.
        centerness_on_reg: compute centerness from the regression tower (instead of the cls tower).
        loss_centerness: the centerness loss table (binary cross-entropy on logits).

    ``forward(feats)`` returns per level ``cls_scores (B, num_classes, H, W)``, ``bbox_preds
    (B, 4, H, W)`` (positive distances in pixels, or in strides when ``norm_on_bbox`` in training)
    and ``centernesses (B, 1, H, W)`` logits.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        regress_ranges: Sequence[Sequence[float]] = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF)),
        center_sampling: bool = False,
        center_sample_radius: float = 1.5,
        norm_on_bbox: bool = False,
        centerness_on_reg: bool = False,
        loss_cls: Mapping[str, Any] | None = None,
        loss_bbox: Mapping[str, Any] | None = None,
        loss_centerness: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = {"type": "GN", "num_groups": 32, "requires_grad": True},  # noqa: B006
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = _DEFAULT_INIT,
        **kwargs: Any,
    ) -> None:
        self.regress_ranges = [tuple(float(v) for v in r) for r in regress_ranges]
        for i, r in enumerate(self.regress_ranges):
            if len(r) != 2 or r[0] > r[1]:
                raise ValueError(f"FCOSHead: regress_ranges[{i}] must be (lo, hi) with lo <= hi, got {r}")
        self.center_sampling = center_sampling
        self.center_sample_radius = center_sample_radius
        self.norm_on_bbox = norm_on_bbox
        self.centerness_on_reg = centerness_on_reg
        # loss_cls / loss_bbox None: AnchorFreeHead's focal loss and IoU loss
        if loss_centerness is None:
            loss_centerness = {"type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0}
        super().__init__(num_classes, in_channels, loss_cls=loss_cls, loss_bbox=loss_bbox, norm_cfg=norm_cfg,
                         init_cfg=init_cfg, **kwargs)
        if len(self.regress_ranges) != len(self.strides):
            raise ValueError(
                f"FCOSHead: {len(self.regress_ranges)} regress_ranges for {len(self.strides)} strides"
            )
        self.loss_centerness = build("loss", loss_centerness, where="FCOSHead.loss_centerness")

    def _init_layers(self) -> None:
        super()._init_layers()
        chn = self.feat_channels if self.stacked_convs > 0 else self.in_channels
        self.conv_centerness = nn.Conv2d(chn, 1, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])

    # -- forward -----------------------------------------------------------------------------------

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
        """Per level ``(cls_scores, bbox_preds, centernesses)``."""
        if len(feats) != len(self.strides):
            raise ValueError(f"FCOSHead: {len(feats)} feature maps for {len(self.strides)} strides")
        return multi_apply(self.forward_single, feats, self.scales, self.strides)

    def forward_single(self, x: torch.Tensor, scale: nn.Module, stride: int) -> tuple[torch.Tensor, ...]:
        """One level ``(B, C, H, W)`` -> ``cls_score, bbox_pred, centerness``."""
        cls_score, bbox_pred, cls_feat, reg_feat = super().forward_single(x)
        centerness = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        # float: exp() of half-precision regressions overflows
        bbox_pred = scale(bbox_pred).float()
        if self.norm_on_bbox:
            bbox_pred = bbox_pred.clamp(min=0)
            if not self.training:
                bbox_pred = bbox_pred * stride
        else:
            bbox_pred = bbox_pred.exp()
        return cls_score, bbox_pred, centerness

    # -- points (2.x interface) --------------------------------------------------------------------

    def _get_points_single(self, featmap_size: Sequence[int], stride: int, dtype: torch.dtype, device: Any,
                           flatten: bool = False) -> torch.Tensor:
        """Image points ``(H * W, 2)`` of one level: ``(x, y) * stride + stride // 2`` for cell ``(y, x)``."""
        y, x = super()._get_points_single(featmap_size, stride, dtype, device)
        return torch.stack((x.reshape(-1) * stride, y.reshape(-1) * stride), dim=-1) + stride // 2

    # -- losses ------------------------------------------------------------------------------------

    def loss_by_feat(
        self,
        cls_scores: list[torch.Tensor],
        bbox_preds: list[torch.Tensor],
        centernesses: list[torch.Tensor],
        gt_instances: list[Instances],
        img_metas: list[dict],
        gt_ignored_instances: list[Instances] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_bbox`` and ``loss_centerness`` of a batch (ignored boxes are not used)."""
        if not len(cls_scores) == len(bbox_preds) == len(centernesses):
            raise ValueError(
                f"FCOSHead.loss_by_feat: {len(cls_scores)} cls / {len(bbox_preds)} bbox / "
                f"{len(centernesses)} centerness levels"
            )
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        dtype, device = bbox_preds[0].dtype, bbox_preds[0].device
        all_level_points = self.prior_generator.grid_priors(featmap_sizes, dtype=dtype, device=device)
        gt_bboxes = [gt.bboxes.to(device=device, dtype=dtype) for gt in gt_instances]
        gt_labels = [gt.labels.to(device=device) for gt in gt_instances]
        labels, bbox_targets = self.get_targets(all_level_points, gt_bboxes, gt_labels)

        num_imgs = cls_scores[0].size(0)
        # level-major, then image, then location (row-major): the order of the targets
        flat_cls_scores = torch.cat(
            [s.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels) for s in cls_scores]
        )
        flat_bbox_preds = torch.cat([b.permute(0, 2, 3, 1).reshape(-1, 4) for b in bbox_preds])
        flat_centerness = torch.cat([c.permute(0, 2, 3, 1).reshape(-1) for c in centernesses])
        flat_labels = torch.cat(labels)
        flat_bbox_targets = torch.cat(bbox_targets)
        flat_points = torch.cat([points.repeat(num_imgs, 1) for points in all_level_points])

        bg_class_ind = self.num_classes
        pos_inds = ((flat_labels >= 0) & (flat_labels < bg_class_ind)).nonzero().reshape(-1)
        num_pos = torch.tensor(len(pos_inds), dtype=torch.float, device=device)
        num_pos = max(reduce_mean(num_pos), 1.0)
        loss_cls = self.loss_cls(flat_cls_scores, flat_labels, avg_factor=num_pos)

        pos_bbox_preds = flat_bbox_preds[pos_inds]
        pos_centerness = flat_centerness[pos_inds]
        pos_bbox_targets = flat_bbox_targets[pos_inds]
        pos_centerness_targets = self.centerness_target(pos_bbox_targets)
        # the IoU loss is weighted by the centerness targets and averaged over their sum
        centerness_denorm = max(reduce_mean(pos_centerness_targets.sum().detach()), 1e-6)

        if len(pos_inds) > 0:
            pos_points = flat_points[pos_inds]
            pos_decoded_bbox_preds = self.bbox_coder.decode(pos_points, pos_bbox_preds)
            pos_decoded_targets = self.bbox_coder.decode(pos_points, pos_bbox_targets)
            loss_bbox = self.loss_bbox(pos_decoded_bbox_preds, pos_decoded_targets,
                                       weight=pos_centerness_targets, avg_factor=centerness_denorm)
            loss_centerness = self.loss_centerness(pos_centerness, pos_centerness_targets, avg_factor=num_pos)
        else:
            loss_bbox = pos_bbox_preds.sum()
            loss_centerness = pos_centerness.sum()
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss_centerness": loss_centerness}

    def get_targets(self, points: list[torch.Tensor], gt_bboxes_list: list[torch.Tensor],
                    gt_labels_list: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level, the labels ``(B * n_l,)`` (``num_classes`` = background) and distance targets
        ``(B * n_l, 4)`` ``(l, t, r, b)`` (divided by the stride when ``norm_on_bbox``) of every point,
        image-major within a level. ``points``: per level ``(n_l, 2)``; boxes ``(N_i, 4)`` xyxy pixels."""
        if len(points) != len(self.regress_ranges):
            raise ValueError(f"FCOSHead.get_targets: {len(points)} levels of points for "
                             f"{len(self.regress_ranges)} regress_ranges")
        num_levels = len(points)
        expanded_ranges = [
            points[i].new_tensor(self.regress_ranges[i])[None].expand_as(points[i]) for i in range(num_levels)
        ]
        concat_ranges = torch.cat(expanded_ranges, dim=0)
        concat_points = torch.cat(points, dim=0)
        num_points = [p.size(0) for p in points]

        labels_list, bbox_targets_list = multi_apply(
            self._get_target_single, gt_bboxes_list, gt_labels_list,
            points=concat_points, regress_ranges=concat_ranges, num_points_per_lvl=num_points,
        )
        labels_list = [labels.split(num_points, 0) for labels in labels_list]
        bbox_targets_list = [targets.split(num_points, 0) for targets in bbox_targets_list]

        lvl_labels, lvl_bbox_targets = [], []
        for i in range(num_levels):
            lvl_labels.append(torch.cat([labels[i] for labels in labels_list]))
            targets = torch.cat([t[i] for t in bbox_targets_list])
            if self.norm_on_bbox:
                targets = targets / self.strides[i]
            lvl_bbox_targets.append(targets)
        return lvl_labels, lvl_bbox_targets

    def _get_target_single(self, gt_bboxes: torch.Tensor, gt_labels: torch.Tensor, points: torch.Tensor,
                           regress_ranges: torch.Tensor,
                           num_points_per_lvl: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels ``(P,)`` and ``(l, t, r, b)`` targets ``(P, 4)`` of all points ``(P, 2)`` of one image."""
        num_points = points.size(0)
        num_gts = gt_labels.size(0)
        if num_gts == 0:
            return gt_labels.new_full((num_points,), self.num_classes), gt_bboxes.new_zeros((num_points, 4))

        areas = Boxes(gt_bboxes).area[None].repeat(num_points, 1)
        regress_ranges = regress_ranges[:, None, :].expand(num_points, num_gts, 2)
        gt_bboxes = gt_bboxes[None].expand(num_points, num_gts, 4)
        xs = points[:, 0][:, None].expand(num_points, num_gts)
        ys = points[:, 1][:, None].expand(num_points, num_gts)

        left = xs - gt_bboxes[..., 0]
        right = gt_bboxes[..., 2] - xs
        top = ys - gt_bboxes[..., 1]
        bottom = gt_bboxes[..., 3] - ys
        bbox_targets = torch.stack((left, top, right, bottom), -1)

        if self.center_sampling:
            # inside a square of half size radius * stride around the box centre, clipped to the box
            radius = self.center_sample_radius
            center_xs = (gt_bboxes[..., 0] + gt_bboxes[..., 2]) / 2
            center_ys = (gt_bboxes[..., 1] + gt_bboxes[..., 3]) / 2
            center_gts = torch.zeros_like(gt_bboxes)
            stride = center_xs.new_zeros(center_xs.shape)
            lvl_begin = 0
            for lvl_idx, num_points_lvl in enumerate(num_points_per_lvl):
                lvl_end = lvl_begin + num_points_lvl
                stride[lvl_begin:lvl_end] = self.strides[lvl_idx] * radius
                lvl_begin = lvl_end
            x_mins, y_mins = center_xs - stride, center_ys - stride
            x_maxs, y_maxs = center_xs + stride, center_ys + stride
            center_gts[..., 0] = torch.where(x_mins > gt_bboxes[..., 0], x_mins, gt_bboxes[..., 0])
            center_gts[..., 1] = torch.where(y_mins > gt_bboxes[..., 1], y_mins, gt_bboxes[..., 1])
            center_gts[..., 2] = torch.where(x_maxs > gt_bboxes[..., 2], gt_bboxes[..., 2], x_maxs)
            center_gts[..., 3] = torch.where(y_maxs > gt_bboxes[..., 3], gt_bboxes[..., 3], y_maxs)
            cb_left, cb_top = xs - center_gts[..., 0], ys - center_gts[..., 1]
            cb_right, cb_bottom = center_gts[..., 2] - xs, center_gts[..., 3] - ys
            center_bbox = torch.stack((cb_left, cb_top, cb_right, cb_bottom), -1)
            inside_gt_bbox_mask = center_bbox.min(-1)[0] > 0
        else:
            inside_gt_bbox_mask = bbox_targets.min(-1)[0] > 0

        # the largest distance must lie in the level's regression range
        max_regress_distance = bbox_targets.max(-1)[0]
        inside_regress_range = (max_regress_distance >= regress_ranges[..., 0]) & (
            max_regress_distance <= regress_ranges[..., 1]
        )

        # several candidate boxes: the one with the smallest area
        areas[inside_gt_bbox_mask == 0] = INF
        areas[inside_regress_range == 0] = INF
        min_area, min_area_inds = areas.min(dim=1)

        labels = gt_labels[min_area_inds]
        labels[min_area == INF] = self.num_classes
        bbox_targets = bbox_targets[range(num_points), min_area_inds]
        return labels, bbox_targets

    @staticmethod
    def centerness_target(pos_bbox_targets: torch.Tensor) -> torch.Tensor:
        """``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of positives ``(P, 4)`` -> ``(P,)``."""
        left_right = pos_bbox_targets[:, [0, 2]]
        top_bottom = pos_bbox_targets[:, [1, 3]]
        if len(left_right) == 0:
            centerness = left_right[..., 0]
        else:
            centerness = (left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0]) * (
                top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0]
            )
        return torch.sqrt(centerness)
