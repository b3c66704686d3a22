"""Hand-computed expectations on tiny inputs, checked under every available backend."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from detcore import ops


def test_backend_reports_forced_choice(backend):
    assert ops.backend() == backend


# ------------------------------------------------------------------ nms
def test_nms_suppresses_strictly_above_threshold(backend):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 4], [20, 20, 30, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # IoU(0,1) = 0.9, IoU(0,2) = 0.4, IoU(1,2) = 40/90
    assert ops.nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert ops.nms(boxes, scores, 0.35).tolist() == [0, 3]
    assert ops.nms(boxes, scores, 0.95).tolist() == [0, 1, 2, 3]
    # IoU exactly 0.5 does not suppress
    pair = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5.0]])
    assert ops.nms(pair, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]


def test_nms_orders_by_score_and_breaks_ties_by_index(backend):
    boxes = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 6, 6], [5, 5, 6, 6.0]])
    scores = torch.tensor([0.5, 0.5, 0.7, 0.7])
    assert ops.nms(boxes, scores, 0.5).tolist() == [2, 0]


def test_nms_zero_area_and_empty(backend):
    boxes = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2.0]])
    # zero-area boxes have IoU 0/0 (NaN) with each other and 0 with the others: nothing is suppressed
    assert ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.1).tolist() == [0, 1, 2]
    out = ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert out.dtype == torch.long and out.shape == (0,)


def test_batched_nms_is_class_aware(backend):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert ops.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert ops.batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5).tolist() == [0]
    assert (
        ops.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0
    )


def test_soft_nms_linear_and_gaussian(backend):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = ops.soft_nms(boxes, scores, iou_threshold=0.3, method="linear")
    assert keep.tolist() == [0, 2, 1]
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.9, 0.7, 0.4]))
    torch.testing.assert_close(dets[:, :4], boxes[keep])
    dets, keep = ops.soft_nms(boxes, scores, sigma=0.5, method="gaussian")
    assert keep.tolist() == [0, 2, 1]
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.9, 0.7, 0.8 * math.exp(-0.25 / 0.5)]))
    dets, keep = ops.soft_nms(boxes, scores, iou_threshold=0.3, method="naive")
    assert keep.tolist() == [0, 2]
    dets, keep = ops.soft_nms(boxes, scores, iou_threshold=0.3, method="linear", min_score=0.5)
    assert keep.tolist() == [0, 2]


def test_multiclass_nms_threshold_topk_and_factors(backend):
    # 3 candidates, 2 classes (+ background column), shared boxes
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60.0]])
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.6, 0.0], [0.05, 0.7, 0.0]])
    dets, labels, inds = ops.multiclass_nms(
        boxes, scores, 0.3, {"type": "nms", "iou_threshold": 0.5}, return_inds=True
    )
    # class 0: 0 (0.9) suppresses 1 (IoU 0.81); class 1: 2 (0.7) and 1 (0.6) kept
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.9, 0.7, 0.6]))
    assert labels.tolist() == [0, 1, 1]
    assert inds.tolist() == [0, 5, 3]  # flattened (N * C) indices
    torch.testing.assert_close(dets[:, :4], boxes[[0, 2, 1]])
    dets, labels = ops.multiclass_nms(boxes, scores, 0.3, {"type": "nms", "iou_threshold": 0.5}, max_num=2)
    assert labels.tolist() == [0, 1] and dets.shape == (2, 5)
    # score factors multiply after the threshold test
    factors = torch.tensor([0.5, 1.0, 1.0])
    dets, labels = ops.multiclass_nms(
        boxes, scores, 0.3, {"type": "nms", "iou_threshold": 0.5}, score_factors=factors
    )
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.8, 0.7, 0.6]))
    assert labels.tolist() == [0, 1, 1]  # box 1 (0.8) now outranks box 0 (0.45) and suppresses it
    dets, labels = ops.multiclass_nms(boxes, scores, 0.95, {"type": "nms", "iou_threshold": 0.5})
    assert dets.shape == (0, 5) and labels.shape == (0,)


def test_multiclass_nms_class_specific_boxes_and_soft(backend):
    boxes = torch.tensor([[0, 0, 10, 10, 50, 50, 60, 60], [0, 0, 10, 5, 50, 50, 60, 60.0]])
    scores = torch.tensor([[0.9, 0.2, 0.0], [0.8, 0.1, 0.0]])
    dets, labels = ops.multiclass_nms(boxes, scores, 0.15, {"type": "soft_nms", "iou_threshold": 0.3})
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.9, 0.4, 0.2]))
    assert labels.tolist() == [0, 0, 1]
    torch.testing.assert_close(dets[2, :4], torch.tensor([50, 50, 60, 60.0]))


# ------------------------------------------------------------------ roi ops
def _ramp() -> torch.Tensor:
    return torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)  # f(y, x) = 4y + x


def test_roi_align_hand_values(backend):
    x = _ramp()
    r = torch.tensor([[0, 1, 1, 3, 3.0]], dtype=torch.float64)
    # aligned: roi spans (0.5, 0.5)-(2.5, 2.5); samples at 1 and 2 -> mean of f = f(1.5, 1.5) = 7.5
    assert ops.roi_align(x, r, 1, 1.0, 2, True).item() == pytest.approx(7.5)
    # legacy: roi spans (1, 1)-(3, 3) -> f(2, 2) = 10; spatial_scale halves the coordinates
    assert ops.roi_align(x, r, 1, 1.0, 2, False).item() == pytest.approx(10.0)
    assert ops.roi_align(x, r * torch.tensor([1, 2, 2, 2, 2.0]), 1, 0.5, 2, False).item() == pytest.approx(
        10.0
    )
    out = ops.roi_align(x, torch.tensor([[0, 0, 0, 4, 4.0]], dtype=torch.float64), 2, 1.0, 0, True)
    torch.testing.assert_close(out[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]], dtype=torch.float64))
    # a sample at y = x = 4 (= H) is still inside and clamps to the last pixel; beyond -> 0
    edge = ops.roi_align(x, torch.tensor([[0, 3, 3, 5, 5.0]], dtype=torch.float64), 1, 1.0, 1, False)
    assert edge.item() == pytest.approx(15.0)
    outside = ops.roi_align(x, torch.tensor([[0, 10, 10, 12, 12.0]], dtype=torch.float64), 2, 1.0, 0, True)
    assert torch.count_nonzero(outside) == 0


def test_roi_align_empty_rois(backend):
    out = ops.roi_align(torch.randn(2, 3, 8, 8), torch.zeros(0, 5), (7, 5), 0.25, 0, True)
    assert out.shape == (0, 3, 7, 5)


def test_roi_pool_hand_values_and_gradient(backend):
    x = _ramp().requires_grad_()
    out = ops.roi_pool(x, torch.tensor([[0, 0, 0, 3, 3.0]], dtype=torch.float64), 2, 1.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([[5.0, 7.0], [13.0, 15.0]], dtype=torch.float64))
    out.sum().backward()
    expected = torch.zeros(16, dtype=torch.float64)
    expected[[5, 7, 13, 15]] = 1
    torch.testing.assert_close(x.grad.view(-1), expected)
    outside = ops.roi_pool(_ramp(), torch.tensor([[0, 10, 10, 12, 12.0]], dtype=torch.float64), 2)
    assert torch.count_nonzero(outside) == 0
    assert ops.roi_pool(_ramp(), torch.zeros(0, 5, dtype=torch.float64), 3).shape == (0, 1, 3, 3)


# ------------------------------------------------------------------ deformable convs
def test_deform_conv_zero_offset_is_conv(backend):
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    ref = F.conv2d(x, w, b, stride=2, padding=1, dilation=2, groups=2)
    off = torch.zeros(2, 2 * 2 * 9, *ref.shape[2:], dtype=torch.float64)
    out = ops.deform_conv2d(x, off, w, b, stride=2, padding=1, dilation=2, groups=2, deform_groups=2)
    torch.testing.assert_close(out, ref)
    mask = torch.full((2, 2 * 9, *ref.shape[2:]), 0.5, dtype=torch.float64)
    out = ops.modulated_deform_conv2d(x, off, mask, w, None, 2, 1, 2, 2, 2)
    torch.testing.assert_close(out, 0.5 * F.conv2d(x, w, None, 2, 1, 2, 2))


def test_deform_conv_integer_and_half_pixel_offsets(backend):
    x = torch.arange(12, dtype=torch.float64).view(1, 1, 3, 4)
    w = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    off = torch.zeros(1, 2, 3, 4, dtype=torch.float64)
    off[:, 0] = 1.0  # dy = +1: each output reads the row below; the last row reads zeros
    out = ops.deform_conv2d(x, off, w)
    expected = torch.cat([x[0, 0, 1:], torch.zeros(1, 4, dtype=torch.float64)])
    torch.testing.assert_close(out[0, 0], expected)
    off = torch.zeros(1, 2, 3, 4, dtype=torch.float64)
    off[:, 1] = 0.5  # dx = +0.5: mean of two neighbours; the last column mixes with the zero padding
    out = ops.deform_conv2d(x, off, w)
    expected = (x[0, 0] + torch.cat([x[0, 0, :, 1:], torch.zeros(3, 1, dtype=torch.float64)], 1)) / 2
    torch.testing.assert_close(out[0, 0], expected)


# ------------------------------------------------------------------ focal loss
def test_sigmoid_focal_loss_hand_values(backend):
    logits = torch.zeros(2, 3)
    targets = torch.tensor([1, 3])  # row 1 is background
    loss = ops.sigmoid_focal_loss(logits, targets, reduction="none")
    pos = 0.25 * 0.25 * math.log(2)
    neg = 0.75 * 0.25 * math.log(2)
    torch.testing.assert_close(loss, torch.tensor([[neg, pos, neg], [neg, neg, neg]]))
    assert ops.sigmoid_focal_loss(logits, targets, reduction="sum").item() == pytest.approx(
        pos + 5 * neg, rel=1e-6
    )
    assert ops.sigmoid_focal_loss(logits, targets).item() == pytest.approx((pos + 5 * neg) / 2, rel=1e-6)
    weighted = ops.sigmoid_focal_loss(logits, targets, weight=torch.tensor([2.0, 0.0]), reduction="none")
    torch.testing.assert_close(weighted, torch.tensor([[2 * neg, 2 * pos, 2 * neg], [0.0, 0.0, 0.0]]))
    # large logits stay finite
    big = ops.sigmoid_focal_loss(torch.tensor([[100.0, -100.0]]), torch.tensor([1]), reduction="none")
    assert torch.isfinite(big).all() and big[0, 1] > 10


def test_sigmoid_focal_loss_gamma_zero_is_weighted_bce(backend):
    logits = torch.randn(6, 4, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 3, 4, 2])
    onehot = F.one_hot(targets, 5)[:, :4].to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    alpha_t = 0.25 * onehot + 0.75 * (1 - onehot)
    loss = ops.sigmoid_focal_loss(logits, targets, gamma=0.0, alpha=0.25, reduction="none")
    torch.testing.assert_close(loss, alpha_t * bce)
