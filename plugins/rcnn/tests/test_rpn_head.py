"""RPNHead: proposals from hand-made objectness maps (top-k per level, level-aware NMS, min size, clipping,
rescale), anchor ordering, training targets with the paper's Table 9 options, and the RPN detector."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import detcore
from detcore.structures.instances import Instances
from detcore.testing import two_image_batch

pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")

ROOT = Path(__file__).resolve().parents[3]
NMS = {"type": "nms", "iou_threshold": 0.7}


#: every test on one torch thread (the ``one_thread`` fixture of detcore's pytest plugin)
pytestmark = pytest.mark.usefixtures("one_thread")


def rpn_head(strides=(4, 8), ratios=(1.0,), base_sizes=(32, 32), **kwargs):
    return detcore.build(
        "dense_head",
        dict(type="RPNHead", in_channels=2, feat_channels=2,
             anchor_generator=dict(type="AnchorGenerator", strides=list(strides), ratios=list(ratios),
                                   scales=[1], base_sizes=list(base_sizes)), **kwargs),
    )  # fmt: skip


def anchor(cx: float, cy: float, side: float = 32.0) -> list[float]:
    """The reference's anchor at a cell: centred on (x * stride, y * stride) (centre offset 0)."""
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def clip(box: list[float], w: float, h: float) -> list[float]:
    return [min(max(box[0], 0), w), min(max(box[1], 0), h), min(max(box[2], 0), w), min(max(box[3], 0), h)]


def hand_maps():
    """Level 0: 8x8 cells at stride 4 (32 px anchors); level 1: 4x4 at stride 8 (32 px anchors too)."""
    lvl0 = torch.full((1, 1, 8, 8), -10.0)
    lvl0[0, 0, 2, 2] = 5.0  # anchor centred (8, 8) -> clipped [0, 0, 24, 24]
    lvl0[0, 0, 2, 3] = 4.0  # centred (12, 8) -> [0, 0, 28, 24]: IoU 0.857 with the first, suppressed
    lvl0[0, 0, 6, 6] = 3.0  # centred (24, 24) -> [8, 8, 32, 32]: IoU 0.286 with the first, kept
    lvl1 = torch.full((1, 1, 4, 4), -10.0)
    lvl1[0, 0, 1, 1] = 4.5  # centred (8, 8) at stride 8 -> [0, 0, 24, 24]: same box, other level, kept
    deltas = [torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 4, 4)]
    return [lvl0, lvl1], deltas


META = {"img_shape": (32, 32, 3), "pad_shape": (32, 32, 3), "scale_factor": [2.0, 2.0, 2.0, 2.0]}


def test_proposals_from_a_hand_made_objectness_map():
    head = rpn_head()
    cls, reg = hand_maps()
    # (level 1's other 15 cells score sigmoid(-10); max_per_img 3 keeps the three best after the NMS)
    cfg = dict(nms_pre=3, max_per_img=3, nms=NMS, min_bbox_size=0)
    (props,) = head.predict_by_feat(cls, reg, img_metas=[META], cfg=cfg, rescale=False)
    expected = [clip(anchor(8, 8), 32, 32), clip(anchor(8, 8), 32, 32), clip(anchor(24, 24), 32, 32)]
    assert props.bboxes.tolist() == expected
    sig = torch.sigmoid(torch.tensor([5.0, 4.5, 3.0]))
    torch.testing.assert_close(props.scores, sig)
    assert props.labels.tolist() == [0, 0, 0]


def test_nms_pre_max_per_img_min_size_and_rescale():
    head = rpn_head()
    cls, reg = hand_maps()
    # nms_pre 2 keeps only the two best of level 0 (5 and 4; the 4 is then suppressed by the 5) and of
    # level 1 (4.5 and one of the -10 cells)
    (props,) = head.predict_by_feat(cls, reg, img_metas=[META], cfg=dict(nms_pre=2, max_per_img=10, nms=NMS))
    assert props.scores.tolist() == pytest.approx(torch.sigmoid(torch.tensor([5.0, 4.5, -10.0])).tolist())
    # max_per_img cuts after the NMS, best first
    (props,) = head.predict_by_feat(cls, reg, img_metas=[META], cfg=dict(nms_pre=3, max_per_img=1, nms=NMS))
    assert props.bboxes.tolist() == [[0.0, 0.0, 24.0, 24.0]]
    # min_bbox_size 24: every box here is 24 px wide or high (w > 24 and h > 24 are required)
    cfg = dict(nms_pre=3, max_per_img=10, nms=NMS, min_bbox_size=24)
    (props,) = head.predict_by_feat(cls, reg, img_metas=[META], cfg=cfg)
    assert len(props) == 0 and props.bboxes.shape == (0, 4)
    # rescale divides the proposals by scale_factor after the NMS
    cfg = dict(nms_pre=3, max_per_img=10, nms=NMS, min_bbox_size=0)
    (raw,) = head.predict_by_feat(cls, reg, img_metas=[META], cfg=cfg, rescale=False)
    (scaled,) = head.predict_by_feat(cls, reg, img_metas=[META], cfg=cfg, rescale=True)
    torch.testing.assert_close(scaled.bboxes, raw.bboxes / 2)


