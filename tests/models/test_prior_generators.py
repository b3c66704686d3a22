"""Anchor and point generators against hand-written priors (reference 2.x conventions)."""

from __future__ import annotations

import math

import pytest
import torch

from detcore.models.task_utils import (
    AnchorGenerator,
    LegacyAnchorGenerator,
    MlvlPointGenerator,
    SSDAnchorGenerator,
)


def test_single_anchor_2x2_map():
    gen = AnchorGenerator(strides=[8], ratios=[1.0], scales=[1.0])
    (anchors,) = gen.grid_priors([(2, 2)])
    expected = torch.tensor([[-4.0, -4, 4, 4], [4, -4, 12, 4], [-4, 4, 4, 12], [4, 4, 12, 12]])
    torch.testing.assert_close(anchors, expected)
    assert gen.num_base_priors == [1]


def test_base_anchor_order_scale_major_and_ratio_major():
    # base 4, ratios 0.5 and 2, scales 1 and 2: w = 4 * scale / sqrt(ratio), h = 4 * scale * sqrt(ratio)
    r = math.sqrt(2)
    sizes_scale_major = [(4 * r, 4 / r), (8 * r, 8 / r), (4 / r, 4 * r), (8 / r, 8 * r)]  # ratio outer
    sizes_ratio_major = [(4 * r, 4 / r), (4 / r, 4 * r), (8 * r, 8 / r), (8 / r, 8 * r)]  # scale outer
    for scale_major, sizes in ((True, sizes_scale_major), (False, sizes_ratio_major)):
        gen = AnchorGenerator(strides=[4], ratios=[0.5, 2.0], scales=[1.0, 2.0], scale_major=scale_major)
        expected = torch.tensor([[-w / 2, -h / 2, w / 2, h / 2] for w, h in sizes])
        torch.testing.assert_close(gen.base_anchors[0], expected)


def test_retinanet_octave_scales():
    gen = AnchorGenerator(strides=[8, 16], ratios=[0.5, 1.0, 2.0], octave_base_scale=4, scales_per_octave=3)
    assert gen.num_base_priors == [9, 9]
    # ratio 1 anchors of level 0: sides 8 * 4 * 2^(i/3), centred at 0
    sides = [32 * 2 ** (i / 3) for i in range(3)]
    expected = torch.tensor([[-s / 2, -s / 2, s / 2, s / 2] for s in sides])
    torch.testing.assert_close(gen.base_anchors[0][3:6], expected)
    with pytest.raises(ValueError, match="either scales or octave"):
        AnchorGenerator(strides=[8], ratios=[1.0], scales=[1.0], octave_base_scale=4, scales_per_octave=3)


def test_grid_order_location_then_base_anchor():
    gen = AnchorGenerator(strides=[(10, 20)], ratios=[1.0], scales=[1.0, 2.0], base_sizes=[10])
    (anchors,) = gen.grid_priors([(2, 2)])
    base = gen.base_anchors[0]
    shifts = [(0, 0), (10, 0), (0, 20), (10, 20)]  # row-major, x fastest; stride is (w, h)
    expected = torch.cat([base + torch.tensor([sx, sy, sx, sy], dtype=torch.float32) for sx, sy in shifts])
    torch.testing.assert_close(anchors, expected)
    idx = torch.tensor([0, 3, 5, 7])
    torch.testing.assert_close(gen.sparse_priors(idx, (2, 2), 0), anchors[idx])


def test_centers_and_center_offset():
    gen = AnchorGenerator(strides=[8], ratios=[1.0], scales=[1.0], center_offset=0.5)
    torch.testing.assert_close(gen.base_anchors[0], torch.tensor([[0.0, 0.0, 8.0, 8.0]]))
    gen = AnchorGenerator(strides=[8], ratios=[1.0], scales=[1.0], centers=[(1.0, 2.0)])
    torch.testing.assert_close(gen.base_anchors[0], torch.tensor([[-3.0, -2.0, 5.0, 6.0]]))


def test_valid_flags():
    gen = AnchorGenerator(strides=[8], ratios=[1.0], scales=[1.0, 2.0])
    (flags,) = gen.valid_flags([(3, 3)], pad_shape=(10, 20, 3))
    # valid rows: ceil(10 / 8) = 2, valid cols: min(ceil(20 / 8), 3) = 3; two anchors per location
    per_loc = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0, 0], dtype=torch.bool)
    torch.testing.assert_close(flags, per_loc.repeat_interleave(2))


def test_legacy_anchor_generator_detectron_anchor():
    gen = LegacyAnchorGenerator(strides=[16], ratios=[1.0], scales=[8], center_offset=0.5)
    torch.testing.assert_close(gen.base_anchors[0], torch.tensor([[-56.0, -56.0, 71.0, 71.0]]))


def test_ssd300_sizes_and_first_level_anchors():
    gen = SSDAnchorGenerator(
        strides=[8, 16, 32, 64, 100, 300],
        ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        basesize_ratio_range=(0.15, 0.9),
        input_size=300,
        scale_major=False,
    )
    assert gen.min_sizes == [21, 45, 99, 153, 207, 261]
    assert gen.max_sizes == [45, 99, 153, 207, 261, 315]
    assert gen.num_base_priors == [4, 6, 6, 6, 4, 4]
    big = math.sqrt(21 * 45) / 2
    w, h = 21 * math.sqrt(2) / 2, 21 / math.sqrt(2) / 2
    expected = torch.tensor(
        [
            [4 - 10.5, 4 - 10.5, 4 + 10.5, 4 + 10.5],  # min size, ratio 1
            [4 - big, 4 - big, 4 + big, 4 + big],  # sqrt(min * max), ratio 1
            [4 - w, 4 - h, 4 + w, 4 + h],  # ratio 1/2 (wide)
            [4 - h, 4 - w, 4 + h, 4 + w],  # ratio 2 (tall)
        ]
    )
    torch.testing.assert_close(gen.base_anchors[0], expected)
    with pytest.raises(ValueError, match="input_size"):
        SSDAnchorGenerator(strides=[8] * 6, ratios=[[2]] * 6, input_size=320)


def test_point_generator():
    gen = MlvlPointGenerator(strides=[4, 8])
    p0, p1 = gen.grid_priors([(2, 3), (1, 1)])
    torch.testing.assert_close(p0, torch.tensor([[2.0, 2], [6, 2], [10, 2], [2, 6], [6, 6], [10, 6]]))
    torch.testing.assert_close(p1, torch.tensor([[4.0, 4.0]]))
    (ps,) = MlvlPointGenerator(strides=[4], offset=0).grid_priors([(1, 2)], with_stride=True)
    torch.testing.assert_close(ps, torch.tensor([[0.0, 0, 4, 4], [4, 0, 4, 4]]))
    (flags,) = MlvlPointGenerator(strides=[4]).valid_flags([(2, 3)], pad_shape=(4, 8))
    torch.testing.assert_close(flags, torch.tensor([True, True, False, False, False, False]))
    torch.testing.assert_close(gen.sparse_priors(torch.tensor([4]), (2, 3), 0), p0[[4]])
