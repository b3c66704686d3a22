"""GPU parity (CUDA kernels vs the CPU kernels and the reference) and torchvision comparisons.

These run where they can: torchvision only imports on a machine with a matching (CUDA) PyTorch, and the
CUDA tests need a GPU and a detcore_native built with CUDA. Elsewhere they skip with the reason.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from detcore import ops


def _torchvision():
    try:
        return importlib.import_module("torchvision.ops")
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
        pytest.skip(f"torchvision.ops does not import here ({type(exc).__name__}: {exc})")


def _cuda_native():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if not ops.native_available():
        pytest.skip("detcore_native is not installed")
    import detcore_native

    if not detcore_native.cuda_built():
        pytest.skip("detcore_native was built without CUDA")


def _case(device="cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 32, 40, generator=g, dtype=dtype)
    xy = torch.rand(64, 2, generator=g, dtype=dtype) * 150 - 10
    wh = torch.rand(64, 2, generator=g, dtype=dtype) * 80
    rois = torch.cat([torch.randint(0, 2, (64, 1), generator=g).to(dtype), xy, xy + wh], 1)
    return x.to(device), rois.to(device)


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_and_pool_match_torchvision(backend, aligned):
    tv = _torchvision()
    x, rois = _case(dtype=torch.float64)
    torch.testing.assert_close(
        ops.roi_align(x, rois, 7, 0.25, 0, aligned), tv.roi_align(x, rois, 7, 0.25, 0, aligned)
    )
    torch.testing.assert_close(ops.roi_pool(x, rois, 7, 0.25), tv.roi_pool(x, rois, 7, 0.25))


def test_nms_and_deform_conv_match_torchvision(backend):
    tv = _torchvision()
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(500, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + torch.rand(500, 2, generator=g) * 60], 1)
    scores = torch.rand(500, generator=g)
    assert torch.equal(ops.nms(boxes, scores, 0.5), tv.nms(boxes, scores, 0.5))
    x = torch.randn(1, 4, 9, 9, generator=g, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64)
    off = torch.randn(1, 36, 9, 9, generator=g, dtype=torch.float64)
    mask = torch.rand(1, 18, 9, 9, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        ops.modulated_deform_conv2d(x, off, mask, w, None, 1, 1, 1, 2, 2),
        tv.deform_conv2d(x, off, w, None, 1, 1, 1, mask),
    )


def test_cuda_kernels_match_cpu(monkeypatch):
    _cuda_native()
    monkeypatch.setenv("DETCORE_OPS", "native")
    x, rois = _case(dtype=torch.float64)
    xc, rc = x.cuda().requires_grad_(), rois.cuda()
    xh = x.clone().requires_grad_()
    for fn, args in (
        (ops.roi_align, (7, 0.25, 0, True)),
        (ops.roi_align, (14, 0.25, 2, False)),
        (ops.roi_pool, (7, 0.25)),
    ):
        a, b = fn(xc, rc, *args), fn(xh, rois, *args)
        torch.testing.assert_close(a.cpu(), b)
        a.sum().backward()
        b.sum().backward()
        torch.testing.assert_close(xc.grad.cpu(), xh.grad)
        xc.grad, xh.grad = None, None
    g = torch.Generator().manual_seed(2)
    xy = torch.rand(3000, 2, generator=g) * 500
    boxes = torch.cat([xy, xy + torch.rand(3000, 2, generator=g) * 100], 1)
    scores = torch.rand(3000, generator=g)
    assert torch.equal(ops.nms(boxes.cuda(), scores.cuda(), 0.5).cpu(), ops.nms(boxes, scores, 0.5))
    d1, k1 = ops.soft_nms(boxes[:300].cuda(), scores[:300].cuda(), method="gaussian")
    d2, k2 = ops.soft_nms(boxes[:300], scores[:300], method="gaussian")
    assert torch.equal(k1.cpu(), k2)
    torch.testing.assert_close(d1.cpu(), d2)
    inp = torch.randn(2, 4, 9, 11, generator=g, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64)
    off = torch.randn(2, 36, 9, 11, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 18, 9, 11, generator=g, dtype=torch.float64)
    grads = []
    for dev in ("cuda", "cpu"):
        leaves = [t.to(dev).requires_grad_() for t in (inp, off, mask, w)]
        out = ops.modulated_deform_conv2d(*leaves, None, 1, 1, 1, 2, 2)
        (out * out).sum().backward()
        grads.append([out.detach().cpu()] + [t.grad.cpu() for t in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    logits = torch.randn(100, 80, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 81, (100,), generator=g)
    lc = logits.cuda().requires_grad_()
    lh = logits.clone().requires_grad_()
    a = ops.sigmoid_focal_loss(lc, targets.cuda(), reduction="sum")
    b = ops.sigmoid_focal_loss(lh, targets, reduction="sum")
    a.backward()
    b.backward()
    torch.testing.assert_close(a.cpu(), b)
    torch.testing.assert_close(lc.grad.cpu(), lh.grad)
    for mode in ("iou", "iof", "giou"):
        torch.testing.assert_close(
            ops.box_overlaps(boxes[:500].cuda(), boxes[:70].cuda(), mode).cpu(),
            ops.box_overlaps(boxes[:500], boxes[:70], mode),
        )
    # float32 focal loss: the CUDA kernel (libm) against the CPU's vectorised exp/log1p
    lc = logits.float().cuda().requires_grad_()
    lh = logits.float().requires_grad_()
    ops.sigmoid_focal_loss(lc, targets.cuda(), reduction="sum").backward()
    ops.sigmoid_focal_loss(lh, targets, reduction="sum").backward()
    torch.testing.assert_close(lc.grad.cpu(), lh.grad)


def test_box_overlaps_match_torchvision(backend):
    tv = _torchvision()
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(200, 2, generator=g) * 300
    boxes = torch.cat([xy, xy + 1 + torch.rand(200, 2, generator=g) * 90], 1)
    torch.testing.assert_close(ops.box_overlaps(boxes, boxes[:40]), tv.box_iou(boxes, boxes[:40]))
    torch.testing.assert_close(
        ops.box_overlaps(boxes, boxes[:40], "giou"), tv.generalized_box_iou(boxes, boxes[:40])
    )
