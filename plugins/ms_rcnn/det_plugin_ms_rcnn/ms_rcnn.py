"""``MaskScoringRCNN``: Mask R-CNN whose RoI head scores its masks by their predicted IoU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from det_plugin_rcnn.mask_rcnn import MaskRCNN


class MaskScoringRCNN(MaskRCNN):
    """A :class:`MaskRCNN` with a :class:`~det_plugin_ms_rcnn.MaskScoringRoIHead` (a ``mask_iou_head``);
    eval outputs carry ``mask_scores`` ``(N,)`` besides ``bboxes``, ``scores``, ``labels`` and
    ``masks``. Arguments as :class:`MaskRCNN`; ``train_cfg.rcnn.mask_thr_binary`` (0.5) binarises the
    predicted masks of the MaskIoU targets."""

    def __init__(
        self,
        backbone: Mapping[str, Any],
        rpn_head: Mapping[str, Any],
        roi_head: Mapping[str, Any],
        neck: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        has_iou = (
            roi_head.get("mask_iou_head") is not None
            if isinstance(roi_head, Mapping)
            else getattr(roi_head, "mask_iou_head", None) is not None
        )
        if not has_iou:
            raise ValueError(
                'MaskScoringRCNN: model.roi_head needs a mask_iou_head table (type = "MaskScoringRoIHead" '
                'with mask_iou_head = {type = "MaskIoUHead", ...})'
            )
        super().__init__(
            backbone, rpn_head=rpn_head, roi_head=roi_head, neck=neck, train_cfg=train_cfg,
            test_cfg=test_cfg, init_cfg=init_cfg,
        )  # fmt: skip
