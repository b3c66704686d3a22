"""GA-RetinaNet, GA-RPN and GA-Faster R-CNN: the reference layouts and parameter counts, reference
checkpoints loading, and the reference settings they carry (training: test_ga_training.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detcore.testing import check_reference_checkpoint_loads, check_reference_layout, load_validated_config

pytest.importorskip("det_plugin_guided_anchoring", reason="det-plugin-guided-anchoring is not installed")
pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "guided_anchoring"
STANDARD = [
    "ga_retinanet_r50_caffe_fpn_1x_coco", "ga_rpn_r50_caffe_fpn_1x_coco", "ga_faster_r50_caffe_fpn_1x_coco",
]


def model_table(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"]


@pytest.mark.parametrize("name", STANDARD)
def test_layout_and_parameter_count_match_the_reference(name):
    check_reference_layout(model_table(name), name)


@pytest.mark.parametrize("name", STANDARD)
def test_reference_checkpoint_loads(name, tmp_path):
    check_reference_checkpoint_loads(CONFIGS / f"{name}.toml", name, tmp_path)


def test_standard_configs_carry_the_reference_settings():
    retina = model_table(STANDARD[0])
    head = retina["bbox_head"]
    assert head["type"] == "GARetinaHead" and head["loss_bbox"] == {"type": "SmoothL1Loss", "beta": 0.04,
                                                                      "loss_weight": 1.0}
    assert retina["train_cfg"]["assigner"]["neg_iou_thr"] == 0.5
    assert retina["train_cfg"]["ga_assigner"]["min_pos_iou"] == 0.4
    faster = model_table(STANDARD[2])
    assert faster["rpn_head"]["anchor_coder"]["target_stds"] == [0.07, 0.07, 0.14, 0.14]
    assert faster["train_cfg"]["rpn_proposal"]["max_per_img"] == 300
    assert faster["train_cfg"]["rcnn"]["assigner"]["pos_iou_thr"] == 0.6
    assert faster["roi_head"]["bbox_head"]["bbox_coder"]["target_stds"] == [0.05, 0.05, 0.1, 0.1]
    assert model_table(STANDARD[1])["test_cfg"]["rpn"]["nms_post"] == 1000
