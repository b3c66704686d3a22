"""The worked example of docs/writing-a-detector.md (docs/examples/tiny_center_head.py) trains, predicts
and merges test-time augmentations, composed in Python and built from a config table."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

from detcore.models.detectors.single_stage import SingleStageDetector
from detcore.testing import check_detections, check_loss_falls, fake_batch

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "tiny_center_head.py"
TEST_CFG = {"topk": 10, "score_thr": 0.0, "max_per_img": 10}


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("tiny_center_head", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _detector(example, num_classes=3, test_cfg=TEST_CFG):
    torch.manual_seed(0)
    head = example.TinyCenterHead(num_classes=num_classes, in_channels=16, test_cfg=test_cfg)
    return SingleStageDetector(backbone=example.TinyBackbone(16), bbox_head=head)


def test_targets_peak_at_each_center(example, one_thread):
    head = example.TinyCenterHead(num_classes=3, in_channels=16)
    batch = fake_batch(1, (64, 64), num_classes=3, boxes_per_image=1, seed=3)
    gt = batch["gt_instances"][0]
    center, wh, offset, weight = head.get_targets(batch["gt_instances"], torch.Size((1, 3, 16, 16)), (64, 64))
    x1, y1, x2, y2 = (gt.bboxes[0] / 4).tolist()  # stride 4
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    label = int(gt.labels[0])
    assert center[0, label, int(cy), int(cx)] == 1 and int(center.eq(1).sum()) == 1
    assert wh[0, :, int(cy), int(cx)].tolist() == pytest.approx([x2 - x1, y2 - y1])
    assert offset[0, :, int(cy), int(cx)].tolist() == pytest.approx([cx - int(cx), cy - int(cy)])
    assert int(weight.sum()) == 2


def test_trains_and_predicts(example, one_thread):
    model = _detector(example)
    batch = fake_batch(2, [(64, 64), (56, 48)], num_classes=3, boxes_per_image=[2, 1], scale_factor=2.0)
    check_loss_falls(model, batch, iterations=30, lr=0.01, optimizer="adam",
                     keys=("loss_center", "loss_wh", "loss_offset"))
    model.eval()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
    check_detections(results, batch["img_metas"], max_per_img=10, num_classes=3)
    # after training on the batch, the best detection of image 1 is its object
    gt = batch["gt_instances"][1]
    best = results[1].bboxes[0] * 2.0  # back to input pixels (scale_factor 2)
    iou = _iou(best, gt.bboxes[0])
    assert iou > 0.5, f"best box {best.tolist()} vs gt {gt.bboxes[0].tolist()}: IoU {iou:.2f}"
    assert int(results[1].labels[0]) == int(gt.labels[0])


def test_test_time_augmentation_uses_per_class_scores(example, one_thread):
    model = _detector(example, test_cfg={**TEST_CFG, "nms": {"type": "nms", "iou_threshold": 0.5}}).eval()
    batch = fake_batch(1, (64, 64), num_classes=3)
    flipped = dict(batch["img_metas"][0], flip=True, flip_direction="horizontal")
    with torch.no_grad():
        merged = model.aug_test([batch["imgs"], batch["imgs"].flip(-1)], [batch["img_metas"], [flipped]])
        raw = model.bbox_head(model.extract_feat(batch["imgs"]))
        per_class = model.bbox_head.predict_by_feat(*raw, img_metas=batch["img_metas"], with_nms=False)[0]
    assert per_class.scores.shape == (10, 3)
    assert bool((per_class.scores > 0).sum(1).eq(1).all())  # one class column per peak
    check_detections(merged, batch["img_metas"], max_per_img=10, num_classes=3)


def test_built_from_config_tables_through_the_plugin(example, one_thread, monkeypatch):
    import detcore
    from detcore.plugins import DetcorePluginManager, reset_plugin_manager

    monkeypatch.setitem(sys.modules, "tiny_center_head", example)
    manager = DetcorePluginManager()
    manager.load_builtins()
    manager.load_plugin("tiny", "tiny_center_head", "det-plugin-tiny", "0.1")
    reset_plugin_manager(manager)
    try:
        model = detcore.build("detector", {
            "type": "SingleStageDetector",
            "backbone": {"type": "TinyBackbone", "channels": 16},
            "bbox_head": {"type": "TinyCenterHead", "num_classes": 3, "in_channels": 16},
            "train_cfg": {"min_overlap": 0.5},
            "test_cfg": TEST_CFG,
        })
        assert isinstance(model.bbox_head, example.TinyCenterHead)
        assert model.bbox_head.train_cfg["min_overlap"] == 0.5
        with pytest.raises(Exception, match="min_overlp"):
            detcore.build("dense_head", {"type": "TinyCenterHead", "num_classes": 3, "in_channels": 16,
                                         "train_cfg": {"min_overlp": 0.5}})
    finally:
        reset_plugin_manager(None)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    lt, rb = torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])
    inter = (rb - lt).clamp(min=0).prod()
    return float(inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter))


def test_the_guide_quotes_the_example_verbatim():
    guide = (EXAMPLE.parents[1] / "writing-a-detector.md").read_text()
    source = EXAMPLE.read_text()
    test_source = Path(__file__).read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    quoted = [b for b in blocks if b.startswith("    ") or b.startswith("def test_")]
    assert len(quoted) >= 8, f"only {len(quoted)} quoted blocks"
    for block in quoted:
        assert block in source or block in test_source, f"the guide's block is not in the example:\n{block}"
