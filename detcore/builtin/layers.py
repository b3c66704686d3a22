"""Built-in plugin: the standard conv / norm / activation / upsample layers of ``*_cfg`` tables and the
blocks of a backbone's ``plugins`` list."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from detcore.hookspecs import Factory, hookimpl
from detcore.models.layers.activation import Clamp, HSigmoid, Swish
from detcore.models.layers.context_block import ContextBlock
from detcore.models.layers.conv import ConvWS2d, deform_conv_pack, modulated_deform_conv_pack
from detcore.models.layers.generalized_attention import GeneralizedAttention
from detcore.models.layers.non_local import NonLocal2d
from detcore.models.layers.norm import FrozenBatchNorm2d
from detcore.models.layers.upsample import PixelShufflePack, bilinear_upsample, nearest_upsample


@hookimpl
def detcore_register_layers() -> Mapping[str, Factory]:
    return {
        # conv_cfg
        "Conv": nn.Conv2d,
        "Conv1d": nn.Conv1d,
        "Conv2d": nn.Conv2d,
        "Conv3d": nn.Conv3d,
        "ConvWS": ConvWS2d,
        "DCN": deform_conv_pack,
        "DCNv2": modulated_deform_conv_pack,
        # norm_cfg
        "BN": nn.BatchNorm2d,
        "BN1d": nn.BatchNorm1d,
        "BN2d": nn.BatchNorm2d,
        "BN3d": nn.BatchNorm3d,
        "SyncBN": nn.SyncBatchNorm,
        "GN": nn.GroupNorm,
        "LN": nn.LayerNorm,
        "IN": nn.InstanceNorm2d,
        "IN1d": nn.InstanceNorm1d,
        "IN2d": nn.InstanceNorm2d,
        "IN3d": nn.InstanceNorm3d,
        "FrozenBN": FrozenBatchNorm2d,
        # act_cfg
        "ReLU": nn.ReLU,
        "LeakyReLU": nn.LeakyReLU,
        "PReLU": nn.PReLU,
        "RReLU": nn.RReLU,
        "ReLU6": nn.ReLU6,
        "ELU": nn.ELU,
        "Sigmoid": nn.Sigmoid,
        "Tanh": nn.Tanh,
        "GELU": nn.GELU,
        "SiLU": nn.SiLU,
        "Swish": Swish,
        "HSigmoid": HSigmoid,
        "HSwish": nn.Hardswish,
        "Clamp": Clamp,
        # upsample_cfg
        "nearest": nearest_upsample,
        "bilinear": bilinear_upsample,
        "deconv": nn.ConvTranspose2d,
        "pixel_shuffle": PixelShufflePack,
        # plugin blocks of a backbone's ``plugins`` list (detcore.models.layers.plugin)
        "ContextBlock": ContextBlock,
        "GeneralizedAttention": GeneralizedAttention,
        "NonLocal2d": NonLocal2d,
    }
