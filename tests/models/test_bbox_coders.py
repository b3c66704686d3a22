"""Box coders: hand-computed deltas, round trips, clipping."""

from __future__ import annotations

import math

import torch

from detcore.models.task_utils import (
    DeltaXYWHBBoxCoder,
    DistancePointBBoxCoder,
    LegacyDeltaXYWHBBoxCoder,
    PseudoBBoxCoder,
)

PROP = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
GT = torch.tensor([[2.0, 2.0, 12.0, 22.0]])


def test_delta_xywh_encode_hand_computed_and_round_trip():
    # centres (5, 5) -> (7, 12), sizes (10, 10) -> (10, 20)
    coder = DeltaXYWHBBoxCoder()
    torch.testing.assert_close(coder.encode(PROP, GT), torch.tensor([[0.2, 0.7, 0.0, math.log(2)]]))
    coder = DeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2))
    deltas = coder.encode(PROP, GT)
    torch.testing.assert_close(deltas, torch.tensor([[2.0, 7.0, 0.0, math.log(2) / 0.2]]))
    torch.testing.assert_close(coder.decode(PROP, deltas), GT)


def test_delta_xywh_decode_clip_and_ratio_clip():
    coder = DeltaXYWHBBoxCoder()
    deltas = torch.tensor([[0.2, 0.7, 0.0, math.log(2)]])
    torch.testing.assert_close(
        coder.decode(PROP, deltas, max_shape=(15, 11)), torch.tensor([[2.0, 2, 11, 15]])
    )
    assert DeltaXYWHBBoxCoder(clip_border=False).decode(PROP, deltas, max_shape=(15, 11))[0, 3] == 22
    # dw = 10 is clamped to |log(16 / 1000)|: width 10 * 1000 / 16 = 625
    wide = coder.decode(PROP, torch.tensor([[0.0, 0.0, 10.0, 0.0]]))
    torch.testing.assert_close(wide[0, 2] - wide[0, 0], torch.tensor(625.0))


def test_delta_xywh_ctr_clamp_multiclass_and_batched():
    coder = DeltaXYWHBBoxCoder(add_ctr_clamp=True, ctr_clamp=32)
    out = coder.decode(PROP, torch.tensor([[10.0, 0.0, 0.0, 0.0]]))  # shift 100 px clamped to 32
    torch.testing.assert_close(out, torch.tensor([[32.0, 0, 42, 10]]))
    coder = DeltaXYWHBBoxCoder()
    two = coder.decode(PROP, torch.tensor([[0.0, 0, 0, 0, 0.1, 0, 0, 0]]))
    torch.testing.assert_close(two, torch.tensor([[0.0, 0, 10, 10, 1, 0, 11, 10]]))
    rois = torch.stack([PROP, PROP])  # (2, 1, 4)
    deltas = torch.tensor([[[0.5, 0, 0, 0]], [[0.5, 0, 0, 0]]])
    out = coder.decode(rois, deltas, max_shape=[(100, 12), (100, 14)])
    torch.testing.assert_close(out, torch.tensor([[[5.0, 0, 12, 10]], [[5.0, 0, 14, 10]]]))


def test_legacy_delta_plus_one_convention():
    coder = LegacyDeltaXYWHBBoxCoder()
    prop = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # width 10 with +1
    gt = torch.tensor([[2.0, 2.0, 11.0, 21.0]])  # centre (6.5, 11.5), size (10, 20)
    deltas = coder.encode(prop, gt)
    torch.testing.assert_close(deltas, torch.tensor([[0.2, 0.7, 0.0, math.log(2)]]))
    torch.testing.assert_close(coder.decode(prop, deltas), gt)
    torch.testing.assert_close(
        coder.decode(prop, deltas, max_shape=(15, 11)), torch.tensor([[2.0, 2, 10, 14]])
    )


def test_distance_point_coder():
    coder = DistancePointBBoxCoder()
    pts = torch.tensor([[5.0, 5.0]])
    gt = torch.tensor([[2.0, 3.0, 10.0, 12.0]])
    dist = coder.encode(pts, gt)
    torch.testing.assert_close(dist, torch.tensor([[3.0, 2.0, 5.0, 7.0]]))
    torch.testing.assert_close(coder.encode(pts, gt, max_dis=4), torch.tensor([[3.0, 2.0, 3.9, 3.9]]))
    torch.testing.assert_close(coder.decode(pts, dist), gt)
    torch.testing.assert_close(coder.decode(pts, dist, max_shape=(8, 9)), torch.tensor([[2.0, 3, 9, 8]]))
    torch.testing.assert_close(
        DistancePointBBoxCoder(clip_border=False).decode(pts, dist, max_shape=(8, 9)), gt
    )


def test_pseudo_coder():
    coder = PseudoBBoxCoder()
    assert coder.encode(PROP, GT) is GT and coder.decode(PROP, GT) is GT


def test_delta_xywh_decode_reference_values():
    # values published with the reference implementation's own coder test
    rois = torch.tensor(
        [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0]]
    )
    deltas = torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 2, -1], [0.7, -1.9, -0.5, 0.3]])
    expected = torch.tensor(
        [
            [0.0, 0.0, 1.0, 1.0],
            [0.1409, 0.1409, 2.8591, 2.8591],
            [0.0, 0.3161, 4.1945, 0.6839],
            [5.0, 5.0, 5.0, 5.0],
        ]
    )
    out = DeltaXYWHBBoxCoder().decode(rois, deltas, max_shape=(32, 32))
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)
