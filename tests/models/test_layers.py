"""Layer builders and ConvModule: types, names (checkpoint keys) and behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detcore.models.layers import (
    ConvModule,
    ConvWS2d,
    FrozenBatchNorm2d,
    HSigmoid,
    PixelShufflePack,
    build_activation_layer,
    build_conv_layer,
    build_norm_layer,
    build_upsample_layer,
    is_norm,
)


def test_build_conv_layer_types():
    assert type(build_conv_layer(None, 3, 4, 3)) is nn.Conv2d
    assert type(build_conv_layer({"type": "Conv"}, 3, 4, 3)) is nn.Conv2d
    conv = build_conv_layer({"type": "ConvWS"}, 3, 4, 3, padding=1)
    assert isinstance(conv, ConvWS2d)
    x = torch.randn(2, 3, 5, 5)
    w = conv.weight
    flat = w.reshape(4, -1)
    ws = (w - flat.mean(1).view(4, 1, 1, 1)) / (flat.std(1).view(4, 1, 1, 1) + 1e-5)
    torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, ws, conv.bias, padding=1))


def test_build_conv_layer_unknown_type_names_it():
    with pytest.raises(Exception, match="Conv3x"):
        build_conv_layer({"type": "Conv3x"}, 3, 4, 3)
    with pytest.raises(KeyError, match="type"):
        build_conv_layer({"kernel": 3}, 3, 4, 3)


@pytest.mark.parametrize(
    "cfg,postfix,name,cls",
    [
        ({"type": "BN"}, 1, "bn1", nn.BatchNorm2d),
        ({"type": "BN2d"}, "", "bn", nn.BatchNorm2d),
        ({"type": "SyncBN"}, "", "bn", nn.SyncBatchNorm),
        ({"type": "GN", "num_groups": 2}, "", "gn", nn.GroupNorm),
        ({"type": "LN"}, 2, "ln2", nn.LayerNorm),
        ({"type": "IN"}, "", "in", nn.InstanceNorm2d),
        ({"type": "FrozenBN"}, 1, "bn1", FrozenBatchNorm2d),
    ],
)
def test_build_norm_layer_names(cfg, postfix, name, cls):
    got_name, layer = build_norm_layer(cfg, 4, postfix)
    assert got_name == name and type(layer) is cls
    assert is_norm(layer)


def test_norm_options():
    _, bn = build_norm_layer({"type": "BN", "requires_grad": False, "eps": 1e-3, "momentum": 0.3}, 4)
    assert not any(p.requires_grad for p in bn.parameters())
    assert bn.eps == 1e-3 and bn.momentum == 0.3
    _, gn = build_norm_layer({"type": "GN", "num_groups": 2}, 4)
    assert gn.num_groups == 2 and gn.num_channels == 4
    with pytest.raises(KeyError, match="num_groups"):
        build_norm_layer({"type": "GN"}, 4)
    assert not is_norm(nn.Conv2d(1, 1, 1))


def test_frozen_bn_loads_bn_keys_and_matches_eval_bn():
    bn = nn.BatchNorm2d(3)
    bn.weight.data = torch.tensor([1.0, 2.0, 0.5])
    bn.bias.data = torch.tensor([0.0, -1.0, 3.0])
    bn.running_mean = torch.tensor([0.1, 0.2, 0.3])
    bn.running_var = torch.tensor([1.0, 4.0, 0.25])
    frozen = FrozenBatchNorm2d(3)
    frozen.load_state_dict(bn.state_dict())  # includes num_batches_tracked
    assert list(frozen.parameters()) == []
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(frozen(x), bn.eval()(x))


def test_activations():
    x = torch.linspace(-5, 5, 11)
    assert isinstance(build_activation_layer({"type": "ReLU"}), nn.ReLU)
    lrelu = build_activation_layer({"type": "LeakyReLU", "negative_slope": 0.2})
    torch.testing.assert_close(lrelu(x), torch.where(x > 0, x, 0.2 * x))
    hs = build_activation_layer({"type": "HSigmoid"})
    assert isinstance(hs, HSigmoid)
    torch.testing.assert_close(hs(torch.tensor([-3.0, 0.0, 3.0, 10.0])), torch.tensor([0.0, 0.5, 1.0, 1.0]))
    torch.testing.assert_close(build_activation_layer({"type": "Swish"})(x), x * torch.sigmoid(x))
    torch.testing.assert_close(
        build_activation_layer({"type": "Clamp", "min": 0, "max": 2})(x), x.clamp(0, 2)
    )
    for name in ("PReLU", "ReLU6", "ELU", "Sigmoid", "Tanh", "GELU", "SiLU"):
        assert build_activation_layer({"type": name})(x).shape == x.shape


def test_upsample_layers():
    x = torch.randn(1, 4, 3, 3)
    assert build_upsample_layer({"type": "nearest", "scale_factor": 2})(x).shape == (1, 4, 6, 6)
    assert build_upsample_layer({"type": "bilinear", "scale_factor": 2})(x).shape == (1, 4, 6, 6)
    deconv = build_upsample_layer({"type": "deconv"}, 4, 2, kernel_size=2, stride=2)
    assert isinstance(deconv, nn.ConvTranspose2d) and deconv(x).shape == (1, 2, 6, 6)
    ps = build_upsample_layer({"type": "pixel_shuffle", "scale_factor": 2, "upsample_kernel": 3}, 4, 2)
    assert isinstance(ps, PixelShufflePack) and ps(x).shape == (1, 2, 6, 6)


def test_conv_module_keys_match_reference_naming():
    m = ConvModule(3, 8, 3, padding=1, norm_cfg={"type": "GN", "num_groups": 4})
    assert list(m.state_dict()) == ["conv.weight", "gn.weight", "gn.bias"]
    assert m.norm is m.gn and isinstance(m.activate, nn.ReLU)
    m = ConvModule(3, 8, 1)  # no norm -> conv bias, ReLU
    assert list(m.state_dict()) == ["conv.weight", "conv.bias"] and m.norm is None
    m = ConvModule(3, 8, 3, norm_cfg={"type": "BN"}, act_cfg=None)
    assert list(m.state_dict())[:3] == ["conv.weight", "bn.weight", "bn.bias"]
    assert not hasattr(m, "activate")


def test_conv_module_forward_matches_manual():
    torch.manual_seed(0)
    m = ConvModule(3, 4, 3, padding=1, norm_cfg={"type": "BN"}).eval()
    x = torch.randn(2, 3, 5, 5)
    expected = torch.relu(m.bn(m.conv(x)))
    torch.testing.assert_close(m(x), expected)
    torch.testing.assert_close(m(x, activate=False), m.bn(m.conv(x)))
    # norm first: norm runs on the input channels
    pre = ConvModule(3, 4, 3, norm_cfg={"type": "BN"}, order=("norm", "act", "conv"))
    assert pre.bn.num_features == 3
    # reflect padding via a padding layer
    refl = ConvModule(3, 4, 3, padding=1, padding_mode="reflect")
    assert refl(x).shape == (2, 4, 5, 5) and refl.conv.padding == (0, 0)


def test_conv_module_init_and_bias():
    m = ConvModule(16, 32, 3, norm_cfg={"type": "BN"})
    assert m.conv.bias is None
    assert torch.all(m.bn.weight == 1) and torch.all(m.bn.bias == 0)
    # kaiming normal, fan_out, relu: std = sqrt(2 / (32 * 9))
    std = m.conv.weight.std().item()
    assert abs(std - (2 / (32 * 9)) ** 0.5) < 0.02
    m = ConvModule(3, 4, 3, bias=True, act_cfg={"type": "Sigmoid"})
    assert m.conv.bias is not None and torch.all(m.conv.bias == 0)
    with pytest.raises(ValueError, match="order"):
        ConvModule(3, 4, 3, order=("conv", "act"))


@pytest.mark.parametrize("kind", ["DCN", "DCNv2"])
def test_conv_module_with_deformable_conv(kind):
    m = ConvModule(4, 8, 3, padding=1, conv_cfg={"type": kind, "deform_groups": 1}, norm_cfg={"type": "BN"})
    keys = list(m.state_dict())
    assert keys[:3] == ["conv.weight", "conv.conv_offset.weight", "conv.conv_offset.bias"]
    assert m(torch.randn(1, 4, 6, 6)).shape == (1, 8, 6, 6)
