"""box_overlaps against hand-computed IoU / IoF / GIoU values, on each backend, and native vs reference."""

from __future__ import annotations

import pytest
import torch

from detcore.ops import box_overlaps, native_available
from detcore.ops import reference as ref


def test_pairwise_modes(backend):
    a = torch.tensor([[0, 0, 10, 10], [10, 10, 20, 20.0]])
    b = torch.tensor([[5, 5, 15, 15], [0, 0, 10, 5], [30, 30, 40, 40.0]])
    iou = box_overlaps(a, b)
    torch.testing.assert_close(iou, torch.tensor([[25 / 175, 0.5, 0.0], [25 / 175, 0.0, 0.0]]))
    iof = box_overlaps(a, b, mode="iof")
    torch.testing.assert_close(iof, torch.tensor([[0.25, 0.5, 0.0], [0.25, 0.0, 0.0]]))
    giou = box_overlaps(a, b, mode="giou")
    assert giou.shape == (2, 3)
    # a0 vs b2: union 200, enclosing box (0,0)-(40,40) area 1600 -> 0 - 1400/1600
    assert giou[0, 2].item() == pytest.approx(-1400 / 1600)
    assert giou[0, 0].item() == pytest.approx(25 / 175 - (225 - 175) / 225)


def test_aligned_batched_and_empty(backend):
    a = torch.tensor([[[0, 0, 10, 10], [0, 0, 4, 4.0]]])
    b = torch.tensor([[[0, 0, 10, 5], [2, 2, 6, 6.0]]])
    torch.testing.assert_close(box_overlaps(a, b, aligned=True), torch.tensor([[0.5, 4 / 28]]))
    assert box_overlaps(a, b).shape == (1, 2, 2)
    assert box_overlaps(torch.zeros(0, 4), torch.zeros(3, 4)).shape == (0, 3)
    assert box_overlaps(torch.zeros(0, 4), torch.zeros(0, 4), aligned=True).shape == (0,)
    # zero-area boxes: eps keeps the result finite
    z = torch.tensor([[1, 1, 1, 1.0]])
    assert box_overlaps(z, z).item() == 0.0
    with pytest.raises(ValueError, match="mode"):
        box_overlaps(a, b, mode="dice")
    with pytest.raises(ValueError, match="aligned"):
        box_overlaps(torch.zeros(2, 4), torch.zeros(3, 4), aligned=True)


def test_aligned_2d_hand_computed(backend):
    a = torch.tensor([[0, 0, 10, 10], [0, 0, 4, 4.0], [0, 0, 2, 2.0]])
    b = torch.tensor([[0, 0, 10, 5], [2, 2, 6, 6.0], [3, 3, 4, 4.0]])
    torch.testing.assert_close(box_overlaps(a, b, aligned=True), torch.tensor([0.5, 4 / 28, 0.0]))
    # iof: intersection over the first box's area; giou of the disjoint pair: union 4 + 1, enclosing box
    # (0,0)-(4,4) of area 16 -> 0 - (16 - 5) / 16
    torch.testing.assert_close(box_overlaps(a, b, "iof", aligned=True), torch.tensor([0.5, 0.25, 0.0]))
    assert box_overlaps(a, b, "giou", aligned=True)[2].item() == pytest.approx(-11 / 16)


@pytest.mark.skipif(not native_available(), reason="detcore_native is not installed")
@pytest.mark.parametrize("mode", ["iou", "iof", "giou"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_matches_reference(force, mode, dtype):
    gen = torch.Generator().manual_seed(3)
    xy = torch.rand(301, 2, generator=gen) * 100
    a = torch.cat([xy, xy + torch.rand(301, 2, generator=gen) * 40], 1).to(dtype)
    xy = torch.rand(77, 2, generator=gen) * 100
    b = torch.cat([xy, xy + torch.rand(77, 2, generator=gen) * 40], 1).to(dtype)
    a[::9, 2:] = a[::9, :2]  # zero-area boxes
    b[5] = a[7]  # an identical pair
    force("native")
    got = box_overlaps(a, b, mode)
    got_aligned = box_overlaps(a[:77], b, mode, aligned=True)
    assert got.dtype == dtype and got.shape == (301, 77)
    torch.testing.assert_close(got, ref.box_overlaps(a, b, mode, False, 1e-6))
    torch.testing.assert_close(got_aligned, ref.box_overlaps(a[:77], b, mode, True, 1e-6))
    assert got[7, 5].item() == pytest.approx(1.0)


def test_gradients_flow_through_any_backend(backend):
    """Inputs that need a gradient (the IoU losses) take the differentiable path on every backend."""
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0, 10.0, 5.0]])
    (1 - box_overlaps(pred, target, aligned=True)).sum().backward()
    # d IoU / d y2 of pred: IoU = 50 / (10 * y2) -> -50 / (10 * 10^2) = -0.05, so d loss / d y2 = 0.05
    assert pred.grad[0, 3].item() == pytest.approx(0.05)
