"""SSDHead: the train/eval forward contract, and losses and detections against hand computations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import detcore
from detcore.config import load_config
from detcore.structures.instances import Instances
from detcore.testing import check_detections

pytest.importorskip("det_plugin_ssd", reason="det-plugin-ssd is not installed")


ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs" / "ssd"

# A head small enough to compute by hand: 2 classes, levels of 4x4 (stride 16) and 2x2 (stride 32) on a
# 64x64 image, 4 anchors per location (sizes min, sqrt(min * max), and min at ratios 1/2 and 2).
STRIDES, MINS, MAXS = (16, 32), (16, 32), (32, 64)
TRAIN_CFG = {
    "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.5, "min_pos_iou": 0.0,
                 "ignore_iof_thr": -1, "gt_max_assign_all": False},
    "smoothl1_beta": 1.0, "allowed_border": -1, "pos_weight": -1, "neg_pos_ratio": 3,
}
TEST_CFG = {"nms_pre": 1000, "nms": {"type": "nms", "iou_threshold": 0.45}, "min_bbox_size": 0,
            "score_thr": 0.5, "max_per_img": 200}
STDS = (0.1, 0.1, 0.2, 0.2)


def tiny_head() -> torch.nn.Module:
    return detcore.build("dense_head", {
        "type": "SSDHead", "num_classes": 2, "in_channels": [4, 4],
        "anchor_generator": {"type": "SSDAnchorGenerator", "scale_major": False, "input_size": 64,
                             "strides": list(STRIDES), "ratios": [[2], [2]], "min_sizes": list(MINS),
                             "max_sizes": list(MAXS)},
        "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": list(STDS)},
        "train_cfg": TRAIN_CFG, "test_cfg": TEST_CFG,
    })


def hand_anchors() -> torch.Tensor:
    """All 80 anchors in the head's order: level, row, column, then (min, sqrt(min*max), wide, tall)."""
    rows = []
    for stride, lo, hi in zip(STRIDES, MINS, MAXS):
        n = 64 // stride
        sizes = [(lo, lo), (math.sqrt(lo * hi),) * 2, (lo * math.sqrt(2), lo / math.sqrt(2)),
                 (lo / math.sqrt(2), lo * math.sqrt(2))]
        for y in range(n):
            for x in range(n):
                cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
                rows += [[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] for w, h in sizes]
    return torch.tensor(rows)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt, rb = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda t: (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def encode(anchors: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    pw, ph = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    px, py = anchors[:, 0] + pw / 2, anchors[:, 1] + ph / 2
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = gt[:, 0] + gw / 2, gt[:, 1] + gh / 2
    d = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], 1)
    return d / torch.tensor(STDS)


def metas(n: int = 2) -> list[dict]:
    return [dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), ori_shape=(32, 32, 3),
                 scale_factor=[2.0] * 4, batch_input_shape=(64, 64)) for _ in range(n)]


def flat(maps: list[torch.Tensor], img: int, width: int) -> torch.Tensor:
    return torch.cat([m[img].permute(1, 2, 0).reshape(-1, width) for m in maps])


def test_losses_match_hand_computation_for_one_box_per_image() -> None:
    head = tiny_head()
    anchors = hand_anchors()
    assert torch.allclose(torch.cat(head.prior_generator.grid_priors([(4, 4), (2, 2)])), anchors, atol=1e-4)

    # image 0: two anchors reach IoU >= 0.5 (0.725, 0.585); image 1: none does (best 0.455), so only the
    # box's best anchor is positive (min_pos_iou = 0)
    gts = [torch.tensor([[0.0, 4.0, 44.0, 28.0]]), torch.tensor([[30.0, 2.0, 62.0, 60.0]])]
    labels = [torch.tensor([1]), torch.tensor([0])]
    gen = torch.Generator().manual_seed(0)
    cls_scores = [torch.randn(2, 12, n, n, generator=gen) for n in (4, 2)]
    bbox_preds = [torch.randn(2, 16, n, n, generator=gen) for n in (4, 2)]
    losses = head.loss_by_feat(
        cls_scores, bbox_preds, [Instances(bboxes=b, labels=c) for b, c in zip(gts, labels)], metas()
    )
    assert set(losses) == {"loss_cls", "loss_bbox"} and len(losses["loss_cls"]) == 2

    # hand: positives are IoU >= 0.5 plus the best anchor of the box
    pos_sets, num_pos = [], 0
    for gt in gts:
        ious = iou(anchors, gt)[:, 0]
        pos = ious >= 0.5
        pos[ious.argmax()] = True
        pos_sets.append(pos)
        num_pos += int(pos.sum())
    assert [int(p.sum()) for p in pos_sets] == [2, 1]
    anchor_list, flag_list = head.get_anchors([(4, 4), (2, 2)], metas())
    targets = head.get_targets(anchor_list, flag_list, gts, metas(), gt_labels_list=labels)
    head_labels = torch.cat(targets[0], 1)
    for img, (pos, label) in enumerate(zip(pos_sets, labels)):
        assert torch.equal(head_labels[img] < 2, pos)  # the same anchors are positive
        assert torch.all(head_labels[img][pos] == label)

    for img, (gt, label, pos) in enumerate(zip(gts, labels, pos_sets)):
        logits, deltas = flat(cls_scores, img, 3), flat(bbox_preds, img, 4)
        target_cls = torch.where(pos, label.expand_as(pos), torch.full_like(pos, 2, dtype=torch.long))
        ce = -F.log_softmax(logits, -1).gather(1, target_cls[:, None])[:, 0]
        n_pos = int(pos.sum())
        hardest_negatives = ce[~pos].sort(descending=True).values[: 3 * n_pos]
        assert len(hardest_negatives) == 3 * n_pos
        expected_cls = (ce[pos].sum() + hardest_negatives.sum()) / num_pos
        diff = (deltas[pos] - encode(anchors[pos], gt.expand(n_pos, 4))).abs()
        expected_bbox = torch.where(diff < 1, 0.5 * diff**2, diff - 0.5).sum() / num_pos
        assert torch.allclose(losses["loss_cls"][img], expected_cls.view(1), rtol=1e-5)
        assert torch.allclose(losses["loss_bbox"][img], expected_bbox, rtol=1e-5)
        # mining matters: two or four negatives per positive give a different loss
        for ratio in (2, 4):
            other = (ce[pos].sum() + ce[~pos].sort(descending=True).values[: ratio * n_pos].sum()) / num_pos
            assert not torch.isclose(other, expected_cls)


