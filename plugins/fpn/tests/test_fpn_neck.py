"""FPN and PAFPN: outputs and parameter counts for every ``add_extra_convs`` mode, the top-down sum,
norm / upsample options, level selection, initialisation and argument errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from det_plugin_fpn import FPN, PAFPN

import detcore

IN_CHANNELS = [8, 16, 32, 64]
SIZES = [(32, 48), (16, 24), (8, 12), (4, 6)]  # strides 4, 8, 16, 32 of a 128x192 image
OUT = 4


def inputs(batch: int = 1) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(batch, c, h, w) for c, (h, w) in zip(IN_CHANNELS, SIZES)]


def conv_params(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cout * cin * k * k + (cout if bias else 0)


# hand count: lateral 1x1 convs of the used levels, 3x3 output convs, stride-2 3x3 extra convs
def expected_count(start: int, extra_inputs: list[int]) -> int:
    used = IN_CHANNELS[start:]
    return (
        sum(conv_params(c, OUT, 1) for c in used)
        + len(used) * conv_params(OUT, OUT, 3)
        + sum(conv_params(c, OUT, 3) for c in extra_inputs)
    )


MODES = {
    # add_extra_convs -> channels the extra convs read (two extra levels: start_level 1, num_outs 5)
    False: [],
    True: [64, OUT],
    "on_input": [64, OUT],
    "on_lateral": [OUT, OUT],
    "on_output": [OUT, OUT],
}


@pytest.mark.parametrize("mode", list(MODES), ids=str)
def test_every_extra_conv_mode_shapes_and_count(mode) -> None:
    neck = FPN(IN_CHANNELS, OUT, num_outs=5, start_level=1, add_extra_convs=mode).eval()
    neck.init_weights()
    assert sum(p.numel() for p in neck.parameters()) == expected_count(1, MODES[mode])
    xs = inputs()
    with torch.no_grad():
        outs = neck(xs)
    # levels 1..3 of the input, then two levels that each halve the resolution (ceil)
    assert [tuple(o.shape) for o in outs] == [
        (1, OUT, 16, 24),
        (1, OUT, 8, 12),
        (1, OUT, 4, 6),
        (1, OUT, 2, 3),
        (1, OUT, 1, 2),
    ]
    lateral_top = neck.lateral_convs[-1](xs[3])
    with torch.no_grad():
        if mode is False:
            assert torch.equal(outs[3], outs[2][:, :, ::2, ::2])
            assert torch.equal(outs[4], outs[3][:, :, ::2, ::2])
        else:
            source = {"on_input": xs[3], True: xs[3], "on_lateral": lateral_top, "on_output": outs[2]}[mode]
            assert torch.allclose(outs[3], neck.fpn_convs[3](source), atol=1e-6)
            assert torch.allclose(outs[4], neck.fpn_convs[4](outs[3]), atol=1e-6)
    assert neck.add_extra_convs == ("on_input" if mode is True else mode)


def test_relu_before_extra_convs() -> None:
    neck = FPN(
        IN_CHANNELS, OUT, num_outs=6, start_level=1, add_extra_convs="on_output", relu_before_extra_convs=True
    ).eval()
    with torch.no_grad():
        outs = neck(inputs())
        assert len(outs) == 6 and outs[5].shape[-2:] == (1, 1)
        assert torch.allclose(outs[4], neck.fpn_convs[4](F.relu(outs[3])), atol=1e-6)
        assert torch.allclose(outs[5], neck.fpn_convs[5](F.relu(outs[4])), atol=1e-6)


def _identity_fpn(**kwargs) -> FPN:
    """An FPN whose lateral convs keep the first OUT channels and whose output convs are identities."""
    neck = FPN(IN_CHANNELS, OUT, num_outs=4, **kwargs)
    with torch.no_grad():
        for lat in neck.lateral_convs:
            lat.conv.weight.zero_()
            lat.conv.weight[:, :OUT, 0, 0] = torch.eye(OUT)
            lat.conv.bias.zero_()
        for out in neck.fpn_convs:
            out.conv.weight.zero_()
            out.conv.weight[:, :, 1, 1] = torch.eye(OUT)
            out.conv.bias.zero_()
    return neck


def test_top_down_pathway_sums_nearest_upsampled_levels() -> None:
    neck = _identity_fpn()
    xs = inputs()
    with torch.no_grad():
        outs = neck(xs)
    # expected: P_i = sum_{j >= i} nearest-upsample(C_j[:, :OUT]) by 2**(j - i), computed with repeats
    for i in range(4):
        expected = torch.zeros_like(outs[i])
        for j in range(i, 4):
            f = 2 ** (j - i)
            expected += xs[j][:, :OUT].repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)
        assert torch.allclose(outs[i], expected, atol=1e-5), i


def test_upsample_options() -> None:
    xs = inputs()
    by_scale = _identity_fpn(upsample_cfg={"scale_factor": 2, "mode": "nearest"})
    with torch.no_grad():
        assert all(torch.allclose(a, b) for a, b in zip(by_scale(xs), _identity_fpn()(xs)))
        bilinear = _identity_fpn(upsample_cfg={"mode": "bilinear", "align_corners": False})
        outs = bilinear(xs)
    p3 = xs[3][:, :OUT]
    p2 = xs[2][:, :OUT] + F.interpolate(p3, size=(8, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(outs[2], p2, atol=1e-5)
    with pytest.raises(ValueError, match="size"):
        FPN(IN_CHANNELS, OUT, 4, upsample_cfg={"size": (3, 3)})


def test_norm_options() -> None:
    neck = FPN(IN_CHANNELS, OUT, num_outs=5, norm_cfg={"type": "GN", "num_groups": 2})
    keys = list(neck.state_dict())
    assert "lateral_convs.0.gn.weight" in keys and "fpn_convs.0.gn.weight" in keys
    assert "lateral_convs.0.conv.bias" not in keys  # bias="auto": no conv bias before a norm
    plain = FPN(
        IN_CHANNELS, OUT, num_outs=5, norm_cfg={"type": "GN", "num_groups": 2}, no_norm_on_lateral=True
    )
    keys = list(plain.state_dict())
    assert "lateral_convs.0.conv.bias" in keys and "lateral_convs.0.gn.weight" not in keys
    assert "fpn_convs.0.gn.weight" in keys
    act = FPN(IN_CHANNELS, OUT, num_outs=4, act_cfg={"type": "ReLU"}).eval()
    with torch.no_grad():
        assert all(bool((o >= 0).all()) for o in act(inputs()))


def test_start_and_end_level() -> None:
    neck = FPN(IN_CHANNELS, OUT, num_outs=2, start_level=1, end_level=2)
    assert len(neck.lateral_convs) == 2 and len(neck.fpn_convs) == 2
    with torch.no_grad():
        outs = neck(inputs())
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12)]
    with pytest.raises(ValueError, match="num_outs must be 2"):
        FPN(IN_CHANNELS, OUT, num_outs=3, start_level=1, end_level=2)
    with pytest.raises(ValueError, match="at least the number of used inputs"):
        FPN(IN_CHANNELS, OUT, num_outs=2)


def test_bad_arguments_and_inputs() -> None:
    with pytest.raises(ValueError, match="add_extra_convs"):
        FPN(IN_CHANNELS, OUT, 5, add_extra_convs="on_top")
    with pytest.raises(TypeError, match="in_channels"):
        FPN(256, OUT, 5)
    neck = FPN(IN_CHANNELS, OUT, 5)
    with pytest.raises(ValueError, match="expected 4 input maps"):
        neck(inputs()[:3])
    xs = inputs()
    xs[1] = torch.randn(1, 7, 16, 24)
    with pytest.raises(ValueError, match=r"input 1 must be \(B, 16, H, W\)"):
        neck(xs)


def test_default_init_is_xavier_uniform_with_zero_bias() -> None:
    neck = FPN([256, 512], 256, num_outs=2)
    neck.init_weights()
    w = neck.fpn_convs[0].conv.weight.detach()
    bound = math.sqrt(6 / (256 * 9 + 256 * 9))
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound
    assert all(torch.all(m.conv.bias == 0) for m in [*neck.lateral_convs, *neck.fpn_convs])


def test_pafpn_count_keys_and_bottom_up_path() -> None:
    neck = PAFPN(IN_CHANNELS, OUT, num_outs=5, add_extra_convs="on_output").eval()
    # FPN part + one stride-2 and one 3x3 conv per used level above the first
    expected = expected_count(0, [OUT]) + 3 * 2 * conv_params(OUT, OUT, 3)
    assert sum(p.numel() for p in neck.parameters()) == expected
    keys = [k.split(".")[0] for k in neck.state_dict()]
    assert list(dict.fromkeys(keys)) == ["lateral_convs", "fpn_convs", "downsample_convs", "pafpn_convs"]
    xs = inputs()
    with torch.no_grad():
        outs = neck(xs)
        fpn_outs = FPN.forward(neck, xs)  # the same convs without the bottom-up path
        m = [fpn_outs[0]]
        for i in range(3):
            m.append(fpn_outs[i + 1] + neck.downsample_convs[i](m[i]))
        expected_outs = [m[0]] + [neck.pafpn_convs[i - 1](m[i]) for i in range(1, 4)]
        expected_outs.append(neck.fpn_convs[4](expected_outs[-1]))
    assert [tuple(o.shape[-2:]) for o in outs] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    for a, b in zip(outs, expected_outs):
        assert torch.allclose(a, b, atol=1e-5)


def test_registry_builds_the_necks() -> None:
    entry = detcore.get_registry().get("neck", "PAFPN")
    assert entry.plugin == "fpn" and entry.distribution == "det-plugin-fpn"
    neck = detcore.build(
        "neck",
        {
            "type": "FPN",
            "in_channels": IN_CHANNELS,
            "out_channels": OUT,
            "num_outs": 5,
            "add_extra_convs": "on_lateral",
        },
    )
    assert isinstance(neck, FPN) and len(neck.fpn_convs) == 5
