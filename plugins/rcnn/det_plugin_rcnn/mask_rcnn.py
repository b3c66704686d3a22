"""``MaskRCNN``: Faster R-CNN with a mask branch in its RoI head (He et al., 2017)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detcore.models.detectors.two_stage import TwoStageDetector


class MaskRCNN(TwoStageDetector):
    """A :class:`TwoStageDetector` whose RoI head has a ``mask_head`` (and usually a
    ``mask_roi_extractor``); eval outputs carry ``masks`` (bool ``(N, H, W)``, original image with
    ``rescale``) besides ``bboxes``, ``scores`` and ``labels``.

    Args: as :class:`TwoStageDetector`; ``train_cfg.rcnn.mask_size`` (28) sizes the mask targets and
    ``test_cfg.rcnn.mask_thr_binary`` (0.5) binarises the pasted masks.
    """

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
        has_mask = (
            roi_head.get("mask_head") is not None
            if isinstance(roi_head, Mapping)
            else getattr(roi_head, "with_mask", False)
        )
        if not has_mask:
            raise ValueError('MaskRCNN: model.roi_head needs a mask_head table (e.g. type = "FCNMaskHead")')
        super().__init__(
            backbone,
            neck=neck,
            rpn_head=rpn_head,
            roi_head=roi_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg,
        )
