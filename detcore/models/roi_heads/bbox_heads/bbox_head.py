"""``BBoxHead``: classify RoI features and regress per-class box deltas (Fast R-CNN's second stage).

Numerics follow the reference 2.x:

- targets, per image: positives get their gt's label, label weight 1 (``pos_weight`` when > 0) and
  ``bbox_coder.encode(pos_bboxes, pos_gt_bboxes)`` (the gt boxes themselves with
  ``reg_decoded_bbox``); sampled negatives get label ``num_classes`` and label weight 1;
- ``loss_cls`` (softmax cross-entropy) averaged over ``max(#(label_weights > 0), 1)``, ``acc`` the
  top-1 accuracy in percent, ``loss_bbox`` on each positive's 4 deltas of its gt class (or the shared
  4) averaged over the number of sampled RoIs; without positives ``loss_bbox`` is a zero with a
  gradient path;
- test: softmax over ``num_classes + 1``, boxes decoded from the RoIs with ``max_shape = img_shape``,
  divided by ``scale_factor`` with ``rescale``, then ``multiclass_nms(score_thr, nms, max_per_img)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detcore.models.dense_heads.base_dense_head import scale_factor_tensor
from detcore.models.init import BaseModule
from detcore.models.losses.accuracy import accuracy
from detcore.models.task_utils.sampling_result import SamplingResult
from detcore.ops import multiclass_nms
from detcore.registry import build
from detcore.settings import NMS_SETTINGS, REQUIRED, Key, Settings
from detcore.structures.instances import Instances


class BBoxHead(BaseModule):
    """The simplest RoI box head: optional average pooling, then ``fc_cls`` and ``fc_reg``.

    Args:
        with_avg_pool: average-pool the ``roi_feat_size`` features to 1x1 before the fcs.
        with_cls / with_reg: build the classifier / the regressor.
        roi_feat_size: side of the pooled RoI features (7).
        in_channels: channels of the RoI features.
        num_classes: object classes (background excluded); ``fc_cls`` has ``num_classes + 1`` outputs
            (the last one is background).
        bbox_coder: box coder table (``DeltaXYWHBBoxCoder`` with stds 0.1/0.1/0.2/0.2 by default).
        reg_class_agnostic: one set of 4 deltas for every class instead of ``4 * num_classes``.
        reg_decoded_bbox: regress decoded boxes (for IoU-type losses) instead of deltas.
        loss_cls / loss_bbox: loss tables (softmax cross-entropy, smooth L1 with beta 1).
        init_cfg: ``fc_cls`` ~ N(0, 0.01), ``fc_reg`` ~ N(0, 0.001), biases 0.
    """

    #: the RoI head's ``train_cfg`` keys that ``get_targets`` reads
    train_settings = Settings(pos_weight=Key(float, -1.0, doc="label weight of positives; <= 0: 1"))
    #: the RoI head's ``test_cfg`` keys that ``predict_by_feat`` reads
    test_settings = Settings(
        score_thr=Key(float, REQUIRED, doc="drop detections scoring at or below"),
        nms=Key(NMS_SETTINGS, REQUIRED, doc="the NMS table"),
        max_per_img=Key(int, -1, doc="detections kept per image; -1: all"),
    )

    def __init__(
        self,
        with_avg_pool: bool = False,
        with_cls: bool = True,
        with_reg: bool = True,
        roi_feat_size: int | Sequence[int] = 7,
        in_channels: int = 256,
        num_classes: int = 80,
        bbox_coder: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "DeltaXYWHBBoxCoder",
            "clip_border": True,
            "target_means": [0.0, 0.0, 0.0, 0.0],
            "target_stds": [0.1, 0.1, 0.2, 0.2],
        },
        reg_class_agnostic: bool = False,
        reg_decoded_bbox: bool = False,
        loss_cls: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "CrossEntropyLoss",
            "use_sigmoid": False,
            "loss_weight": 1.0,
        },
        loss_bbox: Mapping[str, Any] = {"type": "SmoothL1Loss", "beta": 1.0, "loss_weight": 1.0},  # noqa: B006
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        name = type(self).__name__
        if not with_cls and not with_reg:
            raise ValueError(f"{name}: with_cls and with_reg are both false: the head would predict nothing")
        if int(num_classes) <= 0:
            raise ValueError(f"{name}: num_classes must be > 0, got {num_classes}")
        self.with_avg_pool = with_avg_pool
        self.with_cls = with_cls
        self.with_reg = with_reg
        size = (roi_feat_size, roi_feat_size) if isinstance(roi_feat_size, int) else tuple(roi_feat_size)
        self.roi_feat_size = size
        self.roi_feat_area = size[0] * size[1]
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.reg_class_agnostic = reg_class_agnostic
        self.reg_decoded_bbox = reg_decoded_bbox
        self.bbox_coder = build("task_util", bbox_coder, where=f"{name}.bbox_coder")
        self.loss_cls = build("loss", loss_cls, where=f"{name}.loss_cls") if loss_cls else None
        self.loss_bbox = build("loss", loss_bbox, where=f"{name}.loss_bbox") if loss_bbox else None
        if self.loss_cls is not None and getattr(self.loss_cls, "use_sigmoid", False):
            raise ValueError(f"{name}: loss_cls must be a softmax loss (use_sigmoid = false)")

        in_ch = self.in_channels
        if self.with_avg_pool:
            self.avg_pool = nn.AvgPool2d(self.roi_feat_size)
        else:
            in_ch *= self.roi_feat_area
        if self.with_cls:
            self.fc_cls = nn.Linear(in_ch, self.num_classes + 1)
        if self.with_reg:
            self.fc_reg = nn.Linear(in_ch, 4 if reg_class_agnostic else 4 * self.num_classes)
        if init_cfg is None:
            self.init_cfg = []
            if self.with_cls:
                self.init_cfg.append(
                    {"type": "Normal", "override": {"type": "Normal", "name": "fc_cls", "std": 0.01}}
                )
            if self.with_reg:
                self.init_cfg.append(
                    {"type": "Normal", "override": {"type": "Normal", "name": "fc_reg", "std": 0.001}}
                )

    # -- forward ----------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """RoI features ``(N, C, h, w)`` -> ``cls_score`` ``(N, num_classes + 1)``, ``bbox_pred``
        ``(N, 4 * num_classes)`` (``(N, 4)`` class-agnostic); ``None`` for a branch the head lacks."""
        if self.with_avg_pool:
            x = self.avg_pool(x)
        x = x.flatten(1)
        cls_score = self.fc_cls(x) if self.with_cls else None
        bbox_pred = self.fc_reg(x) if self.with_reg else None
        return cls_score, bbox_pred

    # -- targets ----------------------------------------------------------------------------------

    def _get_targets_single(
        self,
        pos_bboxes: torch.Tensor,
        neg_bboxes: torch.Tensor,
        pos_gt_bboxes: torch.Tensor,
        pos_gt_labels: torch.Tensor,
        cfg: Mapping[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Targets of one image's sampled RoIs, positives first: ``labels (P + Q,)``, ``label_weights``,
        ``bbox_targets (P + Q, 4)``, ``bbox_weights (P + Q, 4)``."""
        num_pos, num_neg = pos_bboxes.size(0), neg_bboxes.size(0)
        num_samples = num_pos + num_neg
        labels = pos_bboxes.new_full((num_samples,), self.num_classes, dtype=torch.long)
        label_weights = pos_bboxes.new_zeros(num_samples)
        bbox_targets = pos_bboxes.new_zeros(num_samples, 4)
        bbox_weights = pos_bboxes.new_zeros(num_samples, 4)
        if num_pos > 0:
            labels[:num_pos] = pos_gt_labels
            pos_weight = float(cfg.get("pos_weight", -1))
            label_weights[:num_pos] = 1.0 if pos_weight <= 0 else pos_weight
            if self.reg_decoded_bbox:
                pos_bbox_targets = pos_gt_bboxes
            else:
                pos_bbox_targets = self.bbox_coder.encode(pos_bboxes, pos_gt_bboxes)
            bbox_targets[:num_pos, :] = pos_bbox_targets
            bbox_weights[:num_pos, :] = 1.0
        if num_neg > 0:
            label_weights[-num_neg:] = 1.0
        return labels, label_weights, bbox_targets, bbox_weights

    def get_targets(
        self,
        sampling_results: Sequence[SamplingResult],
        rcnn_train_cfg: Mapping[str, Any] | None = None,
        concat: bool = True,
    ) -> tuple:
        """Targets of every image's sampled RoIs (positives then negatives per image, images in order):
        ``(labels, label_weights, bbox_targets, bbox_weights)``, each concatenated over images (lists
        per image without ``concat``)."""
        cfg = rcnn_train_cfg or {}
        per_image = [
            self._get_targets_single(
                res.pos_bboxes,
                res.neg_bboxes,
                res.pos_gt_bboxes,
                res.pos_gt_labels
                if res.pos_gt_labels is not None
                else res.pos_bboxes.new_zeros(0, dtype=torch.long),
                cfg,
            )
            for res in sampling_results
        ]
        labels, label_weights, bbox_targets, bbox_weights = (list(t) for t in zip(*per_image))
        if concat:
            return (
                torch.cat(labels),
                torch.cat(label_weights),
                torch.cat(bbox_targets),
                torch.cat(bbox_weights),
            )
        return labels, label_weights, bbox_targets, bbox_weights

    # -- losses -----------------------------------------------------------------------------------

    def loss(
        self,
        cls_score: torch.Tensor | None,
        bbox_pred: torch.Tensor | None,
        rois: torch.Tensor,
        labels: torch.Tensor,
        label_weights: torch.Tensor,
        bbox_targets: torch.Tensor,
        bbox_weights: torch.Tensor,
        reduction_override: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"loss_cls", "acc", "loss_bbox"}`` of ``N`` sampled RoIs ``(N, 5)`` (see the module doc)."""
        losses: dict[str, torch.Tensor] = {}
        if cls_score is not None and self.loss_cls is not None:
            avg_factor = max(float(torch.sum(label_weights > 0).item()), 1.0)
            if cls_score.numel() > 0:
                losses["loss_cls"] = self.loss_cls(
                    cls_score,
                    labels,
                    label_weights,
                    avg_factor=avg_factor,
                    reduction_override=reduction_override,
                )
                losses["acc"] = accuracy(cls_score, labels)
        if bbox_pred is not None and self.loss_bbox is not None:
            pos_inds = (labels >= 0) & (labels < self.num_classes)
            if pos_inds.any():
                if self.reg_decoded_bbox:
                    bbox_pred = self.bbox_coder.decode(rois[:, 1:], bbox_pred)
                if self.reg_class_agnostic:
                    pos_bbox_pred = bbox_pred.view(bbox_pred.size(0), 4)[pos_inds]
                else:
                    pos_bbox_pred = bbox_pred.view(bbox_pred.size(0), -1, 4)[pos_inds, labels[pos_inds]]
                losses["loss_bbox"] = self.loss_bbox(
                    pos_bbox_pred,
                    bbox_targets[pos_inds],
                    bbox_weights[pos_inds],
                    avg_factor=bbox_targets.size(0),
                    reduction_override=reduction_override,
                )
            else:
                losses["loss_bbox"] = bbox_pred[pos_inds].sum()
        return losses

    def loss_and_target(
        self,
        cls_score: torch.Tensor | None,
        bbox_pred: torch.Tensor | None,
        rois: torch.Tensor,
        sampling_results: Sequence[SamplingResult],
        rcnn_train_cfg: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """:meth:`get_targets` then :meth:`loss`: ``{"loss_bbox": {losses}, "bbox_targets": targets}``."""
        targets = self.get_targets(sampling_results, rcnn_train_cfg)
        return {"loss_bbox": self.loss(cls_score, bbox_pred, rois, *targets), "bbox_targets": targets}

    # -- inference --------------------------------------------------------------------------------

    def predict_by_feat(
        self,
        rois: Sequence[torch.Tensor],
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor | None],
        img_metas: Sequence[Mapping[str, Any]],
        rcnn_test_cfg: Mapping[str, Any] | None = None,
        rescale: bool = False,
    ) -> list[Instances]:
        """Detections per image from its RoIs ``(n_i, 5)``, ``cls_score`` ``(n_i, num_classes + 1)`` and
        ``bbox_pred`` ``(n_i, 4 * num_classes | 4)``.

        With ``rcnn_test_cfg`` (``score_thr``, ``nms``, ``max_per_img``): ``Instances(bboxes (K, 4),
        scores (K,), labels (K,))`` after ``multiclass_nms``; without it every RoI's decoded boxes
        ``(n_i, 4 * C | 4)`` and softmax ``scores`` ``(n_i, num_classes + 1)``. Boxes are in input-image
        coordinates, divided by ``scale_factor`` with ``rescale``.
        """
        if not len(rois) == len(cls_scores) == len(bbox_preds) == len(img_metas):
            raise ValueError(
                f"{type(self).__name__}.predict_by_feat: {len(rois)} rois, {len(cls_scores)} cls_scores, "
                f"{len(bbox_preds)} bbox_preds for {len(img_metas)} images"
            )
        return [
            self._predict_by_feat_single(r, c, b, m, rcnn_test_cfg, rescale)
            for r, c, b, m in zip(rois, cls_scores, bbox_preds, img_metas)
        ]

    def _predict_by_feat_single(
        self,
        rois: torch.Tensor,
        cls_score: torch.Tensor,
        bbox_pred: torch.Tensor | None,
        img_meta: Mapping[str, Any],
        rcnn_test_cfg: Mapping[str, Any] | None,
        rescale: bool,
    ) -> Instances:
        img_shape = tuple(img_meta["img_shape"][:2])
        if rois.shape[0] == 0 and rcnn_test_cfg is not None:
            return Instances(
                bboxes=rois.new_zeros(0, 4),
                scores=rois.new_zeros(0),
                labels=torch.zeros(0, dtype=torch.long, device=rois.device),
            )
        scores = F.softmax(cls_score, dim=-1) if cls_score is not None else None
        if bbox_pred is not None:
            bboxes = self.bbox_coder.decode(rois[:, 1:], bbox_pred, max_shape=img_shape)
        else:
            bboxes = rois[:, 1:].clone()
            bboxes[:, [0, 2]] = bboxes[:, [0, 2]].clamp(min=0, max=img_shape[1])
            bboxes[:, [1, 3]] = bboxes[:, [1, 3]].clamp(min=0, max=img_shape[0])
        if rescale and bboxes.size(0) > 0:
            sf = scale_factor_tensor(img_meta["scale_factor"], bboxes)
            bboxes = (bboxes.view(bboxes.size(0), -1, 4) / sf).view(bboxes.size(0), -1)
        if rcnn_test_cfg is None:
            return Instances(bboxes=bboxes, scores=scores)
        if scores is None:
            raise ValueError(f"{type(self).__name__}: detections need class scores (with_cls = true)")
        dets, labels = multiclass_nms(
            bboxes,
            scores,
            float(rcnn_test_cfg["score_thr"]),
            dict(rcnn_test_cfg["nms"]),
            int(rcnn_test_cfg.get("max_per_img", -1)),
        )
        return Instances(bboxes=dets[:, :4], scores=dets[:, 4], labels=labels)

    # -- refinement (multi-stage heads) -----------------------------------------------------------

    def regress_by_class(
        self, rois: torch.Tensor, label: torch.Tensor, bbox_pred: torch.Tensor, img_meta: Mapping[str, Any]
    ) -> torch.Tensor:
        """Boxes ``(N, 4)`` or RoIs ``(N, 5)`` moved by the deltas of class ``label`` ``(N,)`` (the
        shared deltas when class-agnostic), clipped to ``img_shape``; the same layout comes back."""
        if rois.size(1) not in (4, 5):
            raise ValueError(f"regress_by_class: rois must be (N, 4) or (N, 5), got {tuple(rois.shape)}")
        if not self.reg_class_agnostic:
            label = label * 4
            inds = torch.stack((label, label + 1, label + 2, label + 3), 1)
            bbox_pred = torch.gather(bbox_pred, 1, inds)
        max_shape = tuple(img_meta["img_shape"][:2])
        if rois.size(1) == 4:
            return self.bbox_coder.decode(rois, bbox_pred, max_shape=max_shape)
        bboxes = self.bbox_coder.decode(rois[:, 1:], bbox_pred, max_shape=max_shape)
        return torch.cat((rois[:, [0]], bboxes), dim=1)

    def refine_bboxes(
        self,
        rois: torch.Tensor,
        labels: torch.Tensor,
        bbox_preds: torch.Tensor,
        pos_is_gts: Sequence[torch.Tensor],
        img_metas: Sequence[Mapping[str, Any]],
    ) -> list[torch.Tensor]:
        """Refined boxes per image for the next stage: each RoI ``(N, 5)`` regressed by its label's
        deltas, the gt boxes added as proposals (``pos_is_gts`` per image) dropped."""
        bboxes_list = []
        for i, meta in enumerate(img_metas):
            inds = torch.nonzero(rois[:, 0] == i, as_tuple=False).squeeze(1)
            bboxes = self.regress_by_class(rois[inds, 1:], labels[inds], bbox_preds[inds], meta)
            keep = torch.ones(inds.numel(), dtype=torch.bool, device=rois.device)
            is_gt = pos_is_gts[i].to(torch.bool)
            keep[: is_gt.numel()] = ~is_gt
            bboxes_list.append(bboxes[keep])
        return bboxes_list
