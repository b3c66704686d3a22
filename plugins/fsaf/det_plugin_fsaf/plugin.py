"""The ``fsaf`` plugin: registers the detector FSAF, the dense head FSAFHead and the task utilities
CenterRegionAssigner and TBLRBBoxCoder."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_fsaf.center_region_assigner import CenterRegionAssigner
from det_plugin_fsaf.detector import FSAF
from det_plugin_fsaf.fsaf_head import FSAFHead
from det_plugin_fsaf.tblr_coder import TBLRBBoxCoder
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"FSAF": FSAF}


@hookimpl
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    return {"FSAFHead": FSAFHead}


@hookimpl
def detcore_register_task_utils() -> Mapping[str, Factory]:
    return {"CenterRegionAssigner": CenterRegionAssigner, "TBLRBBoxCoder": TBLRBBoxCoder}
