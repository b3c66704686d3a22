"""The ``ssd`` plugin: registers the SSDVGG backbone, the SSDNeck neck and the SSDHead dense head."""

from __future__ import annotations

from typing import Mapping

from det_plugin_ssd.ssd_head import SSDHead
from det_plugin_ssd.ssd_neck import SSDNeck
from det_plugin_ssd.vgg import SSDVGG
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_backbones() -> Mapping[str, Factory]:
    return {"SSDVGG": SSDVGG}


@hookimpl
def detcore_register_necks() -> Mapping[str, Factory]:
    return {"SSDNeck": SSDNeck}


@hookimpl
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    return {"SSDHead": SSDHead}
