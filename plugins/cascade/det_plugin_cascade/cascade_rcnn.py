"""``CascadeRCNN``: Faster R-CNN's RPN followed by a :class:`CascadeRoIHead` (Cai and Vasconcelos, 2018);
with mask heads in the RoI head it is Cascade Mask R-CNN (the reference names both ``CascadeRCNN``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from detcore.models.detectors.two_stage import TwoStageDetector


class CascadeRCNN(TwoStageDetector):
    """A :class:`TwoStageDetector` whose ``roi_head`` is a cascade: ``train_cfg.rcnn`` is a list of one
    table per stage, ``test_cfg.rcnn`` one table. Losses are ``loss_rpn_*`` and ``s{i}.*`` per stage;
    eval outputs ``bboxes``, ``scores``, ``labels`` (+ ``masks`` bool ``(N, H, W)`` with mask heads)."""

    def __init__(
        self,
        backbone: Mapping[str, Any] | nn.Module,
        rpn_head: Mapping[str, Any] | nn.Module,
        roi_head: Mapping[str, Any] | nn.Module,
        neck: Mapping[str, Any] | Sequence[Mapping[str, Any]] | nn.Module | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            neck=neck,
            rpn_head=rpn_head,
            roi_head=roi_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg,
        )
