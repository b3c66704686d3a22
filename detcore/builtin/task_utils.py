"""Built-in plugin: prior generators, box coders, IoU calculators, assigners and samplers."""

from __future__ import annotations

from collections.abc import Mapping

from detcore.hookspecs import Factory, hookimpl
from detcore.models import task_utils as tu


@hookimpl
def detcore_register_task_utils() -> Mapping[str, Factory]:
    return {
        # prior generators
        "AnchorGenerator": tu.AnchorGenerator,
        "LegacyAnchorGenerator": tu.LegacyAnchorGenerator,
        "SSDAnchorGenerator": tu.SSDAnchorGenerator,
        "MlvlPointGenerator": tu.MlvlPointGenerator,
        # box coders
        "DeltaXYWHBBoxCoder": tu.DeltaXYWHBBoxCoder,
        "LegacyDeltaXYWHBBoxCoder": tu.LegacyDeltaXYWHBBoxCoder,
        "DistancePointBBoxCoder": tu.DistancePointBBoxCoder,
        "PseudoBBoxCoder": tu.PseudoBBoxCoder,
        # IoU calculators
        "BboxOverlaps2D": tu.BboxOverlaps2D,
        # assigners
        "MaxIoUAssigner": tu.MaxIoUAssigner,
        "ATSSAssigner": tu.ATSSAssigner,
        "PointAssigner": tu.PointAssigner,
        # samplers
        "RandomSampler": tu.RandomSampler,
        "PseudoSampler": tu.PseudoSampler,
        "OHEMSampler": tu.OHEMSampler,
        "CombinedSampler": tu.CombinedSampler,
    }
