"""``FCOS``: a single-stage detector (backbone -> FPN -> :class:`FCOSHead`)."""

from __future__ import annotations

from detcore.models.detectors import SingleStageDetector


class FCOS(SingleStageDetector):
    """FCOS (Tian et al., 2019): ``SingleStageDetector`` with an anchor-free FCOS head.

    Args are those of :class:`SingleStageDetector`: ``backbone``, ``neck``, ``bbox_head`` tables,
    ``train_cfg``, ``test_cfg`` and ``init_cfg``.
    """
