"""Detectors shared by several families: the forward contract and the single-stage pipeline."""

from detcore.models.detectors.base import BaseDetector
from detcore.models.detectors.single_stage import SingleStageDetector

__all__ = ["BaseDetector", "SingleStageDetector"]
