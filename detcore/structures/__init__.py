"""Data structures shared by datasets, models and evaluation."""

from detcore.structures.boxes import Boxes
from detcore.structures.instances import Instances
from detcore.structures.masks import BitmapMasks, PolygonMasks

__all__ = ["Boxes", "Instances", "BitmapMasks", "PolygonMasks"]
