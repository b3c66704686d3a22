"""GA-RetinaNet, GA-RPN and GA-Faster R-CNN (the shapes configs): the reference's loss names, 30
iterations lowering the losses on a painted batch, the eval-mode output contract, and an image without
objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import check_detections, check_loss_falls, fake_batch, load_validated_config

pytest.importorskip("det_plugin_guided_anchoring", reason="det-plugin-guided-anchoring is not installed")
pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "guided_anchoring"


def model_table(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"]


def shapes_model(name: str, **override) -> torch.nn.Module:
    torch.manual_seed(0)
    table = model_table(name)
    table.update(override)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def batch(**kwargs):
    return fake_batch(num_images=2, img_size=(64, 64), num_classes=3, boxes_per_image=2, **kwargs)


def test_ga_retinanet_loss_names_training_and_detections():
    model = shapes_model("ga_retinanet_shapes")
    data = batch()
    model.train()
    assert set(model(**data)) == {"loss_cls", "loss_bbox", "loss_shape", "loss_loc"}
    check_loss_falls(model, data, iterations=30, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_cls", "loss_loc"), ratio=0.8)  # fmt: skip
    model.eval()
    with torch.no_grad():
        results = model(data["imgs"], data["img_metas"])
    check_detections(results, data["img_metas"], max_per_img=100, num_classes=3)
    assert all(len(r) > 0 for r in results)


def test_ga_rpn_loss_names_and_proposals():
    faster = model_table("ga_faster_rcnn_shapes")
    rpn_table = {
        "type": "RPN", "backbone": faster["backbone"], "neck": faster["neck"], "rpn_head": faster["rpn_head"],
        "train_cfg": {"rpn": faster["train_cfg"]["rpn"]}, "test_cfg": {"rpn": faster["test_cfg"]["rpn"]},
    }  # fmt: skip
    torch.manual_seed(0)
    model = detcore.build("detector", rpn_table)
    model.init_weights()
    data = batch()
    model.train()
    losses = model(**data)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox", "loss_anchor_shape", "loss_anchor_loc"}
    check_loss_falls(model, data, iterations=30, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_rpn_cls", "loss_anchor_loc"), ratio=0.8)  # fmt: skip
    model.eval()
    with torch.no_grad():
        proposals = model(data["imgs"], data["img_metas"])
    for props in proposals:
        assert 0 < len(props) <= 300 and bool((props.labels == 0).all())
        assert bool((props.scores[:-1] >= props.scores[1:]).all())


def test_ga_faster_rcnn_loss_names_training_and_detections():
    model = shapes_model("ga_faster_rcnn_shapes")
    data = batch()
    model.train()
    names = set(model(**data))
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_anchor_shape", "loss_anchor_loc", "loss_cls", "loss_bbox",
            "acc"} <= names  # fmt: skip
    check_loss_falls(model, data, iterations=30, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_rpn_cls", "loss_cls"), ratio=0.8)  # fmt: skip
    model.eval()
    with torch.no_grad():
        results = model(data["imgs"], data["img_metas"])
    check_detections(results, data["img_metas"], max_per_img=100, num_classes=3)


def test_an_image_without_objects_gives_finite_losses():
    model = shapes_model("ga_retinanet_shapes")
    data = batch()
    empty = data["gt_instances"][1]
    data["gt_instances"][1] = empty[torch.zeros(len(empty), dtype=torch.bool)]
    model.train()
    losses = model(**data)
    total = sum(sum(v) for v in losses.values())
    assert torch.isfinite(total)
    total.backward()
