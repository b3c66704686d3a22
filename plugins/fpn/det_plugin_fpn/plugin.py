"""The ``fpn`` plugin: registers the necks FPN and PAFPN."""

from __future__ import annotations

from typing import Mapping

from det_plugin_fpn.fpn import FPN
from det_plugin_fpn.pafpn import PAFPN
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_necks() -> Mapping[str, Factory]:
    return {"FPN": FPN, "PAFPN": PAFPN}
