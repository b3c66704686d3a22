"""What the shared dense heads give the next families: per-level anchor counts, optional losses,
``loss_and_predict``, the separate box post-processing step and ``proposals`` reaching ``predict``."""

from __future__ import annotations

import math

import pytest
import torch

# the settings of the base tests: one 32x32 anchor per cell of a stride-16 level, a 64x64 image
from test_dense_heads_base import ASSIGNER, META, ONE_ANCHOR, TEST_CFG  # the sibling test module
from torch import nn

import detcore
from detcore.models.dense_heads import AnchorHead
from detcore.models.detectors.base import BaseDetector
from detcore.structures.instances import Instances

# level 0: stride 16, squares of 16 and sqrt(16 * 32) (2 anchors); level 1: stride 32, squares of 25 and 35
# and two 2:1 / 1:2 boxes (4 anchors)
PER_LEVEL = {"type": "SSDAnchorGenerator", "strides": [16, 32], "ratios": [[], [2]],
             "min_sizes": [16, 25], "max_sizes": [32, 49]}


class PerLevelHead(AnchorHead):
    """An AnchorHead with one 1x1 conv pair per level (levels may differ in anchor count)."""

    def _init_layers(self) -> None:
        self.cls_convs = nn.ModuleList(
            nn.Conv2d(self.in_channels, a * self.cls_out_channels, 1) for a in self.num_base_priors_per_level
        )
        self.reg_convs = nn.ModuleList(
            nn.Conv2d(self.in_channels, a * 4, 1) for a in self.num_base_priors_per_level
        )

    def forward(self, feats):
        return [c(x) for c, x in zip(self.cls_convs, feats)], [r(x) for r, x in zip(self.reg_convs, feats)]


def head_of(cls=AnchorHead, anchors=ONE_ANCHOR, train_cfg=None, test_cfg=None, **kwargs) -> AnchorHead:
    head = cls(num_classes=2, in_channels=4, anchor_generator=anchors,
               train_cfg=train_cfg or {"assigner": ASSIGNER, "allowed_border": -1, "pos_weight": -1},
               test_cfg=test_cfg or dict(TEST_CFG), **kwargs)
    for p in head.parameters():  # outputs set by the biases only
        nn.init.zeros_(p)
    return head


EMPTY = Instances(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))


# -- a different number of anchors per level ---------------------------------------------------------


def test_per_level_anchor_counts_reach_the_layers_and_the_losses():
    head = head_of(PerLevelHead, PER_LEVEL)
    assert head.num_base_priors_per_level == [2, 4] and head.num_base_priors == [2, 4]
    feats = [torch.randn(1, 4, 4, 4), torch.randn(1, 4, 2, 2)]
    cls, reg = head(feats)
    assert [tuple(c.shape) for c in cls] == [(1, 4, 4, 4), (1, 8, 2, 2)]
    assert [tuple(r.shape) for r in reg] == [(1, 8, 4, 4), (1, 16, 2, 2)]
    # no ground truth: every anchor is a negative of weight 1, avg_factor = max(0, 1); zero logits give a
    # sigmoid cross-entropy of ln 2 per anchor and class
    losses = head.loss(feats, [EMPTY], [META])
    expected = [16 * 2 * 2 * math.log(2), 4 * 4 * 2 * math.log(2)]
    assert [float(v.detach()) for v in losses["loss_cls"]] == pytest.approx(expected, rel=1e-6)
    assert [float(v) for v in losses["loss_bbox"]] == [0.0, 0.0]


def test_per_level_anchor_counts_in_prediction():
    head = head_of(PerLevelHead, PER_LEVEL)
    cls = [torch.full((1, 4, 4, 4), -10.0), torch.full((1, 8, 2, 2), -10.0)]
    reg = [torch.zeros(1, 8, 4, 4), torch.zeros(1, 16, 2, 2)]
    # level 1, cell (1, 1) (centre (48, 48)), anchor 0 (the 25-pixel square), class 1
    cls[1][0, 0 * 2 + 1, 1, 1] = 3.0
    (res,) = head.predict_by_feat(cls, reg, img_metas=[META])
    assert res.labels.tolist() == [1]
    torch.testing.assert_close(res.bboxes, torch.tensor([[35.5, 35.5, 60.5, 60.5]]))  # 48 -+ 12.5
    torch.testing.assert_close(res.scores, torch.sigmoid(torch.tensor([3.0])))


