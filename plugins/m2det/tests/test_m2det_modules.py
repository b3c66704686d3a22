"""M2Det's modules against hand computations: FFMv1 / FFMv2 fusion, the TUM's scales and its
encoder-decoder (recomputed with plain F.conv2d), SFAM's attention, and MLFPN's output shapes and
parameter count (counted by hand from the paper's layer list)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("det_plugin_m2det", reason="det-plugin-m2det is not installed")

from det_plugin_m2det import MLFPN, SFAM, TUM, FFMv1, FFMv2  # noqa: E402


def conv_bn(cin: int, cout: int, k: int) -> int:
    """Parameters of conv (no bias) + BN."""
    return cin * cout * k * k + 2 * cout


def mlfpn_count(c_s: int, c_d: int, f: tuple[int, int], r: int, p: int, o: int, levels: int, scales: int,
                reduction: int) -> int:  # fmt: skip
    """MLFPN's parameters by hand: FFMv1 (3x3 and 1x1), one FFMv2 1x1 per level, per TUM the
    encoder's ``scales - 1`` 3x3 convs, the top 1x1, ``scales - 1`` 3x3 laterals and ``scales`` 1x1
    output convs, then SFAM's two fully connected layers (with bias) per scale."""
    ffm1 = conv_bn(c_s, f[0], 3) + conv_bn(c_d, f[1], 1)
    ffm2 = levels * conv_bn(f[0] + f[1], r, 1)

    def tum(cin: int) -> int:
        encoder = conv_bn(cin, p, 3) + (scales - 2) * conv_bn(p, p, 3)
        decoder = conv_bn(p, p, 1) + (scales - 2) * conv_bn(p, p, 3) + conv_bn(cin, p, 3)
        return encoder + decoder + scales * conv_bn(p, o, 1)

    c = levels * o
    hidden = c // reduction
    sfam = scales * (c * hidden + hidden + hidden * c + c)
    return ffm1 + ffm2 + tum(r) + (levels - 1) * tum(r + o) + sfam


def test_small_mlfpn_parameter_count_by_hand():
    neck = MLFPN(in_channels=(4, 6), ffm1_channels=(3, 5), ffm2_channels=2, planes=4, tum_out_channels=3,
                 num_levels=2, num_scales=3, sfam_reduction=2)  # fmt: skip
    # written out: FFMv1 114 + 40, FFMv2 2 x 20, TUM 1 (input 2) 542, TUM 2 (input 2 + 3) 758, SFAM 3 x 45
    assert sum(p.numel() for p in neck.parameters()) == 154 + 40 + 542 + 758 + 135 == 1629
    assert mlfpn_count(4, 6, (3, 5), 2, 4, 3, 2, 3, 2) == 1629


