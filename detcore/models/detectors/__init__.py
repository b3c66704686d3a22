"""Detectors shared by several families: the forward contract, the single- and two-stage pipelines."""

from detcore.models.detectors.base import BaseDetector
from detcore.models.detectors.single_stage import SingleStageDetector
from detcore.models.detectors.two_stage import TwoStageDetector

__all__ = ["BaseDetector", "SingleStageDetector", "TwoStageDetector"]
