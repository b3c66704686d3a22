"""The ``fcos`` plugin: registers the FCOS detector and the FCOSHead dense head."""

from __future__ import annotations

from typing import Mapping

from det_plugin_fcos.fcos import FCOS
from det_plugin_fcos.fcos_head import FCOSHead
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"FCOS": FCOS}


@hookimpl
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    return {"FCOSHead": FCOSHead}
