"""Data structures shared by datasets, models and evaluation."""

from detcore.structures.instances import Instances

__all__ = ["Instances"]