def test_shared_predictors_need_one_anchor_count():
    with pytest.raises(ValueError, match=r"one anchor count.*\[2, 4\]"):
        head_of(AnchorHead, PER_LEVEL)


# -- optional losses ---------------------------------------------------------------------------------


def test_a_head_without_a_regression_loss_gives_only_the_classification_loss():
    gt = Instances(bboxes=torch.tensor([[2.0, 2.0, 34.0, 34.0]]), labels=torch.tensor([1]))
    feats = [torch.randn(1, 4, 4, 4)]
    full = head_of()
    cls_only = head_of(loss_bbox=None)
    assert cls_only.loss_bbox is None
    with torch.no_grad():
        full.conv_cls.bias.fill_(0.3)
        cls_only.conv_cls.bias.fill_(0.3)
    got = cls_only.loss(feats, [gt], [META])
    assert set(got) == {"loss_cls"}
    torch.testing.assert_close(got["loss_cls"], full.loss(feats, [gt], [META])["loss_cls"])
    # one positive (anchor of cell (1, 1)), 15 negatives, 2 sigmoid classes, logits 0.3, over 1 positive
    sp = math.log1p(math.exp(0.3))  # BCE of logit 0.3 against 0
    expected = sp + (sp - 0.3) + 15 * 2 * sp  # the positive's class 1 target is 1: BCE = softplus(-0.3)
    assert float(got["loss_cls"][0]) == pytest.approx(expected, rel=1e-6)


def test_a_head_without_a_classification_loss_has_softmax_outputs_and_only_the_box_loss():
    head = head_of(loss_cls=None)
    assert head.loss_cls is None and not head.use_sigmoid_cls and head.cls_out_channels == 3
    losses = head.loss([torch.randn(1, 4, 4, 4)], [EMPTY], [META])
    assert set(losses) == {"loss_bbox"}
    no_losses = head_of(loss_cls=None, loss_bbox=None)
    with pytest.raises(ValueError, match="no loss_cls and no loss_bbox"):
        no_losses.loss([torch.randn(1, 4, 4, 4)], [EMPTY], [META])


def test_sampler_is_ignored_for_a_loss_that_handles_imbalance():
    sampler = {"type": "RandomSampler", "num": 8, "pos_fraction": 0.5}
    cfg = {"assigner": ASSIGNER, "sampler": sampler}
    assert head_of(train_cfg=cfg).sampling
    focal = head_of(train_cfg=cfg, loss_cls={"type": "FocalLoss", "use_sigmoid": True})
    assert not focal.sampling and type(focal.sampler).__name__ == "PseudoSampler"


def test_loss_single_keeps_the_2x_name():
    head = head_of()
    args = (torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, 4), torch.zeros(1, 16, 4),
            torch.full((1, 16), 2), torch.ones(1, 16), torch.zeros(1, 16, 4), torch.zeros(1, 16, 4))
    new = head.loss_by_feat_single(*args, avg_factor=4.0)
    old = head.loss_single(*args, num_total_samples=4.0)
    assert float(new[0]) == float(old[0]) == pytest.approx(16 * 2 * math.log(2) / 4, rel=1e-6)


# -- loss_and_predict --------------------------------------------------------------------------------


def test_loss_and_predict_runs_the_head_once_and_matches_loss_and_predict_by_feat():
    torch.manual_seed(0)
    head = head_of()
    nn.init.normal_(head.conv_cls.weight)
    nn.init.normal_(head.conv_reg.weight, std=0.1)
    feats = [torch.randn(2, 4, 4, 4)]
    gts = [Instances(bboxes=torch.tensor([[2.0, 2.0, 34.0, 34.0]]), labels=torch.tensor([1])), EMPTY]
    metas = [dict(META, scale_factor=[2.0] * 4), META]
    calls = []
    handle = head.register_forward_hook(lambda *_: calls.append(1))
    proposal_cfg = {**TEST_CFG, "score_thr": 0.0, "max_per_img": 3}
    losses, preds = head.loss_and_predict(feats, gts, metas, None, proposal_cfg)
    handle.remove()
    assert len(calls) == 1
    expected_losses = head.loss(feats, gts, metas)
    for key in ("loss_cls", "loss_bbox"):
        torch.testing.assert_close(losses[key], expected_losses[key])
    outs = head(feats)
    expected = head.predict_by_feat(*outs, img_metas=metas, cfg=proposal_cfg, rescale=False)
    assert [len(p) for p in preds] == [3, 3]
    for got, want in zip(preds, expected):
        torch.testing.assert_close(got.bboxes, want.bboxes)  # not divided by scale_factor
        torch.testing.assert_close(got.scores, want.scores)
    losses["loss_cls"][0].backward()  # the losses keep their graph
    assert head.conv_cls.weight.grad is not None


