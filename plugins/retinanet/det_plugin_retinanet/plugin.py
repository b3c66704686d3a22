"""The ``retinanet`` plugin: registers the detector RetinaNet and the dense head RetinaHead."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_retinanet.detector import RetinaNet
from det_plugin_retinanet.retina_head import RetinaHead
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"RetinaNet": RetinaNet}


@hookimpl
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    return {"RetinaHead": RetinaHead}
