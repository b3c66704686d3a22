"""The ``libra`` plugin: registers the neck BFP and the samplers InstanceBalancedPosSampler and
IoUBalancedNegSampler (the kernel provides CombinedSampler and BalancedL1Loss)."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_libra.bfp import BFP
from det_plugin_libra.samplers import InstanceBalancedPosSampler, IoUBalancedNegSampler
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_necks() -> Mapping[str, Factory]:
    return {"BFP": BFP}


@hookimpl
def detcore_register_task_utils() -> Mapping[str, Factory]:
    return {
        "InstanceBalancedPosSampler": InstanceBalancedPosSampler,
        "IoUBalancedNegSampler": IoUBalancedNegSampler,
    }
