"""SSDVGG, L2Norm and SSDNeck: output sizes, the L2 norm's numerics, layouts and input checks."""

from __future__ import annotations

import pytest
import torch

import detcore

pytest.importorskip("det_plugin_ssd", reason="det-plugin-ssd is not installed")

from det_plugin_ssd import SSDVGG, L2Norm, SSDNeck  # noqa: E402

NECK300 = dict(in_channels=(512, 1024), out_channels=(512, 1024, 512, 256, 256, 256),
               level_strides=(2, 2, 1, 1), level_paddings=(1, 1, 0, 0))
NECK512 = dict(in_channels=(512, 1024), out_channels=(512, 1024, 512, 256, 256, 256, 256),
               level_strides=(2, 2, 2, 2, 1), level_paddings=(1, 1, 1, 1, 1), last_kernel_size=4)


def test_vgg16_feature_layout_matches_the_reference_indices() -> None:
    with torch.device("meta"):
        vgg = detcore.build("backbone", {"type": "SSDVGG", "depth": 16})
    convs = [i for i, m in enumerate(vgg.features) if isinstance(m, torch.nn.Conv2d)]
    # 13 VGG convs (pool after 4, 9, 16, 23; pool5 dropped) + fc6 at 31 and fc7 at 33
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33]
    assert isinstance(vgg.features[30], torch.nn.MaxPool2d) and vgg.features[30].stride == 1
    assert vgg.features[31].dilation == (6, 6) and vgg.features[31].padding == (6, 6)
    assert vgg.out_channels == (512, 1024)
    # torchvision's VGG16 has 14,714,688 conv parameters; fc6 (3x3, 512->1024) and fc7 (1x1) add the rest
    n_vgg = sum(p.numel() for i in convs[:13] for p in vgg.features[i].parameters())
    assert n_vgg == 14_714_688
    assert sum(p.numel() for p in vgg.parameters()) == 14_714_688 + (512 * 9 + 1) * 1024 + (1024 + 1) * 1024


@pytest.mark.parametrize("size, expected", [(300, [(38, 38), (19, 19)]), (512, [(64, 64), (32, 32)])])
def test_slim_vgg_output_sizes_use_ceil_mode(size: int, expected: list) -> None:
    vgg = SSDVGG(depth=16, base_channels=4).eval()
    with torch.no_grad():
        outs = vgg(torch.zeros(1, 3, size, size))
    assert [tuple(o.shape[-2:]) for o in outs] == expected
    assert [o.shape[1] for o in outs] == [32, 64] == list(vgg.out_channels)


def test_neck_output_sizes_for_300_and_512() -> None:
    with torch.device("meta"):
        n300, n512 = SSDNeck(**NECK300), SSDNeck(**NECK512)
        outs300 = n300((torch.empty(1, 512, 38, 38), torch.empty(1, 1024, 19, 19)))
        outs512 = n512((torch.empty(1, 512, 64, 64), torch.empty(1, 1024, 32, 32)))
    assert [tuple(o.shape[1:]) for o in outs300] == [
        (512, 38, 38), (1024, 19, 19), (512, 10, 10), (256, 5, 5), (256, 3, 3), (256, 1, 1)]
    assert [tuple(o.shape[1:]) for o in outs512] == [
        (512, 64, 64), (1024, 32, 32), (512, 16, 16), (256, 8, 8), (256, 4, 4), (256, 2, 2), (256, 1, 1)]


def test_l2norm_scales_unit_channel_vectors() -> None:
    norm = L2Norm(3, scale=20.0)
    assert torch.equal(norm.weight.data, torch.full((3,), 20.0))
    x = torch.tensor([3.0, 0.0, 4.0]).view(1, 3, 1, 1)  # |x| = 5
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 10.0]))
    y = norm(x).flatten()
    assert torch.allclose(y, torch.tensor([3 / 5, 0.0, 10 * 4 / 5]))
    half = norm(x.half())
    assert half.dtype == torch.float16


def test_neck_applies_l2norm_only_to_the_first_map_and_init_restores_scale() -> None:
    neck = SSDNeck(in_channels=(4, 8), out_channels=(4, 8, 8), level_strides=(2,), level_paddings=(1,),
                   l2_norm_scale=20)
    neck.init_weights()
    assert torch.equal(neck.l2_norm.weight.data, torch.full((4,), 20.0))
    a, b = torch.randn(2, 4, 6, 6), torch.randn(2, 8, 3, 3)
    outs = neck((a, b))
    expected = 20 * a / a.pow(2).sum(1, keepdim=True).sqrt()
    assert torch.allclose(outs[0], expected, atol=1e-5)
    assert torch.equal(outs[1], b)
    assert outs[2].shape == (2, 8, 2, 2)
    without = SSDNeck(in_channels=(4, 8), out_channels=(4, 8, 8), level_strides=(2,), level_paddings=(1,),
                      l2_norm_scale=None)
    assert not hasattr(without, "l2_norm") and "l2_norm.weight" not in without.state_dict()


def test_bad_arguments_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="depth must be one of"):
        SSDVGG(depth=15)
    with pytest.raises(ValueError, match="out_feature_indices"):
        SSDVGG(depth=16, out_feature_indices=(22, 40))
    with pytest.raises(ValueError, match="must start with in_channels"):
        SSDNeck(in_channels=(512, 1024), out_channels=(512, 512, 256), level_strides=(2,),
                level_paddings=(1,))
    with pytest.raises(ValueError, match="level_strides and level_paddings"):
        SSDNeck(in_channels=(512, 1024), out_channels=(512, 1024, 256), level_strides=(2, 2),
                level_paddings=(1,))
    with pytest.raises(ValueError, match=r"expected images \(B, 3, H, W\)"):
        SSDVGG(depth=16, base_channels=2)(torch.zeros(1, 1, 32, 32))
