"""The ``tridentnet`` plugin: registers the backbone TridentResNet, the RoI head TridentRoIHead and the
detector TridentFasterRCNN (Faster R-CNN C4 parts come from det-plugin-rcnn and det-plugin-resnet)."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_tridentnet.trident_faster_rcnn import TridentFasterRCNN, TridentRoIHead
from det_plugin_tridentnet.trident_resnet import TridentResNet
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_backbones() -> Mapping[str, Factory]:
    return {"TridentResNet": TridentResNet}


@hookimpl
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    return {"TridentRoIHead": TridentRoIHead}


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"TridentFasterRCNN": TridentFasterRCNN}
