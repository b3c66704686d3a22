"""The kernel's RoI machinery on hand-made cases: level mapping and pooling of SingleRoIExtractor,
sampling and targets of the RoI stage, BBoxHead's losses and detections, the ConvFC layouts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import detcore
from detcore.models.roi_heads import Shared2FCBBoxHead, StandardRoIHead
from detcore.models.utils import bbox2roi, roi2bbox
from detcore.ops import roi_align
from detcore.structures.instances import Instances


def extractor(channels: int = 2, **kwargs) -> torch.nn.Module:
    return detcore.build(
        "roi_extractor",
        dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
             out_channels=channels, featmap_strides=[4, 8, 16, 32], **kwargs),
    )  # fmt: skip


def square(cx: float, cy: float, side: float, img: int = 0) -> list[float]:
    return [img, cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


# -- SingleRoIExtractor ----------------------------------------------------------------------------


def test_rois_map_to_levels_by_scale():
    # level = floor(log2(sqrt(w h) / 56 + 1e-6)) clamped to [0, 3]: boundaries at 112, 224 and 448 px
    sides = [20.0, 111.0, 112.0, 150.0, 223.0, 224.0, 447.0, 448.0, 900.0]
    expected = [0, 0, 1, 1, 1, 2, 2, 3, 3]
    rois = torch.tensor([square(500, 500, s) for s in sides])
    assert extractor().map_roi_levels(rois, 4).tolist() == expected
    # a 50x200 box has scale 100 (level 0); a 100x500 one 223.6 (level 1)
    rect = torch.tensor([[0, 0, 0, 50, 200], [0, 0, 0, 100, 500.0]])
    assert extractor().map_roi_levels(rect, 4).tolist() == [0, 1]
    # fewer levels: everything above the last boundary goes to the last one
    assert extractor().map_roi_levels(rois, 2).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1]


def test_each_roi_is_pooled_from_its_level_with_that_levels_scale():
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 2, 256 // s, 256 // s, generator=gen) for s in (4, 8, 16, 32)]
    rois = torch.tensor([square(60, 60, 40), square(100, 120, 150, img=1), square(128, 128, 250),
                         square(128, 128, 250, img=1)])  # fmt: skip
    out = extractor()(feats, rois)
    assert out.shape == (4, 2, 7, 7)
    for i, level in enumerate([0, 1, 2, 2]):
        stride = 4 * 2**level
        ref = roi_align(feats[level], rois[i : i + 1], 7, 1.0 / stride, 0, True)
        torch.testing.assert_close(out[i : i + 1], ref)
    # roi_scale_factor: the level is chosen from the original box, the pooling uses the enlarged one
    out2 = extractor()(feats, rois[:1], roi_scale_factor=2.0)
    ref2 = roi_align(feats[0], torch.tensor([square(60, 60, 80)]), 7, 0.25, 0, True)
    torch.testing.assert_close(out2, ref2)


def test_extractor_with_no_rois_returns_an_empty_batch_with_gradient_path():
    feats = [torch.randn(1, 2, 8, 8, requires_grad=True) for _ in range(4)]
    out = extractor()(feats, torch.zeros(0, 5))
    assert out.shape == (0, 2, 7, 7)
    out.sum().backward()
    assert all(f.grad is not None for f in feats)


def test_extractor_rejects_spatial_scale_in_the_layer_table():
    with pytest.raises(ValueError, match="spatial_scale"):
        detcore.build(
            "roi_extractor",
            dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7, spatial_scale=0.5),
                 out_channels=2, featmap_strides=[4]),
        )  # fmt: skip


def test_roi_pool_layer_is_available():
    ext = detcore.build(
        "roi_extractor",
        dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIPool", output_size=7), out_channels=2,
             featmap_strides=[4]),
    )  # fmt: skip
    feats = [torch.arange(2 * 16 * 16, dtype=torch.float32).view(1, 2, 16, 16)]
    out = ext(feats, torch.tensor([[0, 0, 0, 63, 63.0]]))
    assert out.shape == (1, 2, 7, 7)
    # max pooling of an increasing ramp: the bottom-right bin holds the largest value of the channel
    assert out[0, 0, -1, -1] == feats[0][0, 0].max()


def test_bbox2roi_and_roi2bbox_round_trip():
    boxes = [
        torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]]),
        torch.zeros(0, 4),
        torch.tensor([[9.0, 9, 10, 10]]),
    ]
    rois = bbox2roi(boxes)
    assert rois[:, 0].tolist() == [0, 0, 2]
    back = roi2bbox(rois)
    assert [b.tolist() for b in back] == [b.tolist() for b in boxes]


# -- sampling and targets of the RoI stage --------------------------------------------------------


def roi_head(num: int = 16, pos_fraction: float = 0.25, num_classes: int = 3, **head) -> StandardRoIHead:
    return detcore.build(
        "roi_head",
        dict(
            type="StandardRoIHead",
            bbox_roi_extractor=dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7),
                                    out_channels=4, featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(type="Shared2FCBBoxHead", in_channels=4, fc_out_channels=16,
                           num_classes=num_classes, **head),
            train_cfg=dict(
                assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                              match_low_quality=False, ignore_iof_thr=-1),
                sampler=dict(type="RandomSampler", num=num, pos_fraction=pos_fraction, neg_pos_ub=-1,
                             add_gt_as_proposals=True),
                pos_weight=-1,
            ),
            test_cfg=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100),
        ),
    )  # fmt: skip


GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
# IoU with GT: 1, 0.8, 0.6, then 7 boxes far away (IoU 0)
PROPOSALS = torch.tensor(
    [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 6.0]]
    + [[50.0 + 10 * i, 50.0, 58.0 + 10 * i, 58.0] for i in range(7)]
)


def feats_for(size: int = 64, batch: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(batch, 4, size // s, size // s, generator=gen) for s in (4, 8, 16, 32)]


def test_sampling_adds_the_gt_as_proposal_and_keeps_all_positives_under_the_quota():
    head = roi_head(num=16)
    gts = [Instances(bboxes=GT, labels=torch.tensor([2]))]
    (res,) = head.sample(feats_for(), [Instances(bboxes=PROPOSALS)], gts)
    # candidates: the gt (index 0) then the 10 proposals; positives: gt + IoU 1, 0.8, 0.6 (4 <= 16 * 0.25)
    assert sorted(res.pos_inds.tolist()) == [0, 1, 2, 3]
    assert sorted(res.neg_inds.tolist()) == list(range(4, 11))  # 7 negatives <= 16 - 4
    assert res.pos_is_gt.tolist() == [1 if i == 0 else 0 for i in res.pos_inds.tolist()]
    labels, label_weights, bbox_targets, bbox_weights = head.bbox_head.get_targets([res], head.train_cfg)
    assert labels.tolist() == [2] * 4 + [3] * 7  # positives first, negatives get num_classes
    assert label_weights.tolist() == [1.0] * 11
    assert bbox_weights[:4].eq(1).all() and bbox_weights[4:].eq(0).all()
    # hand-computed deltas (stds 0.1, 0.1, 0.2, 0.2) of each positive towards the gt box
    by_box = {tuple(b.tolist()): t for b, t in zip(res.pos_bboxes, bbox_targets[:4])}
    torch.testing.assert_close(by_box[(0.0, 0.0, 10.0, 10.0)], torch.zeros(4))
    dy, dh = (5 - 4) / 8 / 0.1, math.log(10 / 8) / 0.2
    torch.testing.assert_close(by_box[(0.0, 0.0, 10.0, 8.0)], torch.tensor([0.0, dy, 0.0, dh]))
    dy, dh = (5 - 3) / 6 / 0.1, math.log(10 / 6) / 0.2
    torch.testing.assert_close(by_box[(0.0, 0.0, 10.0, 6.0)], torch.tensor([0.0, dy, 0.0, dh]))


def test_sampling_quota_caps_the_positive_fraction():
    head = roi_head(num=8, pos_fraction=0.25)
    gts = [Instances(bboxes=GT, labels=torch.tensor([1]))]
    for seed in range(5):
        torch.manual_seed(seed)
        (res,) = head.sample(feats_for(), [Instances(bboxes=PROPOSALS)], gts)
        assert len(res.pos_inds) == 2  # int(8 * 0.25) of the 4 candidates
        assert set(res.pos_inds.tolist()) <= {0, 1, 2, 3}
        assert len(res.neg_inds) == 6 and set(res.neg_inds.tolist()) <= set(range(4, 11))


def test_pos_weight_sets_the_positive_label_weight():
    head = roi_head(num=16)
    gts = [Instances(bboxes=GT, labels=torch.tensor([0]))]
    (res,) = head.sample(feats_for(), [Instances(bboxes=PROPOSALS)], gts)
    _, label_weights, _, _ = head.bbox_head.get_targets([res], {"pos_weight": 2.0})
    assert label_weights.tolist() == [2.0] * 4 + [1.0] * 7


def test_image_without_ground_truth_trains_on_negatives_only():
    head = roi_head(num=16)
    feats = feats_for(batch=2)
    gts = [Instances(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)),
           Instances(bboxes=GT, labels=torch.tensor([1]))]  # fmt: skip
    results = head.sample(feats, [Instances(bboxes=PROPOSALS)] * 2, gts)
    assert len(results[0].pos_inds) == 0 and len(results[0].neg_inds) == 10
    losses = head.loss(feats, [Instances(bboxes=PROPOSALS)] * 2, gts, [{}, {}])
    assert set(losses) == {"loss_cls", "acc", "loss_bbox"}
    assert all(torch.isfinite(v) for v in losses.values())
    # only image 0 in the batch: no positive at all -> loss_bbox is a zero that still back-propagates
    losses = head.loss(feats_for(), [Instances(bboxes=PROPOSALS)], gts[:1], [{}])
    assert float(losses["loss_bbox"].detach()) == 0.0 and losses["loss_bbox"].requires_grad
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    assert head.bbox_head.fc_cls.weight.grad.abs().sum() > 0


# -- BBoxHead losses and detections -----------------------------------------------------------------


def test_bbox_head_loss_matches_a_hand_computation():
    head = Shared2FCBBoxHead(in_channels=1, roi_feat_size=1, fc_out_channels=4, num_classes=2,
                             loss_bbox={"type": "L1Loss", "loss_weight": 1.0})  # fmt: skip
    cls_score = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 2.0, 0.5]])
    bbox_pred = torch.arange(4 * 8, dtype=torch.float32).view(4, 8) / 10
    labels = torch.tensor([0, 1, 2, 2])  # two positives, two negatives (background = 2)
    label_weights = torch.tensor([1.0, 1.0, 1.0, 0.0])  # the last sample is not counted
    bbox_targets = torch.ones(4, 4)
    bbox_weights = torch.tensor([[1.0] * 4, [1.0] * 4, [0.0] * 4, [0.0] * 4])
    losses = head.loss(
        cls_score, bbox_pred, torch.zeros(4, 5), labels, label_weights, bbox_targets, bbox_weights
    )
    ce = F.cross_entropy(cls_score, labels, reduction="none")
    torch.testing.assert_close(losses["loss_cls"], (ce * label_weights).sum() / 3)
    # accuracy over all 4 rows: argmax 0, 1, 2, 1 vs labels 0, 1, 2, 2
    torch.testing.assert_close(losses["acc"], torch.tensor([75.0]))
    # L1 of each positive's own-class slice (row 0: columns 0-3, row 1: columns 4-7), over 4 samples
    l1 = (bbox_pred[0, 0:4] - 1).abs().sum() + (bbox_pred[1, 4:8] - 1).abs().sum()
    torch.testing.assert_close(losses["loss_bbox"], l1 / 4)


def test_class_agnostic_regression_uses_the_shared_four():
    head = Shared2FCBBoxHead(in_channels=1, roi_feat_size=1, fc_out_channels=4, num_classes=2,
                             reg_class_agnostic=True, loss_bbox={"type": "L1Loss"})  # fmt: skip
    assert head.fc_reg.out_features == 4
    bbox_pred = torch.tensor([[0.5, 0.5, 0.5, 0.5], [9.0, 9.0, 9.0, 9.0]])
    losses = head.loss(torch.zeros(2, 3), bbox_pred, torch.zeros(2, 5), torch.tensor([1, 2]), torch.ones(2),
                       torch.zeros(2, 4), torch.tensor([[1.0] * 4, [0.0] * 4]))  # fmt: skip
    torch.testing.assert_close(losses["loss_bbox"], torch.tensor(2.0 / 2))


def test_bbox_head_detections_decode_threshold_and_rescale():
    head = Shared2FCBBoxHead(in_channels=1, roi_feat_size=1, fc_out_channels=4, num_classes=2)
    rois = torch.tensor([[0, 10.0, 10.0, 50.0, 30.0], [0, 60.0, 10.0, 90.0, 90.0]])
    # RoI 0: class 1 with p = e^3 / (e^3 + 2); RoI 1: background (p of the classes 1 / (2 + e^4) < 0.05)
    cls = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
    deltas = torch.zeros(2, 8)
    deltas[0, 4] = 0.5 / 0.1  # class 1's dx: shift by half the width (target std 0.1)
    meta = {"img_shape": (100, 100, 3), "scale_factor": [2.0, 2.0, 2.0, 2.0]}
    cfg = {"score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100}
    (det,) = head.predict_by_feat([rois], [cls], [deltas], [meta], cfg, rescale=True)
    assert det.labels.tolist() == [1]
    torch.testing.assert_close(det.scores, torch.tensor([math.exp(3) / (math.exp(3) + 2)]))
    torch.testing.assert_close(det.bboxes, torch.tensor([[30.0, 10.0, 70.0, 30.0]]) / 2)
    # boxes are clipped to img_shape before rescaling
    deltas[0, 4] = 5.0 / 0.1
    (det,) = head.predict_by_feat([rois], [cls], [deltas], [meta], cfg, rescale=False)
    assert float(det.bboxes[0, 2]) == 100.0
    # an image without RoIs gives empty, well-formed detections
    (empty,) = head.predict_by_feat(
        [torch.zeros(0, 5)], [torch.zeros(0, 3)], [torch.zeros(0, 8)], [meta], cfg
    )
    assert empty.bboxes.shape == (0, 4) and empty.labels.dtype == torch.long


def test_convfc_layouts_and_init():
    torch.manual_seed(0)
    head = Shared2FCBBoxHead(in_channels=256, fc_out_channels=1024, num_classes=80)
    keys = [(k, tuple(v.shape)) for k, v in head.state_dict().items()]
    assert keys == [("fc_cls.weight", (81, 1024)), ("fc_cls.bias", (81,)), ("fc_reg.weight", (320, 1024)),
                    ("fc_reg.bias", (320,)), ("shared_fcs.0.weight", (1024, 12544)),
                    ("shared_fcs.0.bias", (1024,)), ("shared_fcs.1.weight", (1024, 1024)),
                    ("shared_fcs.1.bias", (1024,))]  # fmt: skip
    head.init_weights()
    assert abs(float(head.fc_cls.weight.detach().std()) - 0.01) < 0.001
    assert abs(float(head.fc_reg.weight.detach().std()) - 0.001) < 0.0001
    # Xavier uniform: bound sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6 / (12544 + 1024))
    w = head.shared_fcs[0].weight.detach()
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.99 * bound
    for m in (head.fc_cls, head.fc_reg, *head.shared_fcs):
        assert m.bias.abs().sum() == 0
    gn = detcore.build("roi_head", dict(type="Shared4Conv1FCBBoxHead", in_channels=8, conv_out_channels=8,
                                        fc_out_channels=16, num_classes=2,
                                        norm_cfg=dict(type="GN", num_groups=4)))  # fmt: skip
    names = list(gn.state_dict())
    assert names[:4] == ["fc_cls.weight", "fc_cls.bias", "fc_reg.weight", "fc_reg.bias"]
    assert "shared_convs.3.conv.weight" in names and "shared_convs.0.gn.weight" in names
    assert "shared_convs.0.conv.bias" not in names  # a conv followed by a norm has no bias
    assert names[-2:] == ["shared_fcs.0.weight", "shared_fcs.0.bias"]
    cls, reg = gn(torch.randn(5, 8, 7, 7))
    assert cls.shape == (5, 3) and reg.shape == (5, 8)
