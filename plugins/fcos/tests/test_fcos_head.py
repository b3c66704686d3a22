"""FCOSHead: targets and losses of a hand-made one-box case, the training tricks, forward, predict."""

from __future__ import annotations

import math

import pytest
import torch
from det_plugin_fcos.fcos_head import INF, FCOSHead

import detcore
from detcore.structures.instances import Instances

# Two levels over a 32x32 image: strides 8 (4x4 cells, points at 4, 12, 20, 28) and 16 (2x2 cells,
# points at 8, 24). One ground-truth box (2, 2, 22, 14) of class 1.
STRIDES = (8, 16)
RANGES = ((-1, 12), (12, INF))
GT_BOX = [2.0, 2.0, 22.0, 14.0]


def make_head(**kwargs) -> FCOSHead:
    args = dict(num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1, strides=STRIDES,
                regress_ranges=RANGES, norm_cfg={"type": "GN", "num_groups": 4})
    args.update(kwargs)
    return detcore.build("dense_head", {"type": "FCOSHead", **args})


def gt(boxes: list[list[float]], labels: list[int]) -> Instances:
    return Instances(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                     labels=torch.tensor(labels, dtype=torch.long))


def points(head: FCOSHead) -> list[torch.Tensor]:
    return head.prior_generator.grid_priors([(4, 4), (2, 2)])


# Worked by hand. Level 0 (stride 8, range [-1, 12]): points strictly inside the box have x in {4, 12, 20}
# and y in {4, 12}; max(l, t, r, b) is 18 for x = 4 or 20 (too large), 10 for (12, 4) and (12, 12).
# Level 1 (stride 16, range [12, INF]): only (8, 8) is inside; its max distance 14 is in range.
# Positives (level, flat index, point, (l, t, r, b)):
POSITIVES = [
    (0, 1, (12, 4), (10.0, 2.0, 10.0, 10.0)),
    (0, 5, (12, 12), (10.0, 10.0, 10.0, 2.0)),
    (1, 0, (8, 8), (6.0, 6.0, 14.0, 6.0)),
]
# centerness = sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))
CENTERNESS = [math.sqrt(1.0 * 2 / 10), math.sqrt(1.0 * 2 / 10), math.sqrt(6 / 14 * 1.0)]


def test_targets_of_one_box_match_hand_computation():
    head = make_head()
    # second image has no objects: all its points are background
    labels, targets = head.get_targets(points(head), [gt([GT_BOX], [1]).bboxes, torch.zeros(0, 4)],
                                       [torch.tensor([1]), torch.zeros(0, dtype=torch.long)])
    assert [t.shape for t in labels] == [(32,), (8,)]  # level-major, image-major within a level
    expected_labels = [torch.full((32,), 2), torch.full((8,), 2)]
    for level, idx, _, ltrb in POSITIVES:
        expected_labels[level][idx] = 1
        assert targets[level][idx].tolist() == list(ltrb)
    for level in range(2):
        assert torch.equal(labels[level], expected_labels[level])
    pos = torch.cat([targets[lvl][idx][None] for lvl, idx, _, _ in POSITIVES])
    assert torch.allclose(head.centerness_target(pos), torch.tensor(CENTERNESS))


def test_points_of_a_level_match_the_2x_formula():
    head = make_head()
    for size, stride, pts in zip([(4, 4), (2, 2)], STRIDES, points(head)):
        legacy = head._get_points_single(size, stride, torch.float32, "cpu")
        assert torch.equal(legacy, pts)
    assert points(head)[0][[1, 5]].tolist() == [[12, 4], [12, 12]]


def sigmoid_focal(logits: torch.Tensor, onehot: torch.Tensor, gamma=2.0, alpha=0.25) -> torch.Tensor:
    p = logits.sigmoid()
    pt = torch.where(onehot == 1, p, 1 - p)
    at = torch.where(onehot == 1, torch.full_like(p, alpha), torch.full_like(p, 1 - alpha))
    return -(at * (1 - pt) ** gamma * torch.log(pt))