def test_min_bbox_size_keeps_boxes_wider_and_higher_than_it():
    head = rpn_head(strides=(4,), base_sizes=(32,))
    cls, reg = hand_maps()
    meta = dict(META, img_shape=(100, 100, 3))  # clipped at 0 only: 24x24, 28x24 and 32x32 boxes
    (props,) = head.predict_by_feat(
        cls[:1], reg[:1], img_metas=[meta], cfg=dict(nms_pre=3, nms=NMS, min_bbox_size=31.5)
    )
    assert props.bboxes.tolist() == [anchor(24, 24)]
    (props,) = head.predict_by_feat(
        cls[:1], reg[:1], img_metas=[meta], cfg=dict(nms_pre=3, nms=NMS, min_bbox_size=23.5)
    )
    assert props.bboxes.tolist() == [[0.0, 0.0, 24.0, 24.0], anchor(24, 24)]  # the 28x24 one is suppressed


def test_objectness_is_read_in_h_w_anchor_order():
    head = rpn_head(strides=(16,), ratios=(0.5, 1.0, 2.0), base_sizes=(32,))
    cls = torch.full((1, 3, 4, 4), -10.0)
    cls[0, 2, 1, 3] = 2.0  # anchor 2 (ratio 2: tall) of the cell at row 1, column 3
    reg = [torch.zeros(1, 12, 4, 4)]
    meta = dict(META, img_shape=(200, 200, 3))
    (props,) = head.predict_by_feat(
        [cls], reg, img_metas=[meta], cfg=dict(nms_pre=-1, nms=NMS, max_per_img=1)
    )
    w, h = 32 / math.sqrt(2), 32 * math.sqrt(2)  # ratio = h / w = 2 with the area of a 32 px square
    cx, cy = 3 * 16, 1 * 16
    expected = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    torch.testing.assert_close(props.bboxes, expected.clamp(min=0))


def test_deltas_move_the_proposals():
    head = rpn_head(strides=(4,), base_sizes=(32,))
    cls = torch.full((1, 1, 8, 8), -10.0)
    cls[0, 0, 4, 4] = 1.0
    reg = torch.zeros(1, 4, 8, 8)
    reg[0, :, 4, 4] = torch.tensor([0.25, 0.0, math.log(0.5), 0.0])  # shift x by 8, halve the width
    meta = dict(META, img_shape=(100, 100, 3))
    (props,) = head.predict_by_feat(
        [cls], [reg], img_metas=[meta], cfg=dict(nms_pre=-1, nms=NMS, max_per_img=1)
    )
    torch.testing.assert_close(props.bboxes, torch.tensor([[16.0, 0.0, 32.0, 32.0]]))


# -- training ---------------------------------------------------------------------------------------


def train_cfg(allowed_border: float = -1, neg_pos_ub: float = -1, num: int = 256) -> dict:
    return dict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                      match_low_quality=True, ignore_iof_thr=-1),
        sampler=dict(type="RandomSampler", num=num, pos_fraction=0.5, neg_pos_ub=neg_pos_ub,
                     add_gt_as_proposals=False),
        allowed_border=allowed_border, pos_weight=-1,
    )  # fmt: skip


