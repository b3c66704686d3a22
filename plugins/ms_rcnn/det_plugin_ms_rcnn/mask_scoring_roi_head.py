"""``MaskScoringRoIHead``: Mask R-CNN's RoI head plus the MaskIoU branch (Mask Scoring R-CNN).

Training (reference 2.x numerics): the box and mask branches as :class:`StandardRoIHead`; then each
positive's predicted mask logits of its ground-truth class ``(P, 28, 28)`` and its mask RoI features
``(P, C, 14, 14)`` go through the ``mask_iou_head``; its output for the gt class is regressed onto the
IoU of the binarised prediction with the ground truth (:func:`~det_plugin_ms_rcnn.mask_iou_head.
mask_iou_targets`, binarised at ``train_cfg.rcnn.mask_thr_binary``), ``loss_mask_iou``. As in the
reference, the MaskIoU loss also reaches the mask head and the RoI features (nothing is detached).

Test: boxes as Mask R-CNN; the masks of the detections, and ``mask_scores`` ``(K,)`` = classification
score x predicted mask IoU of the detected class. ``scores`` stay the classification scores (the box
results'), ``mask_scores`` rank the masks (``CocoMetric`` scores the segm results with them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detcore.models.roi_heads.standard_roi_head import StandardRoIHead
from detcore.models.utils import bbox2roi
from detcore.registry import build
from detcore.settings import Key
from detcore.structures.instances import Instances


class MaskScoringRoIHead(StandardRoIHead):
    """:class:`StandardRoIHead` with a ``mask_iou_head`` (kind ``roi_head``, e.g. ``MaskIoUHead``).

    Args:
        mask_iou_head: the MaskIoU head table.
        **kwargs: the :class:`StandardRoIHead` arguments; a ``mask_head`` is required.
    """

    component_kinds = {"mask_iou_head": "roi_head"}
    #: ``train_cfg.rcnn.mask_thr_binary`` binarises the predicted masks of the MaskIoU targets
    train_settings = StandardRoIHead.train_settings.extend(
        mask_thr_binary=Key(float, 0.5, doc="MaskIoU targets: a mask logit above this counts as mask"),
    )

    def __init__(self, mask_iou_head: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        if not (self.with_bbox and self.with_mask):
            raise ValueError(f"{name}: needs the bbox and the mask branch (bbox_head and mask_head tables)")
        if mask_iou_head is None:
            raise ValueError(f'{name}: needs a mask_iou_head table (e.g. type = "MaskIoUHead")')
        self.mask_iou_head = build("roi_head", mask_iou_head, where=f"{name}.mask_iou_head")

    @property
    def mask_thr_binary(self) -> float:
        return float((self.train_cfg or {}).get("mask_thr_binary", 0.5))

    def _class_masks(self, mask_preds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(N, C | 1, M, M)`` logits -> ``(N, M, M)``: each row's channel of class ``labels``."""
        if self.mask_head.class_agnostic:
            return mask_preds[:, 0]
        rows = torch.arange(mask_preds.shape[0], device=mask_preds.device)
        return mask_preds[rows, labels.long()]

    def _mask_feats(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        mask_feats = self.mask_roi_extractor(feats[: self.mask_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            mask_feats = self.shared_head(mask_feats)
        return mask_feats

    # -- training ---------------------------------------------------------------------------------

    def loss(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"loss_cls", "acc", "loss_bbox", "loss_mask", "loss_mask_iou"}`` for a batch (arguments as
        :meth:`StandardRoIHead.loss`)."""
        sampling_results = self.sample(feats, proposals, gt_instances, gt_ignored_instances)
        rois = bbox2roi([res.bboxes for res in sampling_results])
        bbox_results = self._bbox_forward(feats, rois)
        out = self.bbox_head.loss_and_target(
            bbox_results["cls_score"], bbox_results["bbox_pred"], rois, sampling_results, self.train_cfg
        )
        losses: dict[str, torch.Tensor] = dict(out["loss_bbox"])

        if self.share_roi_extractor:
            pos_inds = torch.cat(
                [
                    torch.cat([torch.ones(len(r.pos_bboxes), dtype=torch.bool),
                               torch.zeros(len(r.neg_bboxes), dtype=torch.bool)])
                    for r in sampling_results
                ]
            ).to(rois.device)  # fmt: skip
            mask_feats = bbox_results["bbox_feats"][pos_inds]
        else:
            mask_feats = self._mask_feats(feats, bbox2roi([res.pos_bboxes for res in sampling_results]))
        mask_preds = self.mask_head(mask_feats)
        mask_out = self.mask_head.loss_and_target(mask_preds, sampling_results, gt_instances, self.train_cfg)
        losses["loss_mask"] = mask_out["loss_mask"]

        pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results]).to(mask_preds.device)
        pos_mask_preds = self._class_masks(mask_preds, pos_labels)
        mask_iou_pred = self.mask_iou_head(mask_feats, pos_mask_preds)
        rows = torch.arange(mask_iou_pred.shape[0], device=mask_iou_pred.device)
        pos_mask_iou_pred = mask_iou_pred[rows, pos_labels.long()]
        targets = self.mask_iou_head.get_targets(
            sampling_results, gt_instances, pos_mask_preds, mask_out["mask_targets"], self.mask_thr_binary
        )
        losses.update(self.mask_iou_head.loss(pos_mask_iou_pred, targets))
        return losses

    # -- inference --------------------------------------------------------------------------------

    def predict_mask(
        self,
        feats: Sequence[torch.Tensor],
        img_metas: Sequence[dict],
        results: list[Instances],
        rescale: bool = False,
    ) -> list[Instances]:
        """Add ``masks`` and ``mask_scores`` (classification score x predicted IoU of the detected
        class) to box detections in input-image coordinates."""
        bboxes = [r.bboxes for r in results]
        counts = [len(b) for b in bboxes]
        mask_feats = self._mask_feats(feats, bbox2roi(bboxes))
        mask_preds = self.mask_head(mask_feats)
        labels = torch.cat([r.labels for r in results]).to(mask_preds.device)
        scores = torch.cat([r.scores for r in results]).to(mask_preds.device)
        mask_iou_pred = self.mask_iou_head(mask_feats, self._class_masks(mask_preds, labels))
        mask_scores = self.mask_iou_head.get_mask_scores(mask_iou_pred, scores, labels)
        for r, s in zip(results, mask_scores.split(counts, 0)):
            r.mask_scores = s
        return self.mask_head.predict_by_feat(
            list(mask_preds.split(counts, 0)), results, img_metas, self.test_cfg, rescale=rescale
        )


__all__ = ["MaskScoringRoIHead"]
