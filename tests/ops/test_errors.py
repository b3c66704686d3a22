"""Bad input gives a clear Python exception (never a crash), in both backends."""

from __future__ import annotations

import pytest
import torch

from detcore import ops


def test_nms_bad_inputs(backend):
    with pytest.raises(ValueError, match=r"boxes.*\(N, 4\)"):
        ops.nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        ops.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(TypeError, match="floating-point"):
        ops.nms(torch.zeros(3, 4, dtype=torch.long), torch.zeros(3), 0.5)
    with pytest.raises(TypeError, match="torch.Tensor"):
        ops.nms([[0, 0, 1, 1]], torch.zeros(1), 0.5)
    with pytest.raises(ValueError, match="method"):
        ops.soft_nms(torch.zeros(1, 4), torch.ones(1), method="cubic")
    with pytest.raises(ValueError, match="idxs"):
        ops.batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="nms_cfg type"):
        ops.multiclass_nms(torch.zeros(2, 4), torch.ones(2, 3), 0.1, {"type": "fancy"})
    with pytest.raises(ValueError, match="columns"):
        ops.multiclass_nms(torch.zeros(2, 6), torch.ones(2, 3), 0.1, {"type": "nms"})


def test_roi_bad_inputs(backend):
    x = torch.randn(2, 3, 8, 8)
    for fn in (ops.roi_align, ops.roi_pool):
        with pytest.raises(ValueError, match=r"rois.*\(K, 5\)"):
            fn(x, torch.zeros(4, 4), 2)
        with pytest.raises(ValueError, match=r"input.*\(B, C, H, W\)"):
            fn(torch.randn(3, 8, 8), torch.zeros(1, 5), 2)
        with pytest.raises(TypeError, match="dtype"):
            fn(x, torch.zeros(1, 5, dtype=torch.float64), 2)
        with pytest.raises(ValueError, match="batch indices"):
            fn(x, torch.tensor([[2.0, 0, 0, 4, 4]]), 2)
        with pytest.raises(ValueError, match="output_size"):
            fn(x, torch.zeros(1, 5), 0)
        with pytest.raises(TypeError, match="floating-point"):
            fn(x.long(), torch.zeros(1, 5).long(), 2)


def test_deform_bad_inputs(backend):
    x = torch.randn(1, 4, 6, 6)
    w = torch.randn(4, 4, 3, 3)
    with pytest.raises(ValueError, match="offset"):
        ops.deform_conv2d(x, torch.zeros(1, 17, 4, 4), w)
    with pytest.raises(ValueError, match="mask"):
        ops.modulated_deform_conv2d(x, torch.zeros(1, 18, 4, 4), torch.zeros(1, 8, 4, 4), w)
    with pytest.raises(ValueError, match="deform_groups"):
        ops.deform_conv2d(x, torch.zeros(1, 54, 4, 4), w, deform_groups=3)
    with pytest.raises(ValueError, match="groups"):
        ops.deform_conv2d(x, torch.zeros(1, 18, 4, 4), w, groups=2)
    with pytest.raises(ValueError, match="bias"):
        ops.deform_conv2d(x, torch.zeros(1, 18, 4, 4), w, torch.zeros(3))
    with pytest.raises(TypeError, match="dtype"):
        ops.deform_conv2d(x, torch.zeros(1, 18, 4, 4, dtype=torch.float64), w)


def test_focal_bad_inputs(backend):
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"targets.*\[0, 3\]"):
        ops.sigmoid_focal_loss(logits, torch.tensor([0, 1, 4, 0]))
    with pytest.raises(TypeError, match="integer"):
        ops.sigmoid_focal_loss(logits, torch.zeros(4))
    with pytest.raises(ValueError, match="targets"):
        ops.sigmoid_focal_loss(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        ops.sigmoid_focal_loss(logits, torch.zeros(4, dtype=torch.long), reduction="avg")
    with pytest.raises(ValueError, match="weight"):
        ops.sigmoid_focal_loss(logits, torch.zeros(4, dtype=torch.long), weight=torch.ones(3))
    empty = ops.sigmoid_focal_loss(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), reduction="none")
    assert empty.shape == (0, 3)
    assert ops.sigmoid_focal_loss(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).item() == 0


