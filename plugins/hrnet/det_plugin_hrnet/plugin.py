"""The ``hrnet`` plugin: registers the backbone HRNet and the neck HRFPN."""

from __future__ import annotations

from typing import Mapping

from det_plugin_hrnet.hrfpn import HRFPN
from det_plugin_hrnet.hrnet import HRNet
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_backbones() -> Mapping[str, Factory]:
    return {"HRNet": HRNet}


@hookimpl
def detcore_register_necks() -> Mapping[str, Factory]:
    return {"HRFPN": HRFPN}
