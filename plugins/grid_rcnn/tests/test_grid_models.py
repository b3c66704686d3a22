"""Grid R-CNN configs: the reference layout and count, a reference checkpoint loading, the variants,
the loss names and 30 iterations lowering every loss, and detections from the shapes model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import (
    check_loss_falls,
    check_reference_checkpoint_loads,
    check_reference_layout,
    fake_batch,
    load_validated_config,
)

pytest.importorskip("det_plugin_grid_rcnn", reason="det-plugin-grid-rcnn is not installed")
pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
STANDARD = "grid_rcnn_r50_fpn_gn-head_2x_coco"


def config(name: str, folder: str = "grid_rcnn") -> dict:
    return load_validated_config(CONFIGS / folder / f"{name}.toml").to_dict()


def test_layout_and_parameter_count_match_the_reference():
    assert check_reference_layout(config(STANDARD)["model"], STANDARD) == 64548201


def test_reference_checkpoint_loads(tmp_path):
    model = check_reference_checkpoint_loads(CONFIGS / "grid_rcnn" / f"{STANDARD}.toml", STANDARD, tmp_path)
    assert type(model.roi_head).__name__ == "GridRoIHead"


def test_reference_settings():
    cfg = config(STANDARD)
    roi = cfg["model"]["roi_head"]
    assert roi["bbox_head"]["with_reg"] is False
    assert roi["grid_roi_extractor"]["roi_layer"]["output_size"] == 14
    rcnn = cfg["model"]["train_cfg"]["rcnn"]
    assert (rcnn["pos_radius"], rcnn["max_num_grid"], rcnn["assigner"]["match_low_quality"]) == (1, 192, True)
    assert cfg["model"]["test_cfg"]["rcnn"]["score_thr"] == 0.03
    assert cfg["model"]["test_cfg"]["rcnn"]["nms"]["iou_threshold"] == 0.3
    assert cfg["model"]["train_cfg"]["rpn_proposal"]["max_per_img"] == 2000
    assert cfg["runner"]["max_epochs"] == 25 and cfg["lr_config"]["step"] == [17, 23]
    assert cfg["lr_config"]["warmup_iters"] == 3665
    one_x = config("grid_rcnn_r50_fpn_gn-head_1x_coco")
    assert one_x["model"] == cfg["model"]
    assert one_x["runner"]["max_epochs"] == 12 and one_x["lr_config"]["step"] == [8, 11]


@pytest.mark.parametrize(
    ("name", "plain"),
    [("grid_rcnn_r101_fpn_gn-head_2x_coco", "faster_rcnn_r101_fpn_1x_coco"),
     ("grid_rcnn_x101_32x4d_fpn_gn-head_2x_coco", "faster_rcnn_x101_32x4d_fpn_1x_coco"),
     ("grid_rcnn_x101_64x4d_fpn_gn-head_2x_coco", "faster_rcnn_x101_64x4d_fpn_1x_coco")],
)  # fmt: skip
def test_variants_are_the_r50_model_on_the_plain_variants_backbone(name, plain):
    """Same heads as the R-50 model; the parameters differ from it by what the plain Faster R-CNN
    variant's backbone adds over R-50."""
    table = config(name)["model"]
    base = config(STANDARD)["model"]
    plain_table = config(plain, "faster_rcnn")["model"]
    plain_r50 = config("faster_rcnn_r50_fpn_1x_coco", "faster_rcnn")["model"]
    assert table["backbone"] == plain_table["backbone"]
    assert table["roi_head"] == base["roi_head"]

    def count(t):
        with torch.device("meta"):
            return sum(p.numel() for p in detcore.build("detector", t).parameters())

    assert count(table) - count(base) == count(plain_table) - count(plain_r50)


def shapes_model(**overrides) -> torch.nn.Module:
    table = config("grid_rcnn_shapes")["model"]
    table["train_cfg"]["rcnn"].update(overrides)
    table["train_cfg"]["rcnn"]["sampler"]["num"] = 64
    table["train_cfg"]["rpn_proposal"]["max_per_img"] = 200
    torch.manual_seed(0)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def test_grid_rcnn_trains_and_detects():
    model = shapes_model(max_num_grid=32)
    batch = fake_batch(num_images=2, img_size=(64, 64), num_classes=3, boxes_per_image=2)
    model.train()
    names = set(model(**batch))
    assert names == {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "acc", "loss_grid"}
    keys = ("loss", "loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_grid")
    check_loss_falls(model, batch, iterations=30, lr=2e-3, optimizer="adam", keys=keys, ratio=0.9)
    model.eval()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
    for res, meta in zip(results, batch["img_metas"]):
        h, w = meta["ori_shape"][:2]
        assert len(res.bboxes) > 0
        assert (res.bboxes[:, 2:] >= res.bboxes[:, :2]).all()
        assert (res.bboxes[:, 0::2] <= w).all() and (res.bboxes[:, 1::2] <= h).all()