def test_losses_of_one_box_match_hand_computation():
    torch.manual_seed(0)
    head = make_head()
    cls_scores = [torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)]
    # every point predicts distances (5, 5, 5, 5): the box (x - 5, y - 5, x + 5, y + 5)
    bbox_preds = [torch.full((2, 4, 4, 4), 5.0), torch.full((2, 4, 2, 2), 5.0)]
    centernesses = [torch.randn(2, 1, 4, 4), torch.randn(2, 1, 2, 2)]
    gts = [gt([GT_BOX], [1]), gt([], [])]
    losses = head.loss_by_feat(cls_scores, bbox_preds, centernesses, gts, [{}, {}])
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_centerness"}

    # classification: focal loss over every point of both images and both classes, / 3 positives
    onehots = [torch.zeros(2, 4, 4, 2), torch.zeros(2, 2, 2, 2)]  # (img, y, x, class)
    for level, _, (x, y), _ in POSITIVES:
        s = STRIDES[level]
        onehots[level][0, y // s, x // s, 1] = 1  # the cell of the point (x, y)
    focal = sum(sigmoid_focal(c.permute(0, 2, 3, 1), o).sum() for c, o in zip(cls_scores, onehots))
    assert losses["loss_cls"].item() == pytest.approx(focal.item() / 3, rel=1e-5)

    # IoU of each predicted box with the gt box (area 20 * 12 = 240); pred area 100:
    # (12, 4): pred (7, -1, 17, 9), overlap 10 x 7; (12, 12): (7, 7, 17, 17), overlap 10 x 7;
    # (8, 8): (3, 3, 13, 13), overlap 10 x 10
    ious = [70 / (100 + 240 - 70), 70 / (100 + 240 - 70), 100 / (100 + 240 - 100)]
    expected_bbox = sum(c * -math.log(i) for c, i in zip(CENTERNESS, ious)) / sum(CENTERNESS)
    assert losses["loss_bbox"].item() == pytest.approx(expected_bbox, rel=1e-5)

    # centerness: BCE on logits at the positives, / 3
    logits = [centernesses[lvl][0, 0, y // STRIDES[lvl], x // STRIDES[lvl]]
              for lvl, _, (x, y), _ in POSITIVES]
    bce = sum(-(t * math.log(torch.sigmoid(z).item()) + (1 - t) * math.log(1 - torch.sigmoid(z).item()))
              for z, t in zip(logits, CENTERNESS))
    assert losses["loss_centerness"].item() == pytest.approx(bce / 3, rel=1e-5)


def test_no_positives_gives_zero_box_losses_with_gradients():
    head = make_head()
    cls_scores = [torch.randn(1, 2, 4, 4, requires_grad=True), torch.randn(1, 2, 2, 2, requires_grad=True)]
    bbox_preds = [torch.rand(1, 4, 4, 4, requires_grad=True), torch.rand(1, 4, 2, 2, requires_grad=True)]
    cent = [torch.randn(1, 1, 4, 4, requires_grad=True), torch.randn(1, 1, 2, 2, requires_grad=True)]
    losses = head.loss_by_feat(cls_scores, bbox_preds, cent, [gt([], [])], [{}])
    assert losses["loss_bbox"].item() == 0 and losses["loss_centerness"].item() == 0
    focal = sum(sigmoid_focal(c.detach().permute(0, 2, 3, 1), torch.zeros(1, *c.shape[2:], 2)).sum()
                for c in cls_scores)
    assert losses["loss_cls"].item() == pytest.approx(focal.item(), rel=1e-5)  # averaged over max(0, 1)
    sum(losses.values()).backward()


def test_smallest_box_wins_ambiguous_points():
    head = make_head(regress_ranges=((-1, INF), (INF, INF)))
    big, small = [0.0, 0.0, 32.0, 32.0], [8.0, 8.0, 16.0, 16.0]
    boxes = gt([big, small], [0, 1])
    labels, targets = head.get_targets(points(head), [boxes.bboxes], [boxes.labels])
    # the point (12, 12) (level 0, index 5) lies in both: the small box (label 1) wins
    assert labels[0][5].item() == 1 and targets[0][5].tolist() == [4.0, 4.0, 4.0, 4.0]
    assert labels[0][0].item() == 0 and targets[0][0].tolist() == [4.0, 4.0, 28.0, 28.0]
    assert torch.all(labels[1] == 2)  # level 1's range [INF, INF] admits nothing


def test_center_sampling_keeps_points_near_the_centre():
    box = [[2.0, 2.0, 30.0, 30.0]]
    wide = dict(strides=(8,), regress_ranges=((-1, INF),))
    pts = [torch.tensor([[x, y] for y in (4.0, 12.0, 20.0, 28.0) for x in (4.0, 12.0, 20.0, 28.0)])]
    plain = make_head(**wide)
    labels, _ = plain.get_targets(pts, [torch.tensor(box)], [torch.tensor([0])])
    assert int((labels[0] == 0).sum()) == 16  # every point is inside the box
    # radius 1 stride: the square (8, 8, 24, 24) around the centre (16, 16) -> 4 points strictly inside
    sampled = make_head(center_sampling=True, center_sample_radius=1.0, **wide)
    labels, targets = sampled.get_targets(pts, [torch.tensor(box)], [torch.tensor([0])])
    assert (labels[0] == 0).nonzero().flatten().tolist() == [5, 6, 9, 10]
    assert targets[0][5].tolist() == [10.0, 10.0, 18.0, 18.0]  # distances still to the whole box


def test_norm_on_bbox_targets_are_in_strides():
    head = make_head(norm_on_bbox=True)
    _, targets = head.get_targets(points(head), [torch.tensor([GT_BOX])], [torch.tensor([1])])
    for level, idx, _, ltrb in POSITIVES:
        assert targets[level][idx].tolist() == pytest.approx([v / STRIDES[level] for v in ltrb])


def test_forward_exp_relu_stride_and_centerness_branch():
    head = make_head()
    feats = [torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)]
    with torch.no_grad():
        head.conv_reg.weight.zero_()
        head.conv_reg.bias.fill_(math.log(3.0))
        head.scales[1].scale.fill_(2.0)
    cls_scores, bbox_preds, cent = head(feats)
    assert [c.shape for c in cls_scores] == [(2, 2, 4, 4), (2, 2, 2, 2)]
    assert [c.shape for c in cent] == [(2, 1, 4, 4), (2, 1, 2, 2)]
    assert torch.allclose(bbox_preds[0], torch.full_like(bbox_preds[0], 3.0))  # exp(log 3)
    assert torch.allclose(bbox_preds[1], torch.full_like(bbox_preds[1], 9.0))  # exp(2 log 3)
    # centerness from the cls tower by default, from the reg tower with centerness_on_reg
    _, _, cls_feat, reg_feat = super(FCOSHead, head).forward_single(feats[0])
    assert torch.allclose(cent[0], head.conv_centerness(cls_feat))
    head.centerness_on_reg = True
    assert torch.allclose(head(feats)[2][0], head.conv_centerness(reg_feat))

    normed = make_head(norm_on_bbox=True)
    with torch.no_grad():
        normed.conv_reg.weight.zero_()
        normed.conv_reg.bias.copy_(torch.tensor([-1.0, 0.5, 1.5, 2.0]))
    train_out = normed(feats)[1]
    assert train_out[0][0, :, 0, 0].tolist() == [0.0, 0.5, 1.5, 2.0]  # relu, in strides
    normed.eval()
    eval_out = normed(feats)[1]
    assert eval_out[1][0, :, 0, 0].tolist() == [0.0, 8.0, 24.0, 32.0]  # times stride 16


def test_predict_multiplies_centerness_and_rescales():
    test_cfg = {"nms_pre": 1000, "score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5},
                "max_per_img": 100}
    head = make_head(test_cfg=test_cfg)
    cls_scores = [torch.full((1, 2, 4, 4), -10.0), torch.full((1, 2, 2, 2), -10.0)]
    cls_scores[0][0, 1, 0, 1] = 5.0  # point (12, 4) of level 0, class 1
    bbox_preds = [torch.ones(1, 4, 4, 4), torch.ones(1, 4, 2, 2)]
    bbox_preds[0][0, :, 0, 1] = torch.tensor([3.0, 6.0, 5.0, 6.0])
    cent = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    meta = {"img_shape": (32, 32, 3), "scale_factor": [2.0, 2.0, 2.0, 2.0], "ori_shape": (16, 16, 3)}
    (res,) = head.predict_by_feat(cls_scores, bbox_preds, cent, img_metas=[meta], rescale=True)
    assert len(res) == 1 and res.labels.tolist() == [1]
    # box (12 - 3, 4 - 6, 12 + 5, 4 + 6) clipped to the image at y = 0, then halved
    assert res.bboxes.tolist() == [[4.5, 0.0, 8.5, 5.0]]
    assert res.scores.item() == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item() * 0.5)


def test_bad_configuration_is_reported():
    with pytest.raises(ValueError, match="regress_ranges"):
        make_head(regress_ranges=((-1, 64),))
    head = make_head()
    with pytest.raises(ValueError, match="feature maps"):
        head([torch.zeros(1, 8, 4, 4)])
