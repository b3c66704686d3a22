"""Built-in plugin: the model library's shared detectors and dense-head bases.

``SingleStageDetector`` (kind ``detector``) and ``AnchorHead`` (kind ``dense_head``) are usable
directly from configs; detector families subclass them in their own plugins.
"""

from __future__ import annotations

from collections.abc import Mapping

from detcore.hookspecs import Factory, hookimpl
from detcore.models.dense_heads.anchor_head import AnchorHead
from detcore.models.detectors.single_stage import SingleStageDetector


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"SingleStageDetector": SingleStageDetector}


@hookimpl
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    return {"AnchorHead": AnchorHead}
