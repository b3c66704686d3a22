"""Built-in plugin: the model library's shared detectors, dense-head base, RoI heads and RoI layers.

``SingleStageDetector``, ``TwoStageDetector`` (kind ``detector``), ``AnchorHead`` (kind
``dense_head``), the RoI heads, their box and mask heads and ``FusedSemanticHead`` (kind ``roi_head``),
``SingleRoIExtractor`` (kind ``roi_extractor``) and ``RoIAlign`` / ``RoIPool`` / ``DeformRoIPoolPack`` /
``ModulatedDeformRoIPoolPack`` (kind ``roi_layer``)
are usable directly from configs; detector families subclass them in their own plugins.
"""

from __future__ import annotations

from collections.abc import Mapping

from detcore.hookspecs import Factory, hookimpl
from detcore.models.dense_heads.anchor_head import AnchorHead
from detcore.models.detectors.single_stage import SingleStageDetector
from detcore.models.detectors.two_stage import TwoStageDetector
from detcore.models.necks import CTResNetNeck
from detcore.models.roi_heads import (
    BBoxHead,
    ConvFCBBoxHead,
    Shared2FCBBoxHead,
    Shared4Conv1FCBBoxHead,
    SingleRoIExtractor,
    StandardRoIHead,
)
from detcore.models.roi_heads.mask_heads import FCNMaskHead
from detcore.models.roi_heads.semantic_heads import FusedSemanticHead
from detcore.ops.modules import DeformRoIPoolPack, ModulatedDeformRoIPoolPack, RoIAlign, RoIPool


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"SingleStageDetector": SingleStageDetector, "TwoStageDetector": TwoStageDetector}


@hookimpl
def detcore_register_necks() -> Mapping[str, Factory]:
    return {"CTResNetNeck": CTResNetNeck}


@hookimpl
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    return {"AnchorHead": AnchorHead}


@hookimpl
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    return {
        "StandardRoIHead": StandardRoIHead,
        "BBoxHead": BBoxHead,
        "ConvFCBBoxHead": ConvFCBBoxHead,
        "Shared2FCBBoxHead": Shared2FCBBoxHead,
        "Shared4Conv1FCBBoxHead": Shared4Conv1FCBBoxHead,
        "FCNMaskHead": FCNMaskHead,
        "FusedSemanticHead": FusedSemanticHead,
    }


@hookimpl
def detcore_register_roi_extractors() -> Mapping[str, Factory]:
    return {"SingleRoIExtractor": SingleRoIExtractor}


@hookimpl
def detcore_register_roi_layers() -> Mapping[str, Factory]:
    return {
        "RoIAlign": RoIAlign,
        "RoIPool": RoIPool,
        "DeformRoIPoolPack": DeformRoIPoolPack,
        "ModulatedDeformRoIPoolPack": ModulatedDeformRoIPoolPack,
    }