def test_hard_negatives_are_capped_by_the_available_negatives() -> None:
    head = tiny_head()
    # 2 positives (labels 0 and 1) and 3 negatives (label 2 = background): all 3 negatives count
    labels = torch.tensor([0, 1, 2, 2, 2])
    scores = torch.tensor(
        [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    )
    zeros = torch.zeros(5, 4)
    loss_cls, loss_bbox = head.loss_single(scores, zeros, zeros, labels, torch.ones(5), zeros, zeros, 2)
    ce = -F.log_softmax(scores, -1)[torch.arange(5), labels]
    assert torch.allclose(loss_cls, (ce.sum() / 2).view(1))
    assert float(loss_bbox) == 0.0
    # a zero label weight removes an anchor's loss (the reference weighs before mining)
    weights = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])
    loss_cls, _ = head.loss_single(scores, zeros, zeros, labels, weights, zeros, zeros, 2)
    assert torch.allclose(loss_cls, ((ce.sum() - ce[2]) / 2).view(1))


def test_detection_of_one_confident_anchor_is_decoded_clipped_and_rescaled() -> None:
    head = tiny_head().eval()
    cls_scores = [torch.zeros(1, 12, 4, 4), torch.zeros(1, 12, 2, 2)]
    bbox_preds = [torch.zeros(1, 16, 4, 4), torch.zeros(1, 16, 2, 2)]
    # level 1, location (row 0, col 1), anchor 2 (wide: 45.25 x 22.63 around (48, 16)); class 1 logit 10
    cls_scores[1][0, 2 * 3 + 1, 0, 1] = 10.0
    dets = head.predict_by_feat(cls_scores, bbox_preds, img_metas=metas(1), rescale=True)[0]
    assert len(dets) == 1  # every other anchor scores 1/3 < score_thr 0.5
    half_w, half_h = 32 * math.sqrt(2) / 2, 32 / math.sqrt(2) / 2
    box = torch.tensor([48 - half_w, 16 - half_h, min(48 + half_w, 64.0), 16 + half_h]) / 2.0
    assert torch.allclose(dets.bboxes[0], box, atol=1e-4)
    assert dets.labels.tolist() == [1]
    assert torch.allclose(dets.scores, torch.tensor([math.exp(10) / (math.exp(10) + 2)]))


# -- the whole detector, from the shapes config ----------------------------------------------------


def shapes_model(**test_cfg: object) -> torch.nn.Module:
    cfg = load_config(CONFIGS / "ssd_shapes.toml").to_dict()
    cfg["model"]["test_cfg"].update(test_cfg)
    torch.manual_seed(0)
    model = detcore.build("detector", cfg["model"])
    model.init_weights()
    return model


def two_image_batch() -> dict:
    torch.manual_seed(1)
    img_metas = [
        dict(img_shape=(300, 300, 3), pad_shape=(300, 300, 3), ori_shape=(150, 200, 3),
             scale_factor=[1.5, 2.0, 1.5, 2.0], batch_input_shape=(300, 300), flip=False),
        dict(img_shape=(300, 300, 3), pad_shape=(300, 300, 3), ori_shape=(300, 300, 3),
             scale_factor=[1.0, 1.0, 1.0, 1.0], batch_input_shape=(300, 300), flip=False),
    ]
    gts = [
        Instances(bboxes=torch.tensor([[30.0, 40.0, 120.0, 160.0], [150.0, 100.0, 280.0, 290.0]]),
                  labels=torch.tensor([0, 2])),
        Instances(bboxes=torch.tensor([[10.0, 10.0, 60.0, 50.0]]), labels=torch.tensor([1])),
    ]
    return dict(imgs=torch.randn(2, 3, 300, 300), img_metas=img_metas, gt_instances=gts,
                gt_ignored_instances=[Instances(bboxes=torch.zeros(0, 4)) for _ in range(2)])


def test_train_and_eval_forward_follow_the_detector_contract() -> None:
    model = shapes_model(score_thr=0.0, max_per_img=7)
    batch = two_image_batch()
    model.train()
    losses = model(**batch)
    assert set(losses) == {"loss_cls", "loss_bbox"}
    for name, per_image in losses.items():
        assert len(per_image) == 2, name  # one entry per image, as the reference
        assert all(torch.isfinite(v).all() for v in per_image), name
    sum(sum(v) for v in losses.values()).backward()
    assert model.bbox_head.cls_convs[0][0].weight.grad.abs().sum() > 0
    assert model.backbone.features[0].weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
    # boxes are clipped to the 300x300 input, then divided by the scale factor: inside the original
    check_detections(results, batch["img_metas"], max_per_img=7, num_classes=3, atol=1e-3)
