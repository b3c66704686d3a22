"""The ``resnet`` plugin: registers the backbones ResNet, ResNetV1d and ResNeXt."""

from __future__ import annotations

from typing import Mapping

from det_plugin_resnet.resnet import ResNet, ResNetV1d
from det_plugin_resnet.resnext import ResNeXt
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_backbones() -> Mapping[str, Factory]:
    return {"ResNet": ResNet, "ResNetV1d": ResNetV1d, "ResNeXt": ResNeXt}
