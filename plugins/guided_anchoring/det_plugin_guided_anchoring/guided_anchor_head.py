"""``GuidedAnchorHead``: the dense head of Guided Anchoring (Wang et al., CVPR 2019), GA-RPN's base.

Three kinds of boxes (reference 2.x behaviour):

- *approxs*: ``approx_anchor_generator``'s anchors (several scales and ratios per location), used only
  to judge which locations and gt boxes belong together (:class:`ApproxMaxIoUAssigner`);
- *squares*: ``square_anchor_generator``'s one square per location, the base of the predicted anchor;
- *guided anchors*: the squares with the predicted shape, ``anchor_coder.decode(square, (0, 0, dw, dh))``.

Per level the head predicts ``loc_pred`` ``(B, 1, H, W)`` (``conv_loc``: is an object centre here),
``shape_pred`` ``(B, 2, H, W)`` (``conv_shape``: ``dw, dh`` of the anchor), adapts the features to the
shapes (:class:`FeatureAdaption`) and classifies / regresses the guided anchors (``conv_cls``,
``conv_reg``). ``forward`` returns ``(cls_scores, bbox_preds, shape_preds, loc_preds)``.

Training:

- location targets (:meth:`ga_loc_targets`): each gt box goes to the level ``floor(log2(sqrt(wh) /
  (octave_base_scale * stride_0)) + 0.5)`` (clamped); on that level the central ``center_ratio`` part
  of the box is positive (target 1, weight 1), the rest of its central ``ignore_ratio`` part ignored
  (weight 0), and the ``ignore_ratio`` part on the two neighbouring levels ignored too; every other
  cell is negative with weight 0.1. ``loss_loc`` (focal) is averaged by ``sum(B * H * W) / 200``.
- shape targets (:meth:`ga_shape_targets`): squares inside the image assigned by ``ga_assigner`` and
  sampled by ``ga_sampler``; a positive square's target is its gt box. ``loss_shape`` (bounded IoU) of
  the decoded guided anchor against the gt box, averaged by the sampled count (positives, plus
  negatives with a ``ga_sampler``).
- classification / regression: the guided anchors (of every location) assigned by ``assigner``, the
  :class:`AnchorHead` targets and losses, squares' inside flags from their approxs (a location trains
  when any of its approxs is inside the image).

Inference: the guided anchors of the locations whose location score is ``>= loc_filter_thr``; per
level the ``nms_pre`` best (by their best class), decoded, rescaled, class-wise NMS (the reference's
order, not ``postprocess_order``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from det_plugin_guided_anchoring.feature_adaption import FeatureAdaption
from detcore.models.dense_heads import AnchorHead
from detcore.models.dense_heads.anchor_head import _pad_shape
from detcore.models.dense_heads.base_dense_head import BaseDenseHead, unpack_gt_instances
from detcore.models.task_utils.samplers import PseudoSampler
from detcore.models.utils import anchor_inside_flags, images_to_levels, multi_apply, unmap
from detcore.registry import build
from detcore.settings import REQUIRED, Key
from detcore.structures.instances import Instances


def calc_region(
    bbox: torch.Tensor, ratio: float, featmap_size: Sequence[int] | None = None
) -> tuple[int, int, int, int]:
    """The central part of ``bbox`` ``(4,)`` (feature-map cells) that leaves ``ratio`` of its width
    and height out on each side: ``round`` of the interpolated corners, clamped to ``[0, W]`` /
    ``[0, H]`` of ``featmap_size`` ``(H, W)``. Returns inclusive ``(x1, y1, x2, y2)`` cell indices."""
    x1 = torch.round((1 - ratio) * bbox[0] + ratio * bbox[2]).long()
    y1 = torch.round((1 - ratio) * bbox[1] + ratio * bbox[3]).long()
    x2 = torch.round(ratio * bbox[0] + (1 - ratio) * bbox[2]).long()
    y2 = torch.round(ratio * bbox[1] + (1 - ratio) * bbox[3]).long()
    if featmap_size is not None:
        h, w = featmap_size
        x1, x2 = x1.clamp(0, w), x2.clamp(0, w)
        y1, y2 = y1.clamp(0, h), y2.clamp(0, h)
    return int(x1), int(y1), int(x2), int(y2)


class GuidedAnchorHead(AnchorHead):
    """Guided-anchor head (GA-RPN's layers; GA-RetinaNet adds towers).

    Args:
        num_classes / in_channels / feat_channels: as :class:`AnchorHead`.
        approx_anchor_generator: the approximations (``octave_base_scale`` and ``scales_per_octave``
            are required: the location targets read ``octave_base_scale``).
        square_anchor_generator: one square per location (ratio 1).
        anchor_coder: decodes ``(0, 0, dw, dh)`` on a square into the guided anchor.
        bbox_coder: decodes the regression on the guided anchors.
        reg_decoded_bbox: as :class:`AnchorHead`.
        deform_groups: of the feature adaption's deformable conv.
        loc_filter_thr: inference keeps the locations with a location score at or above it.
        loss_loc / loss_shape / loss_cls / loss_bbox: focal, bounded IoU, sigmoid CE, smooth L1 by default.
        train_cfg: :class:`AnchorHead`'s keys plus ``ga_assigner``, ``ga_sampler``, ``center_ratio``,
            ``ignore_ratio``.
        test_cfg: ``nms_pre``, ``score_thr``, ``nms``, ``max_per_img``.
    """

    train_settings = AnchorHead.train_settings.extend(
        ga_assigner=Key(kind="task_util", default=REQUIRED, doc="assigns squares (by their approxs) to gts"),
        ga_sampler=Key(kind="task_util", doc="samples the squares for the shape loss (PseudoSampler)"),
        center_ratio=Key(float, 0.2, doc="central part of a box whose cells are location positives"),
        ignore_ratio=Key(float, 0.5, doc="central part of a box whose other cells are ignored"),
    )
    test_settings = BaseDenseHead.test_settings.without("postprocess_order")

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        approx_anchor_generator: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "AnchorGenerator", "octave_base_scale": 8, "scales_per_octave": 3,
            "ratios": [0.5, 1.0, 2.0], "strides": [4, 8, 16, 32, 64],
        },
        square_anchor_generator: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "AnchorGenerator", "ratios": [1.0], "scales": [8], "strides": [4, 8, 16, 32, 64],
        },
        anchor_coder: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": [1.0] * 4,
        },
        bbox_coder: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": [1.0] * 4,
        },
        reg_decoded_bbox: bool = False,
        deform_groups: int = 4,
        loc_filter_thr: float = 0.01,
        loss_loc: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0,
        },
        loss_shape: Mapping[str, Any] = {"type": "BoundedIoULoss", "beta": 0.2, "loss_weight": 1.0},  # noqa: B006
        loss_cls: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0,
        },
        loss_bbox: Mapping[str, Any] = {"type": "SmoothL1Loss", "beta": 1.0, "loss_weight": 1.0},  # noqa: B006
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - read only
            "type": "Normal", "layer": "Conv2d", "std": 0.01,
            "override": {"type": "Normal", "name": "conv_loc", "std": 0.01, "bias_prob": 0.01},
        },
    ) -> None:
        name = type(self).__name__
        self.deform_groups = int(deform_groups)
        self.loc_filter_thr = float(loc_filter_thr)
        self.approx_anchor_generator = build(
            "task_util", approx_anchor_generator, where=f"{name}.approx_anchor_generator"
        )
        if getattr(self.approx_anchor_generator, "octave_base_scale", None) is None:
            raise ValueError(
                f"{name}.approx_anchor_generator: needs octave_base_scale and scales_per_octave "
                "(the location targets assign boxes to levels by octave_base_scale * stride)"
            )
        per_level = set(self.approx_anchor_generator.num_base_priors)
        if len(per_level) != 1:
            raise ValueError(
                f"{name}.approx_anchor_generator: every level needs as many approxs, got {per_level}"
            )
        #: approximations per location
        self.approxs_per_octave = per_level.pop()
        super().__init__(
            num_classes, in_channels, feat_channels, anchor_generator=square_anchor_generator,
            bbox_coder=bbox_coder, reg_decoded_bbox=reg_decoded_bbox, loss_cls=loss_cls, loss_bbox=loss_bbox,
            train_cfg=train_cfg, test_cfg=test_cfg, init_cfg=init_cfg,
        )
        if self.prior_generator.num_levels != self.approx_anchor_generator.num_levels:
            raise ValueError(
                f"{name}: the square generator has {self.prior_generator.num_levels} levels, the approx "
                f"generator {self.approx_anchor_generator.num_levels}"
            )
        self.anchor_coder = build("task_util", anchor_coder, where=f"{name}.anchor_coder")
        self.loss_loc = build("loss", loss_loc, where=f"{name}.loss_loc")
        self.loss_shape = build("loss", loss_shape, where=f"{name}.loss_shape")

    @property
    def square_anchor_generator(self) -> Any:
        """The squares' generator (the head's ``prior_generator``)."""
        return self.prior_generator

    def _init_assigner_sampler(self) -> None:
        super()._init_assigner_sampler()
        where = f"{type(self).__name__}.train_cfg"
        if "ga_assigner" not in self.train_cfg:
            raise ValueError(f"{where}: needs a 'ga_assigner' table (e.g. ApproxMaxIoUAssigner)")
        self.ga_assigner = build("task_util", self.train_cfg["ga_assigner"], where=f"{where}.ga_assigner")
        ga_sampler = self.train_cfg.get("ga_sampler")
        self.ga_sampling = ga_sampler is not None
        self.ga_sampler = build(
            "task_util", ga_sampler or {"type": "PseudoSampler"}, where=f"{where}.ga_sampler"
        )
        if isinstance(self.ga_sampler, PseudoSampler):
            self.ga_sampling = False

    # -- layers -----------------------------------------------------------------------------------

    def _init_layers(self) -> None:
        if not isinstance(self.num_base_priors, int):
            raise ValueError(f"{type(self).__name__}: the square generator needs one square count per level")
        self.relu = nn.ReLU(inplace=True)
        self.conv_loc = nn.Conv2d(self.in_channels, 1, 1)
        self.conv_shape = nn.Conv2d(self.in_channels, self.num_base_priors * 2, 1)
        self.feature_adaption = FeatureAdaption(
            self.in_channels, self.feat_channels, kernel_size=3, deform_groups=self.deform_groups
        )
        self.conv_cls = nn.Conv2d(self.feat_channels, self.num_base_priors * self.cls_out_channels, 1)
        self.conv_reg = nn.Conv2d(self.feat_channels, self.num_base_priors * 4, 1)

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        """One level ``(B, C, H, W)`` -> ``cls_score`` ``(B, A * cls_out, H, W)``, ``bbox_pred``
        ``(B, 4A, H, W)``, ``shape_pred`` ``(B, 2A, H, W)``, ``loc_pred`` ``(B, 1, H, W)``."""
        loc_pred = self.conv_loc(x)
        shape_pred = self.conv_shape(x)
        x = self.feature_adaption(x, shape_pred)
        return self.conv_cls(x), self.conv_reg(x), shape_pred, loc_pred

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:  # type: ignore[override]
        """Per-level ``(cls_scores, bbox_preds, shape_preds, loc_preds)``."""
        return multi_apply(self.forward_single, feats)

    # -- anchors ----------------------------------------------------------------------------------

    def get_sampled_approxs(
        self, featmap_sizes: Sequence[Sequence[int]], img_metas: Sequence[dict], device: Any = "cpu"
    ) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        """Per image, per level: the approxs ``(H * W * A_approx, 4)`` and the squares' inside flags
        ``(H * W,)`` (a location is inside when any of its approxs is valid and inside the image)."""
        approxs = self.approx_anchor_generator.grid_priors(featmap_sizes, device=device)
        allowed_border = (self.train_cfg or {}).get("allowed_border", -1)
        inside_flag_list = []
        for meta in img_metas:
            flags = self.approx_anchor_generator.valid_flags(featmap_sizes, _pad_shape(meta), device)
            inside_flag_list.append([
                anchor_inside_flags(lvl_approxs, lvl_flags, tuple(meta["img_shape"][:2]), allowed_border)
                .view(-1, self.approxs_per_octave).any(dim=1)
                for lvl_approxs, lvl_flags in zip(approxs, flags)
            ])
        return [approxs for _ in img_metas], inside_flag_list

    def get_guided_anchors(
        self,
        featmap_sizes: Sequence[Sequence[int]],
        shape_preds: Sequence[torch.Tensor],
        loc_preds: Sequence[torch.Tensor],
        img_metas: Sequence[dict],
        use_loc_filter: bool = False,
        device: Any = "cpu",
    ) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        """Per image, per level: squares ``(H * W * A, 4)``, guided anchors ``(n, 4)`` of the kept
        locations and the kept mask ``(H * W * A,)`` (all locations unless ``use_loc_filter``)."""
        squares = self.square_anchor_generator.grid_priors(featmap_sizes, device=device)
        guided_list, mask_list = [], []
        for img_id in range(len(img_metas)):
            guided, masks = [], []
            for lvl in range(len(featmap_sizes)):
                anchors, mask = self._get_guided_anchors_single(
                    squares[lvl], shape_preds[lvl][img_id], loc_preds[lvl][img_id], use_loc_filter
                )
                guided.append(anchors)
                masks.append(mask)
            guided_list.append(guided)
            mask_list.append(masks)
        return [squares for _ in img_metas], guided_list, mask_list

    def _get_guided_anchors_single(
        self, squares: torch.Tensor, shape_pred: torch.Tensor, loc_pred: torch.Tensor, use_loc_filter: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One image, one level: ``shape_pred`` ``(2A, H, W)``, ``loc_pred`` ``(1, H, W)``."""
        loc = loc_pred.sigmoid().detach()
        loc_mask = loc >= self.loc_filter_thr if use_loc_filter else loc >= 0.0
        mask = loc_mask.permute(1, 2, 0).expand(-1, -1, self.num_base_priors).reshape(-1)
        squares = squares[mask]
        shape_deltas = shape_pred.permute(1, 2, 0).reshape(-1, 2).detach()[mask]
        deltas = squares.new_zeros(squares.shape)
        deltas[:, 2:] = shape_deltas
        return self.anchor_coder.decode(squares, deltas, wh_ratio_clip=1e-6), mask

    # -- targets ----------------------------------------------------------------------------------

    def ga_loc_targets(
        self,
        gt_bboxes_list: Sequence[torch.Tensor],
        featmap_sizes: Sequence[Sequence[int]],
        device: Any = "cpu",
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
        """Location targets and weights, per level ``(B, 1, H, W)``, and the loss's average factor.

        Positive cells: target 1, weight 1; ignored: weight 0; negative: target 0, weight 0.1.
        """
        strides = self.approx_anchor_generator.strides
        if any(s[0] != s[1] for s in strides):
            raise ValueError(f"{type(self).__name__}: location targets need square strides, got {strides}")
        strides = [s[0] for s in strides]
        anchor_scale = float(self.approx_anchor_generator.octave_base_scale)
        cfg = self.train_cfg or {}
        r1 = (1 - float(cfg.get("center_ratio", 0.2))) / 2
        r2 = (1 - float(cfg.get("ignore_ratio", 0.5))) / 2
        num_imgs, num_lvls = len(gt_bboxes_list), len(featmap_sizes)
        targets = [torch.zeros(num_imgs, 1, h, w, device=device) for h, w in featmap_sizes]
        weights = [torch.full_like(t, -1) for t in targets]
        ignore = [torch.zeros_like(t) for t in targets]
        for img_id, gt_bboxes in enumerate(gt_bboxes_list):
            if gt_bboxes.numel() == 0:
                continue
            gt_bboxes = gt_bboxes.to(device)
            scale = torch.sqrt((gt_bboxes[:, 2] - gt_bboxes[:, 0]) * (gt_bboxes[:, 3] - gt_bboxes[:, 1]))
            min_anchor_size = scale.new_tensor(anchor_scale * strides[0])
            lvls = torch.floor(torch.log2(scale) - torch.log2(min_anchor_size) + 0.5)
            lvls = lvls.clamp(min=0, max=num_lvls - 1).long().tolist()
            for gt_id, lvl in enumerate(lvls):
                gt = gt_bboxes[gt_id, :4] / strides[lvl]
                ix1, iy1, ix2, iy2 = calc_region(gt, r2, featmap_sizes[lvl])
                cx1, cy1, cx2, cy2 = calc_region(gt, r1, featmap_sizes[lvl])
                targets[lvl][img_id, 0, cy1:cy2 + 1, cx1:cx2 + 1] = 1
                weights[lvl][img_id, 0, iy1:iy2 + 1, ix1:ix2 + 1] = 0
                weights[lvl][img_id, 0, cy1:cy2 + 1, cx1:cx2 + 1] = 1
                for near in (lvl - 1, lvl + 1):  # ignore the box's region on the neighbouring levels
                    if 0 <= near < num_lvls:
                        gt_n = gt_bboxes[gt_id, :4] / strides[near]
                        nx1, ny1, nx2, ny2 = calc_region(gt_n, r2, featmap_sizes[near])
                        ignore[near][img_id, 0, ny1:ny2 + 1, nx1:nx2 + 1] = 1
        for lvl in range(num_lvls):
            weights[lvl][(weights[lvl] < 0) & (ignore[lvl] > 0)] = 0
            weights[lvl][weights[lvl] < 0] = 0.1
        avg_factor = sum(t.size(0) * t.size(-1) * t.size(-2) for t in targets) / 200
        return targets, weights, avg_factor

    def _ga_shape_target_single(
        self,
        flat_approxs: torch.Tensor,
        inside_flags: torch.Tensor,
        flat_squares: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None,
        img_meta: Mapping[str, Any],
        unmap_outputs: bool = True,
    ) -> tuple:
        """Shape targets of one image over its squares ``(N, 4)``: the assigned square, its gt box and
        the weights ``(N, 4)`` (1 for sampled positives), plus the sampled positive / negative indices."""
        if not inside_flags.any():
            return (None,) * 5
        expand_inside = inside_flags[:, None].expand(-1, self.approxs_per_octave).reshape(-1)
        approxs = flat_approxs[expand_inside, :]
        squares = flat_squares[inside_flags, :]
        assign_result = self.ga_assigner.assign(
            approxs, squares, self.approxs_per_octave, gt_bboxes, gt_bboxes_ignore
        )
        sampling_result = self.ga_sampler.sample(assign_result, squares, gt_bboxes)
        bbox_anchors = torch.zeros_like(squares)
        bbox_gts = torch.zeros_like(squares)
        bbox_weights = torch.zeros_like(squares)
        pos_inds, neg_inds = sampling_result.pos_inds, sampling_result.neg_inds
        if len(pos_inds) > 0:
            bbox_anchors[pos_inds, :] = sampling_result.pos_bboxes
            bbox_gts[pos_inds, :] = sampling_result.pos_gt_bboxes
            bbox_weights[pos_inds, :] = 1.0
        if unmap_outputs:
            total = flat_squares.size(0)
            bbox_anchors = unmap(bbox_anchors, total, inside_flags)
            bbox_gts = unmap(bbox_gts, total, inside_flags)
            bbox_weights = unmap(bbox_weights, total, inside_flags)
        return bbox_anchors, bbox_gts, bbox_weights, pos_inds, neg_inds

    def ga_shape_targets(
        self,
        approx_list: list[list[torch.Tensor]],
        inside_flag_list: list[list[torch.Tensor]],
        square_list: list[list[torch.Tensor]],
        gt_bboxes_list: Sequence[torch.Tensor],
        img_metas: Sequence[dict],
        gt_bboxes_ignore_list: Sequence[torch.Tensor | None] | None = None,
        unmap_outputs: bool = True,
    ) -> tuple | None:
        """Per level ``(B, n_l, 4)`` squares, gt boxes and weights, and the sampled positive and negative
        counts (each image counting at least one); ``None`` when an image has no square inside it."""
        num_imgs = len(img_metas)
        num_level_squares = [squares.size(0) for squares in square_list[0]]
        if gt_bboxes_ignore_list is None:
            gt_bboxes_ignore_list = [None] * num_imgs
        results = multi_apply(
            self._ga_shape_target_single,
            [torch.cat(a) for a in approx_list], [torch.cat(f) for f in inside_flag_list],
            [torch.cat(s) for s in square_list], list(gt_bboxes_list), list(gt_bboxes_ignore_list),
            list(img_metas), unmap_outputs=unmap_outputs,
        )
        all_anchors, all_gts, all_weights, pos_inds_list, neg_inds_list = results
        if any(a is None for a in all_anchors):
            return None
        num_pos = sum(max(inds.numel(), 1) for inds in pos_inds_list)
        num_neg = sum(max(inds.numel(), 1) for inds in neg_inds_list)
        return (
            images_to_levels(all_anchors, num_level_squares),
            images_to_levels(all_gts, num_level_squares),
            images_to_levels(all_weights, num_level_squares),
            num_pos,
            num_neg,
        )

    # -- losses -----------------------------------------------------------------------------------

    def loss_shape_single(
        self,
        shape_pred: torch.Tensor,
        bbox_anchors: torch.Tensor,
        bbox_gts: torch.Tensor,
        anchor_weights: torch.Tensor,
        anchor_total_num: float,
    ) -> torch.Tensor:
        """Bounded IoU of the guided anchors (squares with ``shape_pred`` ``(B, 2A, H, W)``) of the
        positive squares against their gt boxes."""
        shape_pred = shape_pred.permute(0, 2, 3, 1).reshape(-1, 2)
        bbox_anchors = bbox_anchors.reshape(-1, 4)
        bbox_gts = bbox_gts.reshape(-1, 4)
        anchor_weights = anchor_weights.reshape(-1, 4)
        inds = torch.nonzero(anchor_weights[:, 0] > 0, as_tuple=False).squeeze(1)
        deltas = torch.cat([shape_pred.new_zeros(inds.numel(), 2), shape_pred[inds]], dim=1)
        pred_anchors = self.anchor_coder.decode(bbox_anchors[inds], deltas, wh_ratio_clip=1e-6)
        return self.loss_shape(
            pred_anchors, bbox_gts[inds], anchor_weights[inds], avg_factor=anchor_total_num
        )

    def loss_loc_single(
        self, loc_pred: torch.Tensor, loc_target: torch.Tensor, loc_weight: torch.Tensor, avg_factor: float
    ) -> torch.Tensor:
        """``loss_loc`` of one level ``(B, 1, H, W)``: class 0 (the only class) at target-1 cells,
        background (label 1) elsewhere."""
        return self.loss_loc(
            loc_pred.reshape(-1, 1), 1 - loc_target.reshape(-1).long(), loc_weight.reshape(-1),
            avg_factor=avg_factor,
        )

    def loss_by_feat(  # type: ignore[override]
        self,
        cls_scores: list[torch.Tensor],
        bbox_preds: list[torch.Tensor],
        shape_preds: list[torch.Tensor],
        loc_preds: list[torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, list[torch.Tensor]]:
        """``{"loss_cls", "loss_bbox", "loss_shape", "loss_loc"}``, each a list over levels."""
        name = type(self).__name__
        if self.train_cfg is None:
            raise ValueError(f"{name}: computing losses needs a train_cfg (assigner, ga_assigner, ...)")
        gt_bboxes, gt_labels, gt_bboxes_ignore = unpack_gt_instances(gt_instances, gt_ignored_instances)
        featmap_sizes = [tuple(f.shape[-2:]) for f in cls_scores]
        if len(featmap_sizes) != self.approx_anchor_generator.num_levels:
            raise ValueError(
                f"{name}: {len(featmap_sizes)} feature levels but the anchor generators have "
                f"{self.approx_anchor_generator.num_levels}"
            )
        device = cls_scores[0].device
        loc_targets, loc_weights, loc_avg_factor = self.ga_loc_targets(gt_bboxes, featmap_sizes, device)
        approxs_list, inside_flag_list = self.get_sampled_approxs(featmap_sizes, img_metas, device)
        squares_list, guided_anchors_list, _ = self.get_guided_anchors(
            featmap_sizes, shape_preds, loc_preds, img_metas, device=device
        )
        shape_targets = self.ga_shape_targets(
            approxs_list, inside_flag_list, squares_list, gt_bboxes, img_metas, gt_bboxes_ignore
        )
        no_anchor = (
            f"{name}: an image of the batch has no anchor inside it "
            f"(img_shapes {[tuple(m['img_shape']) for m in img_metas]})"
        )
        if shape_targets is None:
            raise ValueError(no_anchor)
        bbox_anchors_list, bbox_gts_list, anchor_weights_list, anchor_fg, anchor_bg = shape_targets
        anchor_total_num = anchor_fg + anchor_bg if self.ga_sampling else anchor_fg
        label_channels = self.cls_out_channels if self.use_sigmoid_cls else 1
        targets = self.get_targets(
            guided_anchors_list, inside_flag_list, gt_bboxes, img_metas,
            gt_bboxes_ignore_list=gt_bboxes_ignore, gt_labels_list=gt_labels, label_channels=label_channels,
        )
        if targets is None:
            raise ValueError(no_anchor)
        labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, num_pos, num_neg = targets[:6]
        avg_factor = num_pos + num_neg if self.sampling else num_pos
        num_level_anchors = [a.size(0) for a in guided_anchors_list[0]]
        all_anchor_list = images_to_levels([torch.cat(a) for a in guided_anchors_list], num_level_anchors)
        losses_cls, losses_bbox = multi_apply(
            self.loss_by_feat_single, cls_scores, bbox_preds, all_anchor_list, labels_list,
            label_weights_list, bbox_targets_list, bbox_weights_list, avg_factor=avg_factor,
        )
        losses_loc = [
            self.loss_loc_single(loc_preds[i], loc_targets[i], loc_weights[i], loc_avg_factor)
            for i in range(len(loc_preds))
        ]
        losses_shape = [
            self.loss_shape_single(shape_preds[i], bbox_anchors_list[i], bbox_gts_list[i],
                                   anchor_weights_list[i], anchor_total_num)
            for i in range(len(shape_preds))
        ]
        return {"loss_cls": losses_cls, "loss_bbox": losses_bbox, "loss_shape": losses_shape,
                "loss_loc": losses_loc}

    # -- inference --------------------------------------------------------------------------------

    def predict_by_feat(  # type: ignore[override]
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        shape_preds: Sequence[torch.Tensor],
        loc_preds: Sequence[torch.Tensor],
        img_metas: Sequence[dict] | None = None,
        cfg: Mapping[str, Any] | None = None,
        rescale: bool = True,
        with_nms: bool = True,
    ) -> list[Instances]:
        """Detections per image from the guided anchors (location-filtered in eval mode).

        Returns ``Instances(bboxes (K, 4), scores (K,), labels (K,))`` per image; with ``with_nms=False``
        every candidate with ``scores (N, num_classes)``.
        """
        name = type(self).__name__
        if img_metas is None:
            raise ValueError(f"{name}.predict_by_feat: 'img_metas' is required")
        if not len(cls_scores) == len(bbox_preds) == len(shape_preds) == len(loc_preds):
            raise ValueError(f"{name}.predict_by_feat: the four outputs have different level counts")
        cfg = self.test_cfg if cfg is None else cfg
        if cfg is None:
            raise ValueError(f"{name}: no test_cfg given")
        featmap_sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        _, guided_anchors, loc_masks = self.get_guided_anchors(
            featmap_sizes, shape_preds, loc_preds, img_metas, use_loc_filter=not self.training,
            device=cls_scores[0].device,
        )
        results = []
        for img_id, meta in enumerate(img_metas):
            results.append(self._predict_guided_single(
                [c[img_id].detach() for c in cls_scores], [b[img_id].detach() for b in bbox_preds],
                [a.detach() for a in guided_anchors[img_id]], loc_masks[img_id], meta, cfg, rescale, with_nms,
            ))
        return results

    def _predict_guided_single(
        self,
        cls_score_list: list[torch.Tensor],
        bbox_pred_list: list[torch.Tensor],
        anchor_list: list[torch.Tensor],
        mask_list: list[torch.Tensor],
        img_meta: Mapping[str, Any],
        cfg: Mapping[str, Any],
        rescale: bool,
        with_nms: bool,
    ) -> Instances:
        """Detections of one image: per level the kept locations' scores, the ``nms_pre`` best, decoded;
        then rescale and class-wise NMS (:meth:`_bbox_post_process`)."""
        img_shape = tuple(img_meta["img_shape"][:2])
        nms_pre = int(cfg.get("nms_pre", -1))
        mlvl_bboxes, mlvl_scores = [], []
        levels = zip(cls_score_list, bbox_pred_list, anchor_list, mask_list)
        for cls_score, bbox_pred, anchors, mask in levels:
            if not mask.any():
                continue
            cls_score, bbox_pred = self._flatten_level(cls_score, bbox_pred)
            scores = cls_score.sigmoid() if self.use_sigmoid_cls else cls_score.softmax(-1)
            scores, bbox_pred = scores[mask], bbox_pred[mask]
            if 0 < nms_pre < scores.shape[0]:
                fg = scores if self.use_sigmoid_cls else scores[:, :-1]
                _, topk = fg.max(dim=1).values.topk(nms_pre)
                anchors, bbox_pred, scores = anchors[topk], bbox_pred[topk], scores[topk]
            mlvl_bboxes.append(self.bbox_coder.decode(anchors, bbox_pred, max_shape=img_shape))
            mlvl_scores.append(scores if self.use_sigmoid_cls else scores[:, :-1])
        if mlvl_bboxes:
            bboxes, scores = torch.cat(mlvl_bboxes), torch.cat(mlvl_scores)
        else:
            device = cls_score_list[0].device
            bboxes = torch.zeros(0, 4, device=device)
            scores = torch.zeros(0, self.num_classes, device=device)
        results = Instances(bboxes=bboxes, scores=scores)
        return self._bbox_post_process(results, cfg, img_meta, rescale=rescale, with_nms=with_nms)
