"""Mask Scoring R-CNN: the reference layout and parameter count, a reference checkpoint loading, the
variants, the loss names, 30 iterations lowering every loss, the test-time mask scores (classification
score x predicted mask IoU) on a hand-made case and the eval-mode outputs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import detcore
from detcore.engine.loops import parse_losses
from detcore.structures import Instances
from detcore.testing import (
    check_detections,
    check_reference_checkpoint_loads,
    check_reference_layout,
    fake_batch,
    first_batch,
    load_validated_config,
    shapes_config_tables,
)

pytest.importorskip("det_plugin_ms_rcnn", reason="det-plugin-ms-rcnn is not installed")
pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
STANDARD = "ms_rcnn_r50_caffe_fpn_1x_coco"
LOSSES = ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask", "loss_mask_iou")
#: the MaskIoU head of the COCO configs: convs 257->256 and 3 x 256->256, fcs 12544->1024->1024, 1024->80
MASK_IOU_PARAMS = (257 + 3 * 256) * 256 * 9 + 4 * 256 + (12544 + 1024) * 1024 + 2 * 1024 + 1024 * 80 + 80


def model_table(name: str, folder: str = "ms_rcnn") -> dict:
    return load_validated_config(CONFIGS / folder / f"{name}.toml").to_dict()["model"]


def _count(table: dict) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in detcore.build("detector", table).parameters())


def test_layout_and_parameter_count_match_the_reference():
    assert check_reference_layout(model_table(STANDARD), STANDARD) == 60_736_640


def test_reference_checkpoint_loads(tmp_path):
    check_reference_checkpoint_loads(CONFIGS / "ms_rcnn" / f"{STANDARD}.toml", STANDARD, tmp_path)


@pytest.mark.parametrize(
    ("name", "plain", "depth"),
    [("ms_rcnn_r50_fpn_1x_coco", "mask_rcnn_r50_fpn_1x_coco", 50),
     ("ms_rcnn_r101_caffe_fpn_1x_coco", "mask_rcnn_r101_fpn_1x_coco", 101),
     ("ms_rcnn_x101_32x4d_fpn_1x_coco", "mask_rcnn_x101_32x4d_fpn_1x_coco", 101)],
)  # fmt: skip
def test_variants_are_mask_rcnn_plus_the_mask_iou_head(name, plain, depth):
    table = model_table(name)
    assert table["type"] == "MaskScoringRCNN" and table["roi_head"]["type"] == "MaskScoringRoIHead"
    assert table["backbone"]["depth"] == depth
    assert _count(table) == _count(model_table(plain, "mask_rcnn")) + MASK_IOU_PARAMS


def test_x101_64x4d_and_2x_variants():
    x64 = model_table("ms_rcnn_x101_64x4d_fpn_1x_coco")
    assert x64["backbone"]["type"] == "ResNeXt" and x64["backbone"]["groups"] == 64
    assert "resnext101_64x4d" in x64["backbone"]["init_cfg"]["checkpoint"]
    assert x64["roi_head"]["mask_iou_head"] == model_table(STANDARD)["roi_head"]["mask_iou_head"]
    r101 = model_table("ms_rcnn_r101_caffe_fpn_1x_coco")["backbone"]
    assert r101["style"] == "caffe" and r101["norm_cfg"]["requires_grad"] is False
    for name in ("ms_rcnn_r50_caffe_fpn_2x_coco", "ms_rcnn_r101_caffe_fpn_2x_coco",
                 "ms_rcnn_x101_64x4d_fpn_2x_coco"):
        cfg = load_validated_config(CONFIGS / "ms_rcnn" / f"{name}.toml").to_dict()
        assert cfg["runner"]["max_epochs"] == 24, name


def _shapes_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = detcore.build("detector", model_table("ms_rcnn_shapes"))
    model.init_weights()
    return model


def _value(v: torch.Tensor | list[torch.Tensor]) -> float:
    return float(sum(x.sum() for x in v)) if isinstance(v, list) else float(v.sum())


def _fixed_proposals(batch: dict) -> list[Instances]:
    """Per image: every gt box jittered 8 times (up to 20% of its size) plus 64 random boxes, seeded."""
    g = torch.Generator().manual_seed(7)
    h, w = batch["imgs"].shape[-2:]
    out = []
    for gt in batch["gt_instances"]:
        boxes = gt.bboxes.repeat(8, 1)
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        boxes = boxes + (torch.rand(boxes.shape, generator=g) - 0.5) * 0.4 * size
        xy = torch.rand(64, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
        wh = 8 + torch.rand(64, 2, generator=g) * 40
        out.append(Instances(bboxes=torch.cat([boxes, torch.cat([xy, xy + wh], 1)])))
    return out


def _fixed_losses(model: torch.nn.Module, batch: dict) -> dict[str, float]:
    """Every loss on the same inputs each call: the RPN's on its anchors, the RoI head's on fixed
    proposals (not the RPN's, which change as it learns), the samplers seeded."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(100)
        feats = model.extract_feat(batch["imgs"])
        gts, metas, ignored = batch["gt_instances"], batch["img_metas"], batch["gt_ignored_instances"]
        losses = model.rpn_head.loss(feats, gts, metas, ignored)
        losses.update(model.roi_head.loss(feats, _fixed_proposals(batch), gts, metas, ignored))
    return {k: _value(losses[k]) for k in LOSSES}


def test_loss_names_and_thirty_iterations_lower_every_loss(tmp_path):
    """30 AdamW steps of the whole detector on two shapes images. Every loss but the MaskIoU one falls
    on fixed proposals. The MaskIoU loss starts near 0 (an untrained mask head's logits pass no
    threshold, so no target is positive) and its targets move as the masks improve, so it is judged on
    the trained model's targets: the trained MaskIoU head's error is far below a fresh head's."""
    config = CONFIGS / "ms_rcnn" / "ms_rcnn_shapes.toml"
    tables = shapes_config_tables(config, tmp_path / "shapes", num_train=2)
    batch = first_batch(tables["train"])  # two 128 px shapes images with their polygon masks
    model = _shapes_model().train()
    losses = model(**batch)
    assert set(losses) == {*LOSSES, "acc"}
    assert losses["loss_mask_iou"].requires_grad
    fresh_iou_head = copy.deepcopy(model.roi_head.mask_iou_head.state_dict())
    before = _fixed_losses(model, batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    for _ in range(30):
        total, _ = parse_losses(model(**batch))
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=35)
        optimizer.step()
    after = _fixed_losses(model, batch)
    for name in LOSSES[:-1]:
        limit = 0.9 if name == "loss_bbox" else 0.6
        assert after[name] < limit * before[name], f"{name}: {before[name]:.4f} -> {after[name]:.4f}"
    assert after["loss_mask_iou"] > 0, "the trained masks give positive MaskIoU targets"
    trained_iou_head = copy.deepcopy(model.roi_head.mask_iou_head.state_dict())
    model.roi_head.mask_iou_head.load_state_dict(fresh_iou_head)
    untrained = _fixed_losses(model, batch)["loss_mask_iou"]
    model.roi_head.mask_iou_head.load_state_dict(trained_iou_head)
    assert after["loss_mask_iou"] < 0.5 * untrained, (
        f"loss_mask_iou: {untrained:.4f} (fresh head) -> {after['loss_mask_iou']:.4f} (trained)"
    )


def _tiny_roi_head() -> torch.nn.Module:
    torch.manual_seed(0)
    head = detcore.build(
        "roi_head",
        {
            "type": "MaskScoringRoIHead",
            "bbox_roi_extractor": {"type": "SingleRoIExtractor", "out_channels": 8, "featmap_strides": [4],
                                   "roi_layer": {"type": "RoIAlign", "output_size": 7, "sampling_ratio": 0}},
            "bbox_head": {"type": "Shared2FCBBoxHead", "in_channels": 8, "fc_out_channels": 16,
                          "roi_feat_size": 7, "num_classes": 3},
            "mask_roi_extractor": {"type": "SingleRoIExtractor", "out_channels": 8, "featmap_strides": [4],
                                   "roi_layer": {"type": "RoIAlign", "output_size": 14, "sampling_ratio": 0}},
            "mask_head": {"type": "FCNMaskHead", "num_convs": 1, "in_channels": 8, "conv_out_channels": 8,
                          "num_classes": 3},
            "mask_iou_head": {"type": "MaskIoUHead", "num_convs": 1, "num_fcs": 1, "in_channels": 8,
                              "conv_out_channels": 4, "fc_out_channels": 8, "num_classes": 3},
            "test_cfg": {"score_thr": 0.0, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 10,
                         "mask_thr_binary": 0.5},
        },
    )  # fmt: skip
    head.init_weights()
    return head


def test_test_time_mask_scores_are_cls_score_times_predicted_iou():
    """The MaskIoU output made constant per class (zero fc weights, biases 0.2 / 0.5 / 0.9): the mask
    score of each detection is its classification score times its class's bias."""
    head = _tiny_roi_head().eval()
    with torch.no_grad():
        head.mask_iou_head.fc_mask_iou.weight.zero_()
        head.mask_iou_head.fc_mask_iou.bias.copy_(torch.tensor([0.2, 0.5, 0.9]))
    feats = (torch.randn(1, 8, 16, 16),)
    meta = {"img_shape": (64, 64, 3), "ori_shape": (64, 64, 3), "pad_shape": (64, 64, 3),
            "batch_input_shape": (64, 64), "scale_factor": [1.0, 1.0, 1.0, 1.0], "flip": False}  # fmt: skip
    dets = Instances(
        bboxes=torch.tensor([[4.0, 4.0, 30.0, 30.0], [20.0, 10.0, 60.0, 50.0], [0.0, 30.0, 20.0, 60.0]]),
        scores=torch.tensor([0.9, 0.6, 0.3]),
        labels=torch.tensor([2, 0, 1]),
    )
    with torch.no_grad():
        out = head.predict_mask(feats, [meta], [dets], rescale=True)[0]
    assert torch.allclose(out.mask_scores, torch.tensor([0.9 * 0.9, 0.6 * 0.2, 0.3 * 0.5]), atol=1e-6)
    assert torch.equal(out.scores, torch.tensor([0.9, 0.6, 0.3]))  # the box scores stay
    assert out.masks.shape == (3, 64, 64) and out.masks.dtype == torch.bool


def test_eval_outputs_carry_masks_and_mask_scores():
    model = _shapes_model().eval()
    batch = fake_batch(num_images=2, img_size=(96, 80), num_classes=3, boxes_per_image=2, scale_factor=2.0)
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
    check_detections(results, batch["img_metas"], max_per_img=100, num_classes=3, with_masks=True)
    for r in results:
        assert r.mask_scores.shape == r.scores.shape


def test_bad_configs_are_refused():
    table = model_table("ms_rcnn_shapes")
    del table["roi_head"]["mask_iou_head"]
    with pytest.raises(Exception, match="mask_iou_head"):
        detcore.build("detector", table)