def test_env_var_validation(monkeypatch):
    monkeypatch.setenv("DETCORE_OPS", "fastest")
    with pytest.raises(ValueError, match="DETCORE_OPS"):
        ops.backend()
    monkeypatch.setenv("DETCORE_OPS", "native")
    if not ops.native_available():
        with pytest.raises(RuntimeError, match="pip install --no-build-isolation ./native"):
            ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5)
    else:
        assert ops.backend() == "native"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_rois_are_refused(backend, bad):
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0, 1, 1, 5, 5], [0, 2, bad, 6, 6.0]])
    for fn in (ops.roi_align, ops.roi_pool):
        with pytest.raises(ValueError, match=r"'rois' must be finite, got .* at row 1"):
            fn(x, rois, 2)


def test_native_kernels_survive_nan_inputs():
    """Called directly (no front checks), NaN rois or offsets must not index outside the feature map."""
    if not ops.native_available():
        pytest.skip("detcore_native is not installed")
    x = torch.randn(1, 2, 8, 8)
    nan = float("nan")
    rois = torch.tensor([[0, nan, 1, 5, 5], [0, 1, 1, nan, nan], [0, -1e30, -1e30, 1e30, 1e30]])
    for sampling_ratio in (0, 2):
        out = torch.ops.detcore.roi_align(x, rois, 1.0, 2, 2, sampling_ratio, True)
        assert torch.equal(out, torch.zeros_like(out))  # every sample is outside the map
    pooled, argmax = torch.ops.detcore.roi_pool(x, rois, 1.0, 2, 2)
    assert pooled.shape == (3, 2, 2, 2) and bool(torch.isfinite(pooled).all())
    assert bool(((argmax >= -1) & (argmax < 64)).all())  # indices stay inside the 8x8 plane
    off = torch.zeros(1, 18, 6, 6)
    off[0, 0, 2, 3] = nan  # tap 0's dy at output (2, 3)
    w = torch.randn(3, 2, 3, 3)
    x.requires_grad_()
    off.requires_grad_()
    out = ops.deform_conv2d(x, off, w)
    want_nan = torch.zeros(1, 3, 6, 6, dtype=torch.bool)
    want_nan[0, :, 2, 3] = True  # NaN propagates to that output position only, as in the reference
    assert torch.equal(out.isnan(), want_nan)
    out.sum().backward()
    # the NaN position scatters nothing to the input (as in the reference); its offset gradients (dy and dx
    # of that tap) are NaN, every other one stays finite
    assert not x.grad.isnan().any()
    assert off.grad.isnan().nonzero().tolist() == [[0, 0, 2, 3], [0, 1, 2, 3]]


def test_native_ops_check_arguments_directly():
    """The compiled ops validate their arguments too (callers may use torch.ops.detcore directly)."""
    if not ops.native_available():
        pytest.skip("detcore_native is not installed")
    with pytest.raises(RuntimeError, match=r"rois must have shape \(K, 5\)"):
        torch.ops.detcore.roi_align(torch.randn(1, 1, 4, 4), torch.zeros(2, 4), 1.0, 2, 2, 0, True)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.ops.detcore.nms(torch.zeros(2, 4), torch.zeros(2, dtype=torch.float64), 0.5)
    with pytest.raises(RuntimeError, match="offset must have shape"):
        torch.ops.detcore.deform_conv2d(
            torch.randn(1, 2, 5, 5),
            torch.randn(2, 2, 3, 3),
            torch.zeros(1, 18, 2, 2),
            None,
            None,
            1,
            1,
            0,
            0,
            1,
            1,
            1,
            1,
        )
    with pytest.raises(RuntimeError, match=r"bboxes2 must have shape \(N, 4\)"):
        torch.ops.detcore.box_overlaps(torch.zeros(2, 4), torch.zeros(3, 5), 0, False, 1e-6)
    with pytest.raises(RuntimeError, match="mode must be 0"):
        torch.ops.detcore.box_overlaps(torch.zeros(2, 4), torch.zeros(3, 4), 7, False, 1e-6)
    with pytest.raises(RuntimeError, match="aligned=True needs as many boxes"):
        torch.ops.detcore.box_overlaps(torch.zeros(2, 4), torch.zeros(3, 4), 0, True, 1e-6)
    # an out-of-range batch index is zeros, not a crash
    out = torch.ops.detcore.roi_align(
        torch.randn(1, 1, 4, 4), torch.tensor([[5.0, 0, 0, 2, 2]]), 1.0, 2, 2, 0, True
    )
    assert torch.count_nonzero(out) == 0
