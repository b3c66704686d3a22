"""The ``m2det`` plugin: registers the neck ``MLFPN`` (M2Det uses det-plugin-ssd's ``SSDVGG`` backbone
and ``SSDHead``, and the kernel's ``SSDAnchorGenerator``)."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_m2det.mlfpn import MLFPN
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_necks() -> Mapping[str, Factory]:
    return {"MLFPN": MLFPN}
