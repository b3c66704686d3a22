"""The ``rfcn`` plugin: registers the RoI heads RFCNRoIHead and RFCNHead (kind ``roi_head``)."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_rfcn.rfcn_head import RFCNHead, RFCNRoIHead
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    return {"RFCNRoIHead": RFCNRoIHead, "RFCNHead": RFCNHead}
