"""det-plugin-resnet: ResNet, ResNetV1d and ResNeXt backbones for detcore."""

__version__ = "0.1.0"

from det_plugin_resnet.blocks import BasicBlock, Bottleneck  # noqa: E402
from det_plugin_resnet.res_layer import ResLayer  # noqa: E402
from det_plugin_resnet.resnet import ResNet, ResNetV1d  # noqa: E402
from det_plugin_resnet.resnext import ResNeXt  # noqa: E402

__all__ = ["BasicBlock", "Bottleneck", "ResLayer", "ResNeXt", "ResNet", "ResNetV1d", "__version__"]
