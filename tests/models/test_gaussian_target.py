"""Gaussian heatmap targets, peak decoding and the Gaussian focal loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from detcore.models.losses import GaussianFocalLoss, gaussian_focal_loss
from detcore.models.task_utils import (
    gaussian2D,
    gaussian_radius,
    gen_gaussian_target,
    get_local_maximum,
    get_topk_from_heatmap,
    transpose_and_gather_feat,
)


def test_gaussian2d_values():
    k = gaussian2D(1, sigma=1.0)
    e = math.exp
    expected = torch.tensor([[e(-1), e(-0.5), e(-1)], [e(-0.5), 1.0, e(-0.5)], [e(-1), e(-0.5), e(-1)]])
    assert torch.allclose(k, expected)


def test_gen_gaussian_target_cut_at_the_border_and_keeps_the_maximum():
    heat = torch.zeros(4, 5)
    heat[1, 1] = 0.5  # an existing higher value survives, lower ones are raised
    gen_gaussian_target(heat, (0, 0), radius=1)  # sigma = 3 / 6 = 0.5
    expected = torch.zeros(4, 5)
    expected[0, 0] = 1.0
    expected[0, 1] = expected[1, 0] = math.exp(-1 / 0.5)
    expected[1, 1] = max(0.5, math.exp(-2 / 0.5))
    assert torch.allclose(heat, expected)
    gen_gaussian_target(heat, (4, 3), radius=1, k=0.5)  # bottom-right corner, height 0.5
    assert heat[3, 4] == pytest.approx(0.5)
    assert heat[2, 4] == pytest.approx(0.5 * math.exp(-2))


def test_gaussian_radius_square_box():
    # 10x10, min_overlap 0.7: r1 = (20 - sqrt(400 - 4 * 30 / 1.7)) / 2 = 0.9250,
    # r2 = (40 - sqrt(1600 - 480)) / 8 = 0.8167, r3 = (-14 + sqrt(196 + 336)) / 5.6 = 1.6188
    assert gaussian_radius((10, 10), 0.7) == pytest.approx((40 - math.sqrt(1120)) / 8)
    # case 2 (both corners moved inwards by r): the IoU of the shrunk box is exactly min_overlap
    r = gaussian_radius((10, 10), 0.7)
    assert (10 - 2 * r) ** 2 / 100 == pytest.approx(0.7)
    with pytest.raises(ValueError, match="min_overlap"):
        gaussian_radius((10, 10), 1.0)


def test_local_maximum_and_topk():
    heat = torch.zeros(1, 2, 4, 4)
    heat[0, 0, 1, 1] = 0.9
    heat[0, 0, 1, 2] = 0.8  # next to a higher peak: suppressed
    heat[0, 1, 3, 0] = 0.7
    heat[0, 1, 0, 3] = 0.6
    peaks = get_local_maximum(heat)
    assert peaks[0, 0, 1, 2] == 0 and peaks[0, 0, 1, 1] == pytest.approx(0.9)
    scores, inds, clses, ys, xs = get_topk_from_heatmap(peaks, k=3)
    assert scores[0].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert clses.tolist() == [[0, 1, 1]]
    assert inds.tolist() == [[1 * 4 + 1, 3 * 4 + 0, 0 * 4 + 3]]
    assert ys.tolist() == [[1.0, 3.0, 0.0]] and xs.tolist() == [[1.0, 0.0, 3.0]]
    with pytest.raises(ValueError, match="k=33"):
        get_topk_from_heatmap(peaks, k=33)


def test_transpose_and_gather_feat():
    feat = torch.arange(2 * 3 * 2 * 2, dtype=torch.float).view(2, 3, 2, 2)
    ind = torch.tensor([[0, 3], [2, 2]])
    out = transpose_and_gather_feat(feat, ind)
    assert out.shape == (2, 2, 3)
    assert out[0, 1].tolist() == feat[0, :, 1, 1].tolist()
    assert out[1, 0].tolist() == feat[1, :, 1, 0].tolist()


def test_gaussian_focal_loss_hand_computed():
    pred = torch.tensor([0.8, 0.3, 0.1])
    target = torch.tensor([1.0, 0.5, 0.0])
    pos = -math.log(0.8) * 0.2 ** 2
    neg_near = -math.log(0.7) * 0.3 ** 2 * 0.5 ** 4
    neg_far = -math.log(0.9) * 0.1 ** 2
    elementwise = gaussian_focal_loss(pred, target, reduction="none")
    assert elementwise.tolist() == pytest.approx([pos, neg_near, neg_far], rel=1e-5)
    loss = GaussianFocalLoss(loss_weight=2.0)(pred, target, avg_factor=1.0)
    assert float(loss) == pytest.approx(2.0 * (pos + neg_near + neg_far), rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        gaussian_focal_loss(pred, target[:2])


def test_gaussian_focal_loss_is_registered():
    import detcore

    loss = detcore.build("loss", {"type": "GaussianFocalLoss", "loss_weight": 1.0})
    assert isinstance(loss, GaussianFocalLoss)
