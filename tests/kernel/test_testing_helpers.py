"""detcore.testing's checks catch what they promise to catch (each rule broken once, by hand)."""

from __future__ import annotations

import pytest
import torch

from detcore.structures.instances import Instances
from detcore.testing import check_detections, torch_threads

META = {"ori_shape": (40, 60, 3)}


def dets(bboxes, scores, labels) -> Instances:
    return Instances(
        bboxes=torch.tensor(bboxes, dtype=torch.float32),
        scores=torch.tensor(scores),
        labels=torch.tensor(labels, dtype=torch.long),
    )


def test_valid_detections_pass():
    good = dets([[0.0, 0.0, 60.0, 40.0], [5.0, 5.0, 10.0, 10.0]], [0.9, 0.2], [2, 0])
    check_detections([good], [META], max_per_img=2, num_classes=3)


@pytest.mark.parametrize(
    "result, message",
    [
        (dets([[0.0, 0.0, 60.01, 40.0]], [0.5], [0]), r"image 0: boxes leave the original 40x60 image"),
        (dets([[-0.5, 0.0, 10.0, 10.0]], [0.5], [0]), r"boxes leave the original"),
        (dets([[0, 0, 5, 5], [0, 0, 6, 6]], [0.2, 0.9], [0, 1]), r"scores not sorted high to low"),
        (dets([[0.0, 0.0, 5.0, 5.0]], [0.5], [3]), r"labels 3\.\.3 not in \[0, 3\)"),
        (dets([[0, 0, 5, 5]] * 3, [0.5, 0.4, 0.3], [0, 0, 0]), r"3 detections, expected 1\.\.2"),
        (dets([], [], []), r"0 detections, expected 1\.\.2"),
    ],
)
def test_each_broken_rule_is_named(result, message):
    with pytest.raises(AssertionError, match=message):
        check_detections([result], [META], max_per_img=2, num_classes=3, atol=1e-3)


def test_one_result_per_image_and_long_labels():
    good = dets([[0.0, 0.0, 5.0, 5.0]], [0.5], [0])
    with pytest.raises(AssertionError, match="1 results for 2 images"):
        check_detections([good], [META, META], max_per_img=2)
    good.labels = good.labels.int()
    with pytest.raises(AssertionError, match="labels of dtype torch.int32"):
        check_detections([good], [META], max_per_img=2)


def test_torch_threads_restores_and_refuses_bad_counts():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="int >= 1, got 0"):
        with torch_threads(0):
            pass


def test_with_masks_checks_bool_masks_at_the_original_size():
    good = dets([[0.0, 0.0, 5.0, 5.0]], [0.5], [0])
    good.masks = torch.zeros(1, 40, 60, dtype=torch.bool)
    check_detections([good], [META], max_per_img=2, with_masks=True)
    with pytest.raises(AssertionError, match="image 0: no masks"):
        check_detections([dets([[0.0, 0.0, 5.0, 5.0]], [0.5], [0])], [META], max_per_img=2, with_masks=True)
    good.masks = torch.zeros(1, 40, 60, dtype=torch.uint8)
    with pytest.raises(AssertionError, match="masks of dtype torch.uint8"):
        check_detections([good], [META], max_per_img=2, with_masks=True)
    good.masks = torch.zeros(1, 60, 40, dtype=torch.bool)
    with pytest.raises(AssertionError, match=r"masks of shape \(1, 60, 40\), not \(1, 40, 60\)"):
        check_detections([good], [META], max_per_img=2, with_masks=True)