# -- the box post-processing step --------------------------------------------------------------------


class _RPNLike(AnchorHead):
    filters_min_bbox_size = True


def test_post_process_single_scores_nms_per_level_min_size_and_max_per_img():
    head = head_of(_RPNLike)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0],   # level 0
                          [1.0, 1.0, 21.0, 21.0],   # level 0, IoU 0.82 with the first: suppressed
                          [0.0, 0.0, 20.0, 20.0],   # level 1: not suppressed by level 0
                          [30.0, 30.0, 33.0, 50.0],  # 3 wide: dropped by min_bbox_size = 4
                          [40.0, 40.0, 60.0, 60.0]])
    res = Instances(bboxes=boxes, scores=torch.tensor([0.9, 0.8, 0.7, 0.95, 0.6]),
                    level_ids=torch.tensor([0, 0, 1, 1, 1]))
    cfg = {"nms": {"type": "nms", "iou_threshold": 0.7}, "max_per_img": 2, "min_bbox_size": 4}
    meta = {"scale_factor": [2.0] * 4}
    out = head._bbox_post_process(res, cfg, meta, rescale=True)
    torch.testing.assert_close(out.bboxes, torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]))
    torch.testing.assert_close(out.scores, torch.tensor([0.9, 0.7]))
    assert out.labels.tolist() == [0, 0]
    # min_bbox_size counts in rescaled pixels: widths 10 > 9.9 are kept, 3 / 2 is not
    res2 = Instances(bboxes=boxes, scores=torch.tensor([0.9, 0.8, 0.7, 0.95, 0.6]),
                     level_ids=torch.tensor([0, 0, 1, 1, 1]))
    kept = head._bbox_post_process(res2, {**cfg, "min_bbox_size": 9.9}, meta, rescale=True, with_nms=False)
    assert len(kept) == 4
    # the single-stage heads ignore min_bbox_size (as the reference 2.x): a 3-wide box is kept
    plain = head_of()
    out = plain._bbox_post_process(Instances(bboxes=boxes[3:4], scores=torch.tensor([[0.9, 0.01]])),
                                   {**TEST_CFG, "min_bbox_size": 4}, meta)
    assert len(out) == 1 and out.labels.tolist() == [0]


def test_post_process_single_scores_need_level_ids():
    head = head_of(_RPNLike)
    with pytest.raises(ValueError, match="level_ids"):
        head._bbox_post_process(Instances(bboxes=torch.zeros(1, 4), scores=torch.ones(1)), TEST_CFG, META)


# -- proposals reach predict -------------------------------------------------------------------------


class _Recorder(BaseDetector):
    def predict(self, imgs, img_metas, rescale=True, **extra):
        self.seen = dict(extra, rescale=rescale)
        return []


def test_precomputed_proposals_reach_predict():
    det = _Recorder().eval()
    proposals = [Instances(bboxes=torch.tensor([[0.0, 0.0, 8.0, 8.0]]))]
    det(torch.zeros(1, 3, 16, 16), [META], proposals=proposals, gt_semantic_seg=torch.zeros(1))
    assert det.seen["proposals"] is proposals and "gt_semantic_seg" not in det.seen


def test_registered_anchor_head_still_builds_from_a_table():
    head = detcore.build("dense_head", {"type": "AnchorHead", "num_classes": 2, "in_channels": 4,
                                        "anchor_generator": ONE_ANCHOR, "loss_bbox": None})
    assert head.loss_bbox is None and head.num_base_priors == 1