def test_paper_vgg16_mlfpn_count_and_shapes_at_320_and_512():
    """Paper settings (8 TUMs, 6 scales, 256 planes, 128 outputs, SE ratio 16): 40x40 base at 320 gives
    the paper's 40, 20, 10, 5, 3, 1 (Fig. 4); 512 gives 64, 32, 16, 8, 4, 2. Every scale has 8 x 128."""
    with torch.device("meta"):
        neck = MLFPN()
        assert sum(p.numel() for p in neck.parameters()) == mlfpn_count(
            512, 1024, (256, 512), 128, 256, 128, 8, 6, 16) == 52_037_504  # fmt: skip
        assert neck.out_channels == (1024,) * 6
        for size, sizes in ((320, [40, 20, 10, 5, 3, 1]), (512, [64, 32, 16, 8, 4, 2])):
            shallow = torch.empty(2, 512, size // 8, size // 8)
            deep = torch.empty(2, 1024, size // 16, size // 16)
            outs = neck([shallow, deep])
            assert [tuple(o.shape) for o in outs] == [(2, 1024, s, s) for s in sizes]


def test_ffmv1_concatenates_the_3x3_and_upsampled_1x1_reductions():
    torch.manual_seed(0)
    ffm = FFMv1((2, 3), (2, 1), act_cfg=None)
    shallow, deep = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 2, 2)
    out = ffm(shallow, deep)
    assert out.shape == (1, 3, 4, 4) and ffm.base_channels == 3
    s = F.conv2d(shallow, ffm.shallow_conv.conv.weight, ffm.shallow_conv.conv.bias, padding=1)
    d = F.conv2d(deep, ffm.deep_conv.conv.weight, ffm.deep_conv.conv.bias)
    d = d.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest 2x upsampling
    torch.testing.assert_close(out, torch.cat([s, d], 1))


def test_ffmv2_reduces_the_base_and_appends_the_previous_output():
    torch.manual_seed(0)
    ffm = FFMv2(5, 2, act_cfg=None)
    base, prev = torch.randn(1, 5, 3, 3), torch.randn(1, 4, 3, 3)
    reduced = F.conv2d(base, ffm.conv.conv.weight, ffm.conv.conv.bias)
    torch.testing.assert_close(ffm(base), reduced)
    torch.testing.assert_close(ffm(base, prev), torch.cat([reduced, prev], 1))
    with pytest.raises(ValueError, match="same size"):
        ffm(base, torch.randn(1, 4, 2, 2))


@pytest.mark.parametrize(("size", "sizes"), [(40, [40, 20, 10, 5, 3, 1]), (38, [38, 19, 10, 5, 3, 1]),
                                             (64, [64, 32, 16, 8, 4, 2])])  # fmt: skip
def test_tum_gives_num_scales_outputs(size, sizes):
    with torch.device("meta"):
        tum = TUM(256, 256, 128, 6)
        outs = tum(torch.empty(1, 256, size, size))
    assert [tuple(o.shape) for o in outs] == [(1, 128, s, s) for s in sizes]
    assert len(tum.down_convs) == 5 and len(tum.lateral_convs) == 5 and len(tum.smooth_convs) == 6


def test_tum_matches_a_hand_written_encoder_decoder():
    """No norm: every ConvModule is conv + bias + ReLU; recompute the U shape with F.conv2d."""
    torch.manual_seed(0)
    tum = TUM(3, planes=4, out_channels=2, num_scales=3, norm_cfg=None)
    for p in tum.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(1, 3, 8, 8)

    def cm(m, t, stride=1, padding=0):
        return F.relu(F.conv2d(t, m.conv.weight, m.conv.bias, stride=stride, padding=padding))

    e1 = cm(tum.down_convs[0], x, 2, 1)                 # 8 -> 4
    e2 = cm(tum.down_convs[1], e1, 1, 0)                # 4 -> 2
    d2 = cm(tum.top_conv, e2)
    d1 = F.interpolate(d2, size=(4, 4)) + cm(tum.lateral_convs[0], e1, 1, 1)
    d0 = F.interpolate(d1, size=(8, 8)) + cm(tum.lateral_convs[1], x, 1, 1)
    expected = [cm(tum.smooth_convs[i], d) for i, d in enumerate((d0, d1, d2))]
    outs = tum(x)
    assert [tuple(o.shape[-2:]) for o in outs] == [(8, 8), (4, 4), (2, 2)]
    for got, want in zip(outs, expected):
        torch.testing.assert_close(got, want)


def test_tum_rejects_wrong_channels_and_strides():
    with pytest.raises(ValueError, match="down_strides"):
        TUM(4, 4, 2, num_scales=3, down_strides=(2, 3))
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        TUM(4, 4, 2, num_scales=3)(torch.randn(1, 5, 8, 8))


def test_sfam_attention_on_a_hand_made_case():
    """Two levels, one channel each, one scale: X = [1, 3] everywhere; fc1 = [1, 1] - 2 -> relu 2;
    fc2 = [0.5, -1] * 2 + [0, 1] = [1, -1] -> weights sigmoid(1), sigmoid(-1)."""
    sfam = SFAM(num_levels=2, channels=1, num_scales=1, reduction=2)
    att = sfam.attentions[0]
    with torch.no_grad():
        att.fc1.weight.copy_(torch.tensor([[1.0, 1.0]]).view(1, 2, 1, 1))
        att.fc1.bias.fill_(-2.0)
        att.fc2.weight.copy_(torch.tensor([[0.5], [-1.0]]).view(2, 1, 1, 1))
        att.fc2.bias.copy_(torch.tensor([0.0, 1.0]))
    level0, level1 = torch.ones(1, 1, 3, 3), torch.full((1, 1, 3, 3), 3.0)
    (out,) = sfam([[level0], [level1]])
    w = torch.sigmoid(torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(out, torch.cat([w[0] * level0, w[1] * level1], 1))


def test_sfam_weights_lie_in_zero_one_and_concatenation_without_attention():
    torch.manual_seed(0)
    levels = [[torch.randn(2, 8, s, s) for s in (4, 2)] for _ in range(3)]
    sfam = SFAM(3, 8, 2, reduction=4)
    outs = sfam(levels)
    for s, out in enumerate(outs):
        cat = torch.cat([lv[s] for lv in levels], 1)
        w = sfam.attentions[s].weights(cat)
        assert w.shape == (2, 24, 1, 1) and bool((w > 0).all() and (w < 1).all())
        torch.testing.assert_close(out, cat * w)
    plain = SFAM(3, 8, 2, attention=False)
    assert sum(p.numel() for p in plain.parameters()) == 0
    for s, out in enumerate(plain(levels)):
        torch.testing.assert_close(out, torch.cat([lv[s] for lv in levels], 1))
    with pytest.raises(ValueError, match="3 levels of 2 maps"):
        sfam(levels[:2])
