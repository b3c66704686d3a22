"""``FSAF``: a single-stage detector (backbone -> FPN -> FSAFHead)."""

from __future__ import annotations

from detcore.models.detectors import SingleStageDetector


class FSAF(SingleStageDetector):
    """FSAF (Zhu et al., "Feature Selective Anchor-Free Module for Single-Shot Object Detection", CVPR
    2019): a RetinaNet whose head is the anchor-free branch (:class:`~det_plugin_fsaf.FSAFHead`).

    Args: as :class:`~detcore.models.detectors.SingleStageDetector`.
    """
