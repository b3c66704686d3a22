"""Reduced precision: float16/bfloat16 inputs (autocast's feature maps) are computed in float32.

The expectation is the same op run on the inputs upcast by hand, so each test checks the dtype policy
(result dtype, gradient dtype) and that no precision is lost beyond the final cast.
"""

from __future__ import annotations

import pytest
import torch

from detcore import ops


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_roi_align_half_features_with_float32_rois(backend, half):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 20, 24, generator=gen).to(half).requires_grad_()
    # Coordinates past 2048 px (stride 128 map) would lose whole pixels if cast to float16.
    rois = torch.tensor([[0, 2049.3, 1030.7, 2390.1, 1800.2], [1, 100.5, 60.2, 900.0, 700.9]])
    out = ops.roi_align(feats, rois, 3, 1 / 128, 2, True)
    want = ops.roi_align(feats.detach().float(), rois, 3, 1 / 128, 2, True)
    assert out.dtype == half
    torch.testing.assert_close(out, want.to(half))
    out.float().sum().backward()
    assert feats.grad.dtype == half and feats.grad.abs().sum() > 0


def test_roi_pool_bfloat16(backend):
    feats = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6).to(torch.bfloat16)
    rois = torch.tensor([[1, 0.0, 0.0, 5.0, 5.0]])
    out = ops.roi_pool(feats, rois, 1, 1.0)
    assert out.dtype == torch.bfloat16
    assert out.item() == 71.0  # the largest value of image 1: 36 + 35


def test_deform_conv_half_input_float32_weight(backend):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 7, 7, generator=gen).to(torch.bfloat16)
    w = torch.randn(3, 4, 3, 3, generator=gen)
    off = torch.randn(1, 18, 5, 5, generator=gen).to(torch.bfloat16)
    mask = torch.rand(1, 9, 5, 5, generator=gen).to(torch.bfloat16)
    out = ops.modulated_deform_conv2d(x, off, mask, w)
    want = ops.modulated_deform_conv2d(x.float(), off.float(), mask.float(), w)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, want.to(torch.bfloat16))


def test_focal_loss_half_logits_return_float32(backend):
    gen = torch.Generator().manual_seed(2)
    logits = (torch.randn(64, 5, generator=gen) * 3).to(torch.float16).requires_grad_()
    targets = torch.randint(0, 6, (64,), generator=gen)
    loss = ops.sigmoid_focal_loss(logits, targets, reduction="sum")
    want = ops.sigmoid_focal_loss(logits.detach().float(), targets, reduction="sum")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert logits.grad.dtype == torch.float16


def test_float64_mixed_with_float32_is_refused(backend):
    with pytest.raises(TypeError, match="'rois' has dtype torch.float32 but 'input' has dtype torch.float64"):
        ops.roi_align(torch.zeros(1, 1, 4, 4, dtype=torch.float64), torch.zeros(1, 5), 2)
    with pytest.raises(TypeError, match="'weight' has dtype torch.float64"):
        ops.deform_conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 18, 2, 2), torch.zeros(1, 1, 3, 3).double())


def test_roi_align_under_cpu_autocast(backend):
    """The AMP case: a conv under autocast yields bfloat16 features, the rois stay float32."""
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 16, 16)
    rois = torch.tensor([[0, 1.0, 1.0, 12.0, 9.0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = conv(x)
        out = ops.roi_align(feats, rois, 2, 1.0, 2, True)
    assert feats.dtype == torch.bfloat16 and out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ops.roi_align(feats.float(), rois, 2, 1.0, 2, True).to(torch.bfloat16))
