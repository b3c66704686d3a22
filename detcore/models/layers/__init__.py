"""Layer builders named by ``*_cfg`` tables, :class:`ConvModule`, the frozen batch norm, and the blocks
backbones insert from a ``plugins`` list (context block, generalized attention, non-local)."""

from detcore.models.layers.activation import Clamp, HSigmoid, Swish, build_activation_layer
from detcore.models.layers.context_block import ContextBlock
from detcore.models.layers.conv import ConvWS2d, build_conv_layer, conv_ws_2d
from detcore.models.layers.conv_module import ConvModule
from detcore.models.layers.generalized_attention import GeneralizedAttention
from detcore.models.layers.non_local import NonLocal2d
from detcore.models.layers.norm import FrozenBatchNorm2d, build_norm_layer, infer_abbr, is_norm
from detcore.models.layers.plugin import build_plugin_layer, infer_plugin_abbr
from detcore.models.layers.upsample import PixelShufflePack, build_upsample_layer

__all__ = [
    "Clamp",
    "ContextBlock",
    "ConvModule",
    "ConvWS2d",
    "FrozenBatchNorm2d",
    "GeneralizedAttention",
    "HSigmoid",
    "NonLocal2d",
    "PixelShufflePack",
    "Swish",
    "build_activation_layer",
    "build_conv_layer",
    "build_norm_layer",
    "build_plugin_layer",
    "build_upsample_layer",
    "conv_ws_2d",
    "infer_abbr",
    "infer_plugin_abbr",
    "is_norm",
]
