"""``RetinaNet``: a single-stage detector (backbone -> FPN -> RetinaHead)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detcore.models.detectors import SingleStageDetector


class RetinaNet(SingleStageDetector):
    """RetinaNet (Lin et al., "Focal Loss for Dense Object Detection"): everything is in its parts.

    Args: as :class:`~detcore.models.detectors.SingleStageDetector`; ``bbox_head`` is usually a
    ``RetinaHead`` table.
    """

    def __init__(
        self,
        backbone: Mapping[str, Any],
        neck: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        bbox_head: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(backbone, neck, bbox_head, train_cfg, test_cfg, init_cfg)
