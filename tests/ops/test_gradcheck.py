"""torch.autograd.gradcheck of every differentiable op, for each available backend (double precision)."""

from __future__ import annotations

import torch
from torch.autograd import gradcheck

from detcore import ops


def test_gradcheck_roi_align(backend):
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.7, 4.6, 5.2], [0, 2.1, -1.3, 9.7, 3.9]], dtype=torch.float64)
    for aligned in (True, False):
        assert gradcheck(lambda t, al=aligned: ops.roi_align(t, rois, 2, 1.0, 0, al), (x,))


def test_gradcheck_roi_pool(backend):
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 5, 4], [0, 2, 1, 6, 5]], dtype=torch.float64)
    assert gradcheck(lambda t: ops.roi_pool(t, rois, 2, 1.0), (x,))


def test_gradcheck_deform_conv(backend):
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    off = (torch.rand(1, 18, 3, 3, dtype=torch.float64) * 2 - 1).requires_grad_()
    mask = torch.rand(1, 9, 3, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *a: ops.deform_conv2d(a[0], a[1], a[2], a[3]), (x, off, w, b))
    assert gradcheck(lambda *a: ops.modulated_deform_conv2d(*a), (x, off, mask, w, b))


def test_gradcheck_deform_conv_groups(backend):
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    off = (torch.rand(1, 16, 4, 2, dtype=torch.float64) * 3 - 1.5).requires_grad_()
    assert gradcheck(lambda a, o, ww: ops.deform_conv2d(a, o, ww, None, (1, 2), 0, 1, 2, 2), (x, off, w))


def test_gradcheck_focal_loss(backend):
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 2, 3, 1])
    weight = torch.rand(4, dtype=torch.float64)
    for reduction in ("none", "mean"):
        assert gradcheck(
            lambda t, r=reduction: ops.sigmoid_focal_loss(t, targets, 2.0, 0.25, weight, r), (logits,)
        )
