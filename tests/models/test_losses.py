"""Losses against hand-computed values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

import detcore
from detcore.models.losses import (
    GHMC,
    GHMR,
    BalancedL1Loss,
    BoundedIoULoss,
    CrossEntropyLoss,
    FocalLoss,
    GIoULoss,
    IoULoss,
    L1Loss,
    SmoothL1Loss,
    accuracy,
    weight_reduce_loss,
)

LOG2 = math.log(2)


def test_weight_reduce_loss():
    loss = torch.tensor([1.0, 2.0, 3.0])
    w = torch.tensor([1.0, 0.0, 2.0])
    assert weight_reduce_loss(loss, w, "sum").item() == 7.0
    assert weight_reduce_loss(loss, w, "mean").item() == pytest.approx(7 / 3)
    assert weight_reduce_loss(loss, w, "mean", avg_factor=2).item() == pytest.approx(3.5)
    torch.testing.assert_close(weight_reduce_loss(loss, w, "none", avg_factor=2), torch.tensor([1.0, 0, 6]))
    with pytest.raises(ValueError, match="avg_factor"):
        weight_reduce_loss(loss, w, "sum", avg_factor=2)


def test_softmax_cross_entropy_value_and_grad():
    pred = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    loss = CrossEntropyLoss(loss_weight=2.0)(pred, torch.tensor([2]))
    expected = math.log(1 + math.exp(-1) + math.exp(-2))
    assert loss.item() == pytest.approx(2 * expected, rel=1e-6)
    loss.backward()
    e = torch.exp(torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(pred.grad[0], 2 * (e / e.sum() - torch.tensor([0.0, 0, 1])))


def test_cross_entropy_ignore_and_class_weight():
    pred = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([0, 1, 255])
    loss = CrossEntropyLoss(ignore_index=255, avg_non_ignore=True)(pred, labels)
    assert loss.item() == pytest.approx(LOG2)  # two non-ignored entries of log 2, averaged over 2
    with pytest.warns(UserWarning, match="avg_non_ignore"):
        ce = CrossEntropyLoss(ignore_index=255)
    loss = ce(pred, labels, reduction_override="sum")
    assert loss.item() == pytest.approx(2 * LOG2)
    loss = CrossEntropyLoss(class_weight=[1.0, 3.0])(pred[:2], labels[:2], reduction_override="sum")
    assert loss.item() == pytest.approx(4 * LOG2)


def test_sigmoid_cross_entropy_labels_and_background():
    pred = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
    loss = CrossEntropyLoss(use_sigmoid=True)(pred, torch.tensor([1, 2]), reduction_override="none")
    sp = lambda x: math.log(1 + math.exp(x))  # noqa: E731 - softplus: BCE with target 0 is sp(x)
    expected = torch.tensor([[sp(0), sp(-2)], [sp(0), sp(2)]])  # label 2 = background: all targets 0
    torch.testing.assert_close(loss, expected)


def test_mask_cross_entropy_selects_label_channel():
    pred = torch.zeros(2, 3, 2, 2)
    pred[0, 1] = 2.0
    pred[1, 2] = -1.0
    target = torch.ones(2, 2, 2)
    loss = CrossEntropyLoss(use_mask=True)(pred, target, torch.tensor([1, 2]))
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert loss.shape == (1,) and loss.item() == pytest.approx(expected, rel=1e-6)


def test_focal_loss_value_and_grad():
    # x = 0 (p = 0.5): positive class -> alpha * 0.25 * log 2; negative class -> (1 - alpha) * 0.25 * log 2
    pred = torch.zeros(1, 2, requires_grad=True)
    loss = FocalLoss(gamma=2.0, alpha=0.25)(pred, torch.tensor([0]), reduction_override="none")
    torch.testing.assert_close(loss.detach(), torch.tensor([[0.25 * 0.25 * LOG2, 0.75 * 0.25 * LOG2]]))
    loss.sum().backward()
    # d/dx of -alpha (1-p)^g log p = alpha (1-p)^g (g p log p - (1 - p)); the negative mirrors it
    g_pos = 0.25 * 0.25 * (2 * 0.5 * math.log(0.5) - 0.5)
    torch.testing.assert_close(pred.grad, torch.tensor([[g_pos, -0.75 / 0.25 * g_pos]]))


def test_focal_loss_label_and_onehot_paths_agree():
    torch.manual_seed(0)
    pred = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 3, 3, 1])  # 3 = background
    onehot = torch.nn.functional.one_hot(labels, 4)[:, :3]
    w = torch.rand(6)
    fl = FocalLoss()
    a = fl(pred, labels, weight=w, avg_factor=4.0)
    b = fl(pred, onehot, weight=w, avg_factor=4.0)
    torch.testing.assert_close(a, b)
    prob = FocalLoss(activated=True)(pred.sigmoid(), labels, weight=w, avg_factor=4.0)
    torch.testing.assert_close(prob, a)


def test_smooth_l1_l1_value_and_grad():
    pred = torch.tensor([0.0, 0.5, 3.0], requires_grad=True)
    target = torch.zeros(3)
    loss = SmoothL1Loss(beta=1.0)(pred, target)
    assert loss.item() == pytest.approx((0 + 0.125 + 2.5) / 3)
    loss.backward()
    torch.testing.assert_close(pred.grad, torch.tensor([0.0, 0.5, 1.0]) / 3)
    l1 = L1Loss(loss_weight=2.0)(pred, target, weight=torch.tensor([1.0, 1.0, 0.0]), avg_factor=1)
    assert l1.item() == pytest.approx(1.0, rel=1e-5)
    assert SmoothL1Loss()(torch.zeros(0, 4), torch.zeros(0, 4)).item() == 0


def test_balanced_l1():
    b = math.e**3 - 1  # alpha 0.5, gamma 1.5
    small = 0.5 / b * (b * 0.5 + 1) * math.log(b * 0.5 + 1) - 0.5 * 0.5
    large = 1.5 * 2 + 1.5 / b - 0.5
    loss = BalancedL1Loss()(torch.tensor([0.5, 2.0]), torch.zeros(2), reduction_override="none")
    torch.testing.assert_close(loss, torch.tensor([small, large]))


def test_iou_losses_values_and_grad():
    pred = torch.tensor([[0.0, 0, 10, 10]])
    target = torch.tensor([[0.0, 0, 10, 20]])  # IoU 0.5
    assert IoULoss()(pred, target).item() == pytest.approx(LOG2, rel=1e-5)
    assert IoULoss(mode="linear")(pred, target).item() == pytest.approx(0.5, rel=1e-5)
    assert IoULoss(mode="square")(pred, target).item() == pytest.approx(0.75, rel=1e-5)
    # disjoint: IoU 0, enclosing 300, union 200 -> GIoU = -1/3
    far = torch.tensor([[20.0, 0, 30, 10]])
    assert GIoULoss()(pred, far).item() == pytest.approx(4 / 3, rel=1e-5)
    # x2 = 5: IoU = 10 x2 / 200, d(1 - IoU)/dx2 = -0.05
    p = torch.tensor([[0.0, 0, 5, 10]], requires_grad=True)
    IoULoss(mode="linear")(p, target).backward()
    assert p.grad[0, 2].item() == pytest.approx(-0.05, rel=1e-4)
    # all-zero weights: zero loss that still has a graph
    z = IoULoss()(p, target, weight=torch.zeros(1))
    assert z.item() == 0 and z.requires_grad


def test_bounded_iou_loss():
    pred = torch.tensor([[0.0, 0, 10, 10]])
    target = torch.tensor([[2.0, 0, 12, 10]])
    eps, beta = 1e-3, 0.2
    dx = 1 - 6 / (14 + eps)
    near = 1 - 10 / (10 + eps)  # dy, dw, dh terms
    smooth = lambda v: 0.5 * v * v / beta if v < beta else v - 0.5 * beta  # noqa: E731
    expected = (smooth(dx) + 3 * smooth(near)) / 4
    assert BoundedIoULoss(beta=beta, eps=eps)(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_ghmc_density_weights():
    # g = |sigmoid(x) - 1| = (0.5, 0.5, 0.0067): two bins; tot 3 -> weights 3/2, 3/2, 3 then / 2 bins
    pred = torch.tensor([[0.0], [0.0], [5.0]])
    target = torch.ones(3, 1)
    loss = GHMC(bins=10)(pred, target, torch.ones(3, 1))
    bce = [LOG2, LOG2, math.log(1 + math.exp(-5))]
    expected = (0.75 * bce[0] + 0.75 * bce[1] + 1.5 * bce[2]) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # label targets expand to one-hot; label weight 0 rows do not count
    loss2 = GHMC()(torch.zeros(2, 2), torch.tensor([0, 2]), torch.tensor([1.0, 0.0]))
    assert loss2.item() == pytest.approx(2 * LOG2 / 2, rel=1e-5)
    assert "edges" in GHMC(momentum=0.5).state_dict() and "acc_sum" in GHMC(momentum=0.5).state_dict()


def test_ghmr():
    mu = 0.02
    loss = GHMR(mu=mu)(torch.tensor([[1.0]]), torch.zeros(1, 1), torch.ones(1, 1))
    assert loss.item() == pytest.approx(math.sqrt(1 + mu * mu) - mu, rel=1e-6)


def test_accuracy():
    pred = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(pred, torch.tensor([1, 1, 1])).item() == pytest.approx(200 / 3)
    top1, top2 = accuracy(pred, torch.tensor([1, 1, 1]), topk=(1, 2))
    assert top2.item() == pytest.approx(100.0)


def test_losses_registered():
    names = detcore.get_registry().names("loss")
    for name in (
        "CrossEntropyLoss",
        "FocalLoss",
        "SmoothL1Loss",
        "L1Loss",
        "BalancedL1Loss",
        "IoULoss",
        "GIoULoss",
        "BoundedIoULoss",
        "GHMC",
        "GHMR",
    ):
        assert name in names
    loss = detcore.build("loss", {"type": "SmoothL1Loss", "beta": 0.5, "loss_weight": 2.0})
    assert isinstance(loss, SmoothL1Loss) and loss.beta == 0.5 and loss.loss_weight == 2.0
