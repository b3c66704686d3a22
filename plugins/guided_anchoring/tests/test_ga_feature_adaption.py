"""FeatureAdaption: the offsets it computes from a known shape prediction, against hand-computed values,
and what the deformable conv does with them (zero offsets: a plain conv; a one-pixel dx: the conv of
the features moved by one pixel)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from det_plugin_guided_anchoring import FeatureAdaption

pytestmark = pytest.mark.usefixtures("one_thread")


def test_layout_matches_the_reference():
    fa = FeatureAdaption(8, 6, kernel_size=3, deform_groups=4)
    assert [(k, tuple(v.shape)) for k, v in fa.state_dict().items()] == [
        ("conv_offset.weight", (72, 2, 1, 1)), ("conv_adaption.weight", (6, 8, 3, 3))
    ]
    with pytest.raises(ValueError, match="kernel_size"):
        FeatureAdaption(8, 8, kernel_size=2)
    with pytest.raises(ValueError, match="deform_groups"):
        FeatureAdaption(6, 8, deform_groups=4)


def test_offsets_from_a_known_shape_prediction():
    fa = FeatureAdaption(4, 4, deform_groups=1)
    with torch.no_grad():
        w = torch.zeros(18, 2, 1, 1)
        w[0, 0], w[1, 1] = 2.0, -1.0           # tap 0: dy = 2 dw, dx = -dh
        w[8, 0], w[8, 1] = 0.5, 0.5            # tap 4 (the centre): dy = (dw + dh) / 2
        fa.conv_offset.weight.copy_(w)
    shape = torch.zeros(1, 2, 2, 3, requires_grad=True)
    with torch.no_grad():
        shape[0, 0, 1, 2], shape[0, 1, 1, 2] = 0.3, -0.7   # (dw, dh) at cell (1, 2)
    off = fa.offsets(shape)
    assert off.shape == (1, 18, 2, 3)
    assert off[0, 0, 1, 2].item() == pytest.approx(0.6)
    assert off[0, 1, 1, 2].item() == pytest.approx(0.7)
    assert off[0, 8, 1, 2].item() == pytest.approx(-0.2)
    assert off[0, :, 0].abs().sum() == 0 and off[0, [2, 3, 4, 5, 6, 7, 9]].abs().sum() == 0
    # the shape prediction is detached: the adaption does not train the shape branch
    x = torch.randn(1, 4, 2, 3, requires_grad=True)
    fa(x, shape).sum().backward()
    assert shape.grad is None and x.grad is not None


def test_zero_offsets_are_a_plain_conv_and_a_unit_dx_moves_the_sampling():
    torch.manual_seed(0)
    fa = FeatureAdaption(8, 5, deform_groups=4)
    x = torch.randn(2, 8, 6, 7)
    shape = torch.ones(2, 2, 6, 7)   # dw = dh = 1 everywhere
    with torch.no_grad():
        fa.conv_offset.weight.zero_()
        expected = F.relu(F.conv2d(x, fa.conv_adaption.weight, padding=1))
        torch.testing.assert_close(fa(x, shape), expected, atol=1e-5, rtol=1e-5)
        # every (dy, dx) pair of every group and tap: dx = dw = 1 (the odd channels), dy = 0
        fa.conv_offset.weight[1::2, 0] = 1.0
        # tap (ki, kj) at output (i, j) now reads x[i - 1 + ki, j + kj]: the conv of x padded by one row
        # above and below and two columns on the right only
        moved = F.pad(x, (0, 2, 1, 1))
        expected = F.relu(F.conv2d(moved, fa.conv_adaption.weight))
        torch.testing.assert_close(fa(x, shape), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="differ in size"):
        fa(x, shape[..., :3])
