"""Native kernels against the PyTorch reference: values and gradients on random and corner cases."""

from __future__ import annotations

import pytest
import torch

from detcore import ops
from detcore.ops import native_available
from detcore.ops import reference as ref

pytestmark = pytest.mark.skipif(
    not native_available(),
    reason="detcore_native is not installed (pip install --no-build-isolation ./native)",
)


def _boxes(n: int, gen: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 3
    wh[::7] = 0  # some zero-area boxes
    return torch.cat([xy, xy + wh], dim=1)


def _run(force, name, fn, *args, **kwargs):
    force(name)
    return fn(*args, **kwargs)


@pytest.mark.parametrize("n", [1, 37, 700])
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.7])
def test_nms_matches_reference(force, n, thr):
    gen = torch.Generator().manual_seed(n)
    boxes = _boxes(n, gen)
    dup = boxes[n // 2 :: 5].shape[0]
    boxes[n // 2 :: 5] = boxes[:dup].clone()  # exact duplicates
    scores = torch.randint(0, 20, (n,), generator=gen).float() / 20  # many ties
    got = _run(force, "native", ops.nms, boxes, scores, thr)
    want = _run(force, "reference", ops.nms, boxes, scores, thr)
    assert torch.equal(got, want)


def test_nms_double_and_batched_match(force):
    gen = torch.Generator().manual_seed(3)
    boxes = _boxes(300, gen).double()
    scores = torch.rand(300, generator=gen, dtype=torch.float64)
    idxs = torch.randint(0, 5, (300,), generator=gen)
    for fn, args in ((ops.nms, (boxes, scores, 0.5)), (ops.batched_nms, (boxes, scores, idxs, 0.5))):
        assert torch.equal(_run(force, "native", fn, *args), _run(force, "reference", fn, *args))


@pytest.mark.parametrize("method", ["linear", "gaussian", "naive"])
def test_soft_nms_matches_reference(force, method):
    gen = torch.Generator().manual_seed(5)
    boxes = _boxes(120, gen)
    scores = torch.rand(120, generator=gen)
    got = _run(force, "native", ops.soft_nms, boxes, scores, 0.3, 0.5, 1e-3, method)
    want = _run(force, "reference", ops.soft_nms, boxes, scores, 0.3, 0.5, 1e-3, method)
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0])