def targets(head, gt: list[float], img: int = 32):
    featmap_sizes = [(img // 4, img // 4)]
    meta = dict(img_shape=(img, img, 3), pad_shape=(img, img, 3))
    anchors, flags = head.get_anchors(featmap_sizes, [meta])
    out = head.get_targets(anchors, flags, [torch.tensor([gt])], [meta], gt_labels_list=[torch.tensor([0])])
    return anchors[0][0], out


def test_allowed_border_option_ignores_anchors_crossing_the_image():
    gt = [4.0, 4.0, 28.0, 28.0]
    strict = rpn_head(strides=(4,), base_sizes=(16,), train_cfg=train_cfg(allowed_border=0))
    anchors, out = targets(strict, gt)
    label_weights = out[1][0].reshape(-1)
    outside = (anchors[:, 0] < 0) | (anchors[:, 1] < 0) | (anchors[:, 2] >= 32) | (anchors[:, 3] >= 32)
    assert outside.any() and label_weights[outside].eq(0).all()
    relaxed = rpn_head(strides=(4,), base_sizes=(16,), train_cfg=train_cfg(allowed_border=-1))
    _, out = targets(relaxed, gt)
    assert out[1][0].reshape(-1)[outside].gt(0).any()


def test_neg_pos_ub_option_caps_the_negatives():
    gt = [4.0, 4.0, 28.0, 28.0]
    head = rpn_head(strides=(4,), base_sizes=(16,), train_cfg=train_cfg(neg_pos_ub=3))
    _, out = targets(head, gt, img=64)
    num_pos, num_neg = out[4], out[5]
    assert num_neg <= 3 * num_pos
    free = rpn_head(strides=(4,), base_sizes=(16,), train_cfg=train_cfg(neg_pos_ub=-1))
    _, out = targets(free, gt, img=64)
    assert out[5] > 3 * out[4]


def test_rpn_losses_are_named_and_use_the_configured_smooth_l1():
    torch.manual_seed(0)
    feats = [torch.randn(2, 2, 96 // s, 128 // s) for s in (4, 8)]
    batch = two_image_batch()
    losses = {}
    for name, loss_bbox in (
        ("l1", {"type": "L1Loss"}),
        ("smooth", {"type": "SmoothL1Loss", "beta": 1.0 / 9}),
    ):
        torch.manual_seed(0)
        head = rpn_head(train_cfg=train_cfg(), loss_bbox=loss_bbox)
        head.init_weights()
        with torch.no_grad():
            head.rpn_reg.bias.fill_(0.02)  # small deltas: smooth L1 (beta 1/9) is then well below L1
        losses[name] = head.loss(feats, batch["gt_instances"], batch["img_metas"])
    assert set(losses["l1"]) == {"loss_rpn_cls", "loss_rpn_bbox"}
    assert len(losses["l1"]["loss_rpn_cls"]) == 2  # one per level
    assert all(torch.isfinite(v) for v in losses["l1"]["loss_rpn_cls"] + losses["l1"]["loss_rpn_bbox"])
    torch.testing.assert_close(sum(losses["l1"]["loss_rpn_cls"]), sum(losses["smooth"]["loss_rpn_cls"]))
    assert float(sum(losses["smooth"]["loss_rpn_bbox"]).detach()) < float(
        sum(losses["l1"]["loss_rpn_bbox"]).detach()
    )


def test_rpn_rejects_other_class_counts():
    with pytest.raises(ValueError, match="num_classes"):
        rpn_head(num_classes=3)


# -- the RPN detector -------------------------------------------------------------------------------


def tiny_rpn() -> torch.nn.Module:
    from detcore.config import load_config

    cfg = load_config(ROOT / "configs" / "faster_rcnn" / "faster_rcnn_shapes.toml").to_dict()["model"]
    table = dict(type="RPN", backbone=cfg["backbone"], neck=cfg["neck"], rpn_head=cfg["rpn_head"],
                 train_cfg={"rpn": cfg["train_cfg"]["rpn"]},
                 test_cfg={"rpn": cfg["test_cfg"]["rpn"]})  # fmt: skip
    torch.manual_seed(0)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def test_rpn_detector_trains_and_returns_proposals_in_original_coordinates():
    model = tiny_rpn()
    batch = two_image_batch()
    model.train()
    losses = model(**batch)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"}
    model.eval()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
        raw = model.predict(batch["imgs"], batch["img_metas"], rescale=False)
    for res, meta in zip(results, batch["img_metas"]):
        assert isinstance(res, Instances) and 0 < len(res) <= model.bbox_head.test_cfg["max_per_img"]
        assert res.labels.eq(0).all() and bool((res.scores[:-1] >= res.scores[1:]).all())
        h, w = meta["ori_shape"][:2]
        assert res.bboxes[:, 0::2].max() <= w + 1e-4 and res.bboxes[:, 1::2].max() <= h + 1e-4
    torch.testing.assert_close(raw[0].bboxes / 2, results[0].bboxes)
    assert "bbox_head.rpn_conv.weight" in model.state_dict()


def test_rpn_detector_is_evaluated_by_proposal_recall(tmp_path):
    from detcore.config import load_config
    from detcore.data import build_dataloader, build_dataset

    val = load_config(ROOT / "configs" / "faster_rcnn" / "faster_rcnn_shapes.toml").to_dict()["data"]["val"]
    val.update(root=str(tmp_path / "shapes"), num_images=2, num_val=2, image_size=[128, 128])
    dataset = build_dataset(val)
    metric = detcore.build("metric", {"type": "CocoMetric", "metric": ["proposal"],
                                      "proposal_nums": [1, 10, 100]}, dataset=dataset)  # fmt: skip
    model = tiny_rpn()
    model.eval()
    with torch.no_grad():
        loader = build_dataloader(dataset, batch_size=2, num_workers=0, shuffle=False, pad_size_divisor=32)
        for batch in loader:
            metric.process(batch["img_metas"], model(batch["imgs"], batch["img_metas"]))
    results = metric.compute()
    assert set(results) >= {"AR@1", "AR@10", "AR@100"}
    # recall can only grow with more proposals per image
    assert 0.0 <= results["AR@1"] <= results["AR@10"] <= results["AR@100"] <= 1.0
