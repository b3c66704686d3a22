"""box_overlaps against hand-computed IoU / IoF / GIoU values."""

from __future__ import annotations

import pytest
import torch

from detcore.ops import box_overlaps


def test_pairwise_modes():
    a = torch.tensor([[0, 0, 10, 10], [10, 10, 20, 20.0]])
    b = torch.tensor([[5, 5, 15, 15], [0, 0, 10, 5], [30, 30, 40, 40.0]])
    iou = box_overlaps(a, b)
    torch.testing.assert_close(iou, torch.tensor([[25 / 175, 0.5, 0.0], [25 / 175, 0.0, 0.0]]))
    iof = box_overlaps(a, b, mode="iof")
    torch.testing.assert_close(iof, torch.tensor([[0.25, 0.5, 0.0], [0.25, 0.0, 0.0]]))
    giou = box_overlaps(a, b, mode="giou")
    # a0 vs b2: union 200, enclosing box (0,0)-(40,40) area 1600 -> 0 - 1400/1600
    assert giou[0, 2].item() == pytest.approx(-1400 / 1600)
    assert giou[0, 0].item() == pytest.approx(25 / 175 - (225 - 175) / 225)


def test_aligned_batched_and_empty():
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
