"""ResNet / ResNetV1d / ResNeXt: shapes, parameter counts, styles, freezing, DCN, checkpointing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from det_plugin_resnet import Bottleneck, ResNet, ResNetV1d, ResNeXt
from torch import nn

import detcore
from detcore.ops.modules import DeformConv2dPack

# torchvision's published parameter counts of its ImageNet models, minus the classifier
# (fc: C * 1000 + 1000 with C = 512 for depth 18/34, 2048 otherwise)
TORCHVISION_COUNTS = {
    ("ResNet", 18, ()): 11_689_512 - 513_000,
    ("ResNet", 34, ()): 21_797_672 - 513_000,
    ("ResNet", 50, ()): 25_557_032 - 2_049_000,
    ("ResNet", 101, ()): 44_549_160 - 2_049_000,
    ("ResNet", 152, ()): 60_192_808 - 2_049_000,
    ("ResNeXt", 50, (32, 4)): 25_028_904 - 2_049_000,
    ("ResNeXt", 101, (32, 8)): 88_791_336 - 2_049_000,
    ("ResNeXt", 101, (64, 4)): 83_455_272 - 2_049_000,
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("key", list(TORCHVISION_COUNTS), ids=lambda k: f"{k[0]}{k[1]}{k[2] or ''}")
def test_parameter_counts_match_torchvision(key) -> None:
    kind, depth, gw = key
    cfg = {"type": kind, "depth": depth}
    if gw:
        cfg.update(groups=gw[0], base_width=gw[1])
    with torch.device("meta"):
        model = detcore.build("backbone", cfg)
    assert _count(model) == TORCHVISION_COUNTS[key]


def test_resnet50_output_shapes_at_strides_4_8_16_32() -> None:
    model = ResNet(depth=50).eval()
    model.init_weights()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        outs = model(x)
    assert [tuple(o.shape) for o in outs] == [
        (1, 256, 16, 24),
        (1, 512, 8, 12),
        (1, 1024, 4, 6),
        (1, 2048, 2, 3),
    ]
    assert model.out_channels == (256, 512, 1024, 2048)


def test_odd_sizes_round_up_and_resnet18_channels() -> None:
    model = ResNet(depth=18, out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 45, 70))
    # every stride-2 step gives ceil(size / 2)
    h = [math.ceil(45 / 2**k) for k in range(6)]
    w = [math.ceil(70 / 2**k) for k in range(6)]
    assert [tuple(o.shape) for o in outs] == [(2, 128, h[3], w[3]), (2, 512, h[5], w[5])]
    assert model.out_channels == (128, 512)


def test_styles_put_the_stride_on_different_convs() -> None:
    pt = ResNet(depth=50, style="pytorch")
    cf = ResNet(depth=50, style="caffe")
    for model, conv1_stride, conv2_stride in ((pt, (1, 1), (2, 2)), (cf, (2, 2), (1, 1))):
        first = model.layer2[0]
        assert first.conv1.stride == conv1_stride and first.conv2.stride == conv2_stride
        assert first.downsample[0].stride == (2, 2)
    # same keys and shapes (the reference's caffe and pytorch checkpoints share a layout)
    assert {k: v.shape for k, v in pt.state_dict().items()} == {
        k: v.shape for k, v in cf.state_dict().items()
    }


def test_caffe_bottleneck_matches_hand_computation() -> None:
    torch.manual_seed(0)
    block = Bottleneck(
        64,
        16,
        stride=2,
        style="caffe",
        downsample=nn.Sequential(nn.Conv2d(64, 64, 1, 2, bias=False), nn.BatchNorm2d(64)),
    ).eval()
    x = torch.randn(1, 64, 9, 9)

    def bn(m: nn.BatchNorm2d, t: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    out = F.relu(bn(block.bn1, F.conv2d(x, block.conv1.weight, stride=2)))
    out = F.relu(bn(block.bn2, F.conv2d(out, block.conv2.weight, padding=1)))
    out = bn(block.bn3, F.conv2d(out, block.conv3.weight))
    identity = bn(block.downsample[1], F.conv2d(x, block.downsample[0].weight, stride=2))
    with torch.no_grad():
        assert torch.allclose(block(x), F.relu(out + identity), atol=1e-5)


def test_resnext_widths_and_groups() -> None:
    model = ResNeXt(depth=50, groups=32, base_width=4)
    widths = [getattr(model, f"layer{i}")[0].conv2 for i in range(1, 5)]
    assert [(c.in_channels, c.groups) for c in widths] == [(128, 32), (256, 32), (512, 32), (1024, 32)]
    with pytest.raises(KeyError, match="valid depths: \\[50, 101, 152\\]"):
        ResNeXt(depth=18, groups=32)


def test_resnetv1d_deep_stem_and_avg_down() -> None:
    model = ResNetV1d(depth=50).eval()
    keys = list(model.state_dict())
    assert keys[:2] == ["stem.0.weight", "stem.1.weight"]
    assert "conv1.weight" not in keys and "layer2.0.downsample.1.weight" in keys
    ds = model.layer2[0].downsample
    assert isinstance(ds[0], nn.AvgPool2d) and ds[1].stride == (1, 1)
    x = torch.randn(1, 256, 7, 9)
    bn = ds[2]
    pooled = F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)
    expected = F.batch_norm(
        F.conv2d(pooled, ds[1].weight), bn.running_mean, bn.running_var, bn.weight, bn.bias
    )
    with torch.no_grad():
        assert torch.allclose(ds(x), expected, atol=1e-5)
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    with pytest.raises(ValueError, match="always true"):
        ResNetV1d(depth=50, deep_stem=False)


def test_dilation_keeps_resolution() -> None:
    model = ResNet(depth=18, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 4]
    assert model.layer4[1].conv1.dilation == (2, 2) and model.layer4[1].conv1.padding == (2, 2)


def test_frozen_stages_and_norm_eval() -> None:
    model = ResNet(depth=18, frozen_stages=1, norm_eval=True)
    model.train()
    frozen = [model.conv1, model.bn1, model.layer1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not model.layer1.training and model.layer2.training
    # norm_eval: every batch norm keeps its statistics while the model trains
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    before = model.layer3[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(model.layer3[0].bn1.running_mean, before)

    model = ResNet(depth=18, frozen_stages=0, norm_eval=False).train()
    assert not model.bn1.training and model.layer1[0].bn1.training
    model(torch.randn(2, 3, 32, 32))
    assert not torch.equal(model.layer1[0].bn1.running_mean, torch.zeros(64))


def test_default_init_zero_init_residual() -> None:
    model = ResNet(depth=50)
    model.init_weights()
    blocks = [b for b in model.modules() if isinstance(b, Bottleneck)]
    assert len(blocks) == 16
    assert all(torch.all(b.bn3.weight == 0) for b in blocks)
    assert all(torch.all(b.bn1.weight == 1) and torch.all(b.bn1.bias == 0) for b in blocks)
    # kaiming normal, fan_out, relu: std = sqrt(2 / (out_channels * k * k))
    std = model.layer3[0].conv2.weight.std().item()
    assert abs(std - math.sqrt(2 / (256 * 9))) < 0.05 * math.sqrt(2 / (256 * 9))


def test_dcn_stages_start_as_plain_convolutions() -> None:
    torch.manual_seed(0)
    cfg = {"depth": 50, "stage_with_dcn": (False, False, True, True)}
    dcn_model = ResNet(dcn={"type": "DCN", "deform_groups": 1}, **cfg)
    dcn_model.init_weights()
    assert isinstance(dcn_model.layer3[0].conv2, DeformConv2dPack)
    assert not isinstance(dcn_model.layer2[0].conv2, DeformConv2dPack)
    assert torch.all(dcn_model.layer3[0].conv2.conv_offset.weight == 0)
    plain = ResNet(**cfg)
    missing, unexpected = plain.load_state_dict(dcn_model.state_dict(), strict=False)
    assert not missing and all(".conv_offset." in k for k in unexpected) and unexpected
    dcn_model.eval(), plain.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(dcn_model(x), plain(x)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="only supported in Bottleneck"):
        ResNet(depth=18, dcn={"type": "DCN"}, stage_with_dcn=(True, False, False, False))


def test_dcn_fallback_on_stride_keeps_strided_convs_plain() -> None:
    model = ResNet(
        depth=50, dcn={"type": "DCN", "fallback_on_stride": True}, stage_with_dcn=(False, True, True, True)
    )
    assert not isinstance(model.layer2[0].conv2, DeformConv2dPack)  # strided 3x3
    assert isinstance(model.layer2[1].conv2, DeformConv2dPack)


def test_with_cp_gives_same_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    a = ResNet(depth=18, norm_eval=False)
    b = ResNet(depth=18, norm_eval=False, with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    xb = x.detach().clone().requires_grad_(True)
    sa, sb = sum(o.sum() for o in a(x)), sum(o.sum() for o in b(xb))
    sa.backward(), sb.backward()
    assert torch.allclose(sa, sb, rtol=1e-5)
    assert torch.allclose(x.grad, xb.grad, rtol=1e-4, atol=1e-6)
    assert torch.allclose(a.conv1.weight.grad, b.conv1.weight.grad, rtol=1e-4, atol=1e-6)


def test_group_norm_names_and_bad_arguments() -> None:
    model = ResNet(depth=50, norm_cfg={"type": "GN", "num_groups": 32})
    assert "layer1.0.gn1.weight" in model.state_dict() and "gn1.weight" in model.state_dict()
    with pytest.raises(KeyError, match="invalid depth 42"):
        ResNet(depth=42)
    with pytest.raises(ValueError, match="'cfg' and 'position'"):  # a plugin table without its position
        ResNet(depth=50, plugins=[{"cfg": {"type": "ContextBlock"}, "stages": (False, True, True, True)}])
    with pytest.raises(ValueError, match="out_indices"):
        ResNet(depth=50, out_indices=(0, 4))
    with pytest.raises(ValueError, match="style"):
        ResNet(depth=50, style="tf")
    with pytest.raises(ValueError, match="not both"):
        ResNet(depth=50, pretrained="x.pth", init_cfg={"type": "Pretrained", "checkpoint": "x.pth"})
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ResNet(depth=18)(torch.randn(3, 32, 32))


def test_registry_builds_and_reports_the_plugin() -> None:
    entry = detcore.get_registry().get("backbone", "ResNeXt")
    assert entry.plugin == "resnet" and entry.distribution == "det-plugin-resnet"
    with torch.device("meta"):
        model = detcore.build("backbone", {"type": "ResNetV1d", "depth": 50, "out_indices": [3]})
    assert isinstance(model, ResNetV1d) and model.out_channels == (2048,)