def _roi_case(gen: torch.Generator, dtype=torch.float64):
    x = torch.randn(2, 3, 12, 15, generator=gen, dtype=dtype)
    k = 24
    xy = torch.rand(k, 2, generator=gen, dtype=dtype) * 70 - 10  # some start outside the map
    wh = torch.rand(k, 2, generator=gen, dtype=dtype) * 40
    wh[0] = 0  # degenerate roi
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=gen).to(dtype), xy, xy + wh], dim=1)
    rois[1] = torch.tensor([1, 200, 200, 260, 250], dtype=dtype)  # fully outside
    return x, rois


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 3])
def test_roi_align_matches_reference(force, aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(sampling_ratio + 10 * aligned)
    x, rois = _roi_case(gen)
    outs, grads = [], []
    for name in ("native", "reference"):
        xi = x.clone().requires_grad_()
        out = _run(force, name, ops.roi_align, xi, rois, (3, 4), 0.25, sampling_ratio, aligned)
        (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outs.append(out)
        grads.append(xi.grad)
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_roi_align_float32_matches(force):
    x, rois = _roi_case(torch.Generator().manual_seed(1), torch.float32)
    got = _run(force, "native", ops.roi_align, x, rois, 7, 0.125, 0, True)
    want = _run(force, "reference", ops.roi_align, x, rois, 7, 0.125, 0, True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_roi_pool_matches_reference(force):
    x, rois = _roi_case(torch.Generator().manual_seed(2))
    outs, grads = [], []
    for name in ("native", "reference"):
        xi = x.clone().requires_grad_()
        out = _run(force, name, ops.roi_pool, xi, rois, (2, 3), 0.25)
        (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outs.append(out)
        grads.append(xi.grad)
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize(
    "cfg",
    [
        dict(stride=1, padding=1, dilation=1, groups=1, deform_groups=1),
        dict(stride=2, padding=2, dilation=2, groups=2, deform_groups=2),
        dict(stride=(1, 2), padding=(0, 1), dilation=1, groups=1, deform_groups=4),
    ],
)
@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_matches_reference(force, cfg, modulated):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 9, 11, generator=gen, dtype=torch.float64)
    w = torch.randn(6, 4 // cfg["groups"], 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    probe = torch.nn.functional.conv2d(
        x, w, None, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"]
    )
    ho, wo = probe.shape[2:]
    dg = cfg["deform_groups"]
    off = (
        torch.randn(2, 2 * dg * 9, ho, wo, generator=gen, dtype=torch.float64) * 3
    )  # reaches outside the map
    mask = torch.rand(2, dg * 9, ho, wo, generator=gen, dtype=torch.float64)
    results = []
    for name in ("native", "reference"):
        leaves = [t.clone().requires_grad_() for t in (x, off, mask, w, b)]
        xi, oi, mi, wi, bi = leaves
        force(name)
        if modulated:
            out = ops.modulated_deform_conv2d(xi, oi, mi, wi, bi, **cfg)
        else:
            out = ops.deform_conv2d(xi, oi, wi, bi, **cfg)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append([out] + [t.grad for t in leaves])
    for got, want in zip(*results):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want)


def test_focal_loss_matches_reference(force):
    gen = torch.Generator().manual_seed(9)
    logits = torch.randn(50, 7, generator=gen, dtype=torch.float64) * 4
    targets = torch.randint(0, 8, (50,), generator=gen)
    weight = torch.rand(50, generator=gen, dtype=torch.float64)
    results = []
    for name in ("native", "reference"):
        li = logits.clone().requires_grad_()
        force(name)
        loss = ops.sigmoid_focal_loss(li, targets, 1.5, 0.3, weight, "none")
        (loss * torch.arange(loss.numel(), dtype=loss.dtype).view_as(loss)).sum().backward()
        results.append((loss, li.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


@pytest.mark.parametrize("gamma", [2.0, 1.5, 0.0])
def test_focal_loss_float32_kernel_matches_float64_reference(force, gamma):
    """The float32 native path uses its own vectorised exp/log1p: check it against the float64 reference
    over the whole range of logits (saturated, tiny, exactly zero) and with a background-only row."""
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(300, 81, generator=gen) * 6
    logits[0, :8] = torch.tensor([0.0, -0.0, 1e-6, -1e-6, 30.0, -30.0, 95.0, -95.0])
    targets = torch.randint(0, 82, (300,), generator=gen)
    targets[0] = 81  # background row: every class is a negative
    targets[1] = 0
    weight = torch.rand(300, generator=gen)
    upstream = torch.rand(300, 81, generator=gen)
    force("reference")
    l64 = logits.double().requires_grad_()
    want = ops.sigmoid_focal_loss(l64, targets, gamma, 0.25, weight.double(), "none")
    (want * upstream.double()).sum().backward()
    force("native")
    l32 = logits.clone().requires_grad_()
    got = ops.sigmoid_focal_loss(l32, targets, gamma, 0.25, weight, "none")
    (got * upstream).sum().backward()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want.detach(), rtol=2e-6, atol=1e-7)
    torch.testing.assert_close(l32.grad.double(), l64.grad, rtol=2e-6, atol=1e-7)


def test_reference_functions_are_what_the_reference_backend_runs(force):
    """The reference backend must run detcore.ops.reference (guards against a silently native fallback)."""
    x, rois = _roi_case(torch.Generator().manual_seed(4))
    force("reference")
    torch.testing.assert_close(
        ops.roi_align(x, rois, 2, 0.5, 2, True), ref.roi_align(x, rois, (2, 2), 0.5, 2, True)
    )


def test_native_results_do_not_depend_on_thread_count(force):
    """The CPU kernels split work across OpenMP threads; each output element must still be computed the same
    way, so one and two threads give bit-identical results (forward and backward)."""
    gen = torch.Generator().manual_seed(21)
    boxes = _boxes(6000, gen, size=800.0)
    scores = torch.rand(6000, generator=gen)
    feats = torch.randn(2, 16, 40, 48, generator=gen)
    rois = torch.cat([torch.randint(0, 2, (300, 1), generator=gen).float(), _boxes(300, gen, size=180.0)], 1)
    x = torch.randn(2, 8, 12, 14, generator=gen)
    w = torch.randn(8, 8, 3, 3, generator=gen)
    off = torch.randn(2, 18, 12, 14, generator=gen)
    mask = torch.rand(2, 9, 12, 14, generator=gen)
    logits = torch.randn(3000, 20, generator=gen)
    labels = torch.randint(0, 21, (3000,), generator=gen)
    force("native")

    def run():
        leaves = [t.clone().requires_grad_() for t in (feats, x, off, mask, w, logits)]
        f, xi, oi, mi, wi, li = leaves
        outs = [ops.nms(boxes, scores, 0.5), ops.box_overlaps(boxes[:500], boxes[:300], "giou")]
        outs.append(ops.roi_align(f, rois, 7, 0.25, 0, True))
        outs.append(ops.modulated_deform_conv2d(xi, oi, mi, wi, None, 1, 1))
        outs.append(ops.sigmoid_focal_loss(li, labels, reduction="none"))
        sum(o.square().sum() for o in outs[2:]).backward()
        return outs + [t.grad for t in leaves]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
