"""``Boxes`` against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detcore.structures import Boxes
from detcore.structures.boxes import clip_boxes, cxcywh_to_xyxy, scale_factor_tensor, xyxy_to_cxcywh

# a 10x20 box, a 4x4 box partly left of the image, an empty (zero-width) box
B = [[10.0, 20.0, 20.0, 40.0], [-2.0, 5.0, 2.0, 9.0], [5.0, 5.0, 5.0, 8.0]]


def boxes() -> Boxes:
    return Boxes(torch.tensor(B))


def test_construction_and_container():
    assert Boxes(B).dtype == torch.float32 and len(Boxes(B)) == 3
    assert Boxes([[1, 2, 3, 4]]).dtype == torch.float32  # integers become float
    assert Boxes(torch.zeros(0)).tensor.shape == (0, 4)
    arr = np.array(B, dtype=np.float64)
    shared = Boxes(arr)
    assert shared.dtype == torch.float64
    arr[0, 0] = 11.0
    assert shared.tensor[0, 0] == 11.0  # the array is shared, not copied
    with pytest.raises(ValueError, match=r"\(N, 4\).*\(2, 3\)"):
        Boxes(torch.zeros(2, 3))
    b = boxes()
    assert b[1].tensor.tolist() == [B[1]] and len(b[torch.tensor([True, False, True])]) == 2
    assert Boxes.cat([b, b[0]]).tensor.tolist() == B + [B[0]]
    with pytest.raises(TypeError, match="item 1"):
        Boxes.cat([b, torch.zeros(1, 4)])


def test_measures():
    b = boxes()
    assert b.widths.tolist() == [10.0, 4.0, 0.0]
    assert b.heights.tolist() == [20.0, 4.0, 3.0]
    assert b.area.tolist() == [200.0, 16.0, 0.0]
    assert b.centers.tolist() == [[15.0, 30.0], [0.0, 7.0], [5.0, 6.5]]
    assert b.nonempty().tolist() == [True, True, False]
    assert b.nonempty(threshold=4.0).tolist() == [True, False, False]  # 4 is not > 4


def test_clip_to_the_image():
    b = boxes().clip((30, 15, 3))  # h = 30, w = 15
    assert b.tensor.tolist() == [[10.0, 20.0, 15.0, 30.0], [0.0, 5.0, 2.0, 9.0], [5.0, 5.0, 5.0, 8.0]]
    original = boxes()
    original.clip((30, 15))
    assert original.tensor.tolist() == B  # a new Boxes; the input is unchanged


def test_scale_unscale_translate():
    assert boxes().scale(2.0, 0.5).tensor[0].tolist() == [20.0, 10.0, 40.0, 20.0]
    assert boxes().unscale([2.0, 4.0, 2.0, 4.0]).tensor[0].tolist() == [5.0, 5.0, 10.0, 10.0]
    assert boxes().unscale(2.0).tensor[0].tolist() == [5.0, 10.0, 10.0, 20.0]
    assert boxes().translate(3.0, -5.0).tensor[1].tolist() == [1.0, 0.0, 5.0, 4.0]


def test_flip_in_each_direction():
    shape = (50, 100)  # h, w
    b = Boxes([[10.0, 5.0, 30.0, 25.0]])
    assert b.flip(shape, "horizontal").tensor.tolist() == [[70.0, 5.0, 90.0, 25.0]]
    assert b.flip(shape, "vertical").tensor.tolist() == [[10.0, 25.0, 30.0, 45.0]]
    assert b.flip(shape, "diagonal").tensor.tolist() == [[70.0, 25.0, 90.0, 45.0]]
    assert b.flip(shape).flip(shape).tensor.tolist() == b.tensor.tolist()
    with pytest.raises(ValueError, match="flip direction"):
        b.flip(shape, "sideways")


def test_pairwise_iou():
    a = Boxes([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
    o = Boxes([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    # overlap 50 over union 150; disjoint; identical; the small box lies inside the first and the third
    expected = [[1 / 3, 0.0, 1.0], [0.0, 0.0, 4 / 100]]
    torch.testing.assert_close(a.iou(o), torch.tensor(expected))
    torch.testing.assert_close(a.iou(o, mode="iof")[1], torch.tensor([0.0, 0.0, 1.0]))


def test_cxcywh_conversions():
    b = boxes()
    assert b.cxcywh.tolist() == [[15.0, 30.0, 10.0, 20.0], [0.0, 7.0, 4.0, 4.0], [5.0, 6.5, 0.0, 3.0]]
    assert Boxes.from_cxcywh(b.cxcywh).tensor.tolist() == B
    batched = torch.tensor(B).view(1, 3, 4)
    assert torch.equal(cxcywh_to_xyxy(xyxy_to_cxcywh(batched)), batched)


def test_clip_boxes_of_a_batch_and_class_specific_boxes():
    per_class = torch.tensor([[-1.0, -1.0, 50.0, 50.0, 3.0, 4.0, 5.0, 60.0]])  # (N, 4k), k = 2
    assert clip_boxes(per_class, (40, 30)).tolist() == [[0.0, 0.0, 30.0, 40.0, 3.0, 4.0, 5.0, 40.0]]
    batch = torch.tensor([[[-1.0, 2.0, 50.0, 50.0]], [[-1.0, 2.0, 50.0, 50.0]]])
    out = clip_boxes(batch, [(40, 30), (10, 20)])
    assert out.tolist() == [[[0.0, 2.0, 30.0, 40.0]], [[0.0, 2.0, 20.0, 10.0]]]
    with pytest.raises(ValueError, match="1 max_shapes for a batch of 2"):
        clip_boxes(batch, torch.tensor([[40, 30]]))


def test_scale_factor_forms():
    like = torch.zeros(1)
    assert scale_factor_tensor((2.0, 3.0), like).tolist() == [2.0, 3.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="scale_factor"):
        scale_factor_tensor([1.0, 2.0, 3.0], like)
