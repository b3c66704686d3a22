import numpy as np
import pytest
import torch

from detcore.structures import Instances
from detcore.visualization import class_color, show_result


def test_boxes_are_drawn_in_the_class_colour_and_low_scores_are_left_out():
    image = np.zeros((60, 80, 3), np.uint8)
    inst = Instances(
        bboxes=torch.tensor([[10.0, 20.0, 50.0, 55.0], [60.0, 5.0, 75.0, 15.0]]),
        labels=torch.tensor([1, 2]),
        scores=torch.tensor([0.9, 0.1]),
    )
    out = show_result(image, inst, ["a", "b", "c"], score_thr=0.3, thickness=1)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert tuple(out[40, 10]) == class_color(1)  # left edge of the kept box, below its label
    assert tuple(out[40, 50]) == class_color(1)  # right edge
    assert out[10, 60:76].sum() == 0  # the 0.1-score box is not drawn
    assert out[40, 30].sum() == 0  # inside the box stays untouched (no mask)


def test_masks_are_blended_and_bgr_input_is_converted():
    image = np.zeros((40, 40, 3), np.uint8)
    image[..., 0] = 200  # blue in BGR
    masks = torch.zeros(1, 40, 40, dtype=torch.bool)
    masks[0, 20:35, 20:35] = True  # below the label drawn at the box's top-left corner
    inst = Instances(bboxes=torch.tensor([[0.0, 0.0, 39.0, 39.0]]), labels=torch.tensor([0]), masks=masks)
    out = show_result(image, inst, mask_alpha=0.5, thickness=1)
    color = np.array(class_color(0), np.float32)
    expected = np.round(np.array([0, 0, 200], np.float32) * 0.5 + color * 0.5)
    assert np.array_equal(out[30, 30], expected.astype(np.uint8))
    assert tuple(out[30, 10]) == (0, 0, 200)  # outside the mask: the BGR blue became RGB blue


def test_class_colours_are_stable_and_distinct():
    colours = [class_color(i) for i in range(10)]
    assert colours == [class_color(i) for i in range(10)]
    assert len(set(colours)) == 10


def test_mask_shape_mismatch_is_an_error():
    inst = Instances(
        bboxes=torch.zeros(1, 4),
        labels=torch.zeros(1, dtype=torch.long),
        masks=torch.zeros(1, 5, 5, dtype=torch.bool),
    )
    with pytest.raises(ValueError, match="do not match 1 instances on an image of \\(10, 10\\)"):
        show_result(np.zeros((10, 10, 3), np.uint8), inst)


def test_the_most_confident_of_overlapping_boxes_is_drawn_last():
    image = np.zeros((60, 80, 3), np.uint8)
    box = [10.0, 20.0, 50.0, 55.0]
    inst = Instances(
        bboxes=torch.tensor([box, box]), labels=torch.tensor([1, 2]), scores=torch.tensor([0.9, 0.4])
    )
    out = show_result(image, inst, score_thr=0.3, thickness=1)
    assert tuple(out[40, 10]) == class_color(1)  # the 0.9 box's colour wins on the shared edge


def test_a_box_with_swapped_corners_is_drawn_where_it_lies():
    image = np.zeros((60, 80, 3), np.uint8)
    inst = Instances(bboxes=torch.tensor([[50.0, 55.0, 10.0, 20.0]]), labels=torch.tensor([1]))
    out = show_result(image, inst, thickness=1)  # x2 < x1 and y2 < y1: an untrained model's output
    assert tuple(out[40, 10]) == tuple(out[40, 50]) == class_color(1)
    assert out[40, 30].sum() == 0
