"""test_cfg.postprocess_order: the reference 2.18+ order (threshold, then the top nms_pre (anchor, class)
pairs) and the pre-2.18 order (top nms_pre anchors by best class, then multiclass_nms with the threshold)
on hand-made head outputs where they select different candidates."""

from __future__ import annotations

import math

import pytest
import torch

import detcore

# one level, stride 16, one 32x32 anchor per cell: anchor (i, j) = [16j - 16, 16i - 16, 16j + 16, 16i + 16],
# clipped to the 64x64 image. Zero regressions decode to the anchors themselves.
META = {"img_shape": (64, 64, 3), "pad_shape": (64, 64, 3), "scale_factor": [1.0, 1.0, 1.0, 1.0]}
A, B, C = (0, 0), (0, 2), (2, 0)
BOX = {A: [0.0, 0.0, 16.0, 16.0], B: [16.0, 0.0, 48.0, 16.0], C: [0.0, 16.0, 16.0, 48.0]}


def head(**test_cfg):
    cfg = {"nms_pre": 2, "score_thr": 0.3, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100,
           **test_cfg}
    table = {"type": "AnchorHead", "num_classes": 2, "in_channels": 4, "test_cfg": cfg,
             "anchor_generator": {"type": "AnchorGenerator", "scales": [2], "ratios": [1.0], "strides": [16]}}
    return detcore.build("dense_head", table)


def logit(p: float) -> float:
    """The logit whose sigmoid is ``p`` (in float32: 0 -> -30, 1 -> 30)."""
    return -30.0 if p == 0 else 30.0 if p == 1 else math.log(p / (1 - p))


def outputs(probs: dict, factors: dict | None = None):
    """Class probabilities per cell (about 0 elsewhere), zero regressions, optional score factors."""
    cls = torch.full((1, 2, 4, 4), -30.0)
    for (i, j), ps in probs.items():
        cls[0, :, i, j] = torch.tensor([logit(p) for p in ps])
    reg = torch.zeros(1, 4, 4, 4)
    if factors is None:
        return [cls], [reg], None
    fac = torch.full((1, 1, 4, 4), -30.0)
    for (i, j), p in factors.items():
        fac[0, 0, i, j] = logit(p)
    return [cls], [reg], [fac]


def detections(h, cls, reg, fac=None):
    (res,) = h.predict_by_feat(cls, reg, score_factors=fac, img_metas=[META])
    rows = zip(res.bboxes.tolist(), res.labels.tolist(), res.scores.tolist())
    return sorted((tuple(b), lab, round(s, 4)) for b, lab, s in rows)


def test_threshold_first_keeps_top_pairs_topk_first_top_anchors():
    # A: (.9, .8), B: (.6, .4), C: (.5, 0); nms_pre = 2, score_thr = .3
    cls, reg, _ = outputs({A: (0.9, 0.8), B: (0.6, 0.4), C: (0.5, 0.0)})
    # pre-2.18: the 2 anchors with the best class score (A .9, B .6), then every class above .3 of them
    legacy = detections(head(postprocess_order="topk_first"), cls, reg)
    assert legacy == sorted([(tuple(BOX[A]), 0, 0.9), (tuple(BOX[A]), 1, 0.8), (tuple(BOX[B]), 0, 0.6),
                             (tuple(BOX[B]), 1, 0.4)])
    # 2.18+: pairs above .3 are A0 .9, A1 .8, B0 .6, B1 .4, C0 .5; the best 2 pairs are both of anchor A
    expected = sorted([(tuple(BOX[A]), 0, 0.9), (tuple(BOX[A]), 1, 0.8)])
    assert detections(head(postprocess_order="threshold_first"), cls, reg) == expected
    assert detections(head(), cls, reg) == expected  # the default


def test_score_factors_rank_the_anchors_only_in_the_old_order():
    # A: class .9 but factor .1 (product .09); B: class .5, factor 1; nms_pre = 1
    cls, reg, fac = outputs({A: (0.9, 0.0), B: (0.5, 0.0)}, {A: 0.1, B: 1.0})
    # pre-2.18: anchors ranked by class score x factor -> B (.5); its raw .5 passes .3 -> score .5
    assert detections(head(nms_pre=1, postprocess_order="topk_first"), cls, reg, fac) == [
        (tuple(BOX[B]), 0, 0.5)
    ]
    # 2.18+: pairs ranked by the raw class score -> A (.9); the factor multiplies after: .09
    assert detections(head(nms_pre=1), cls, reg, fac) == [(tuple(BOX[A]), 0, 0.09)]


def test_same_result_when_nms_pre_keeps_everything():
    cls, reg, _ = outputs({A: (0.9, 0.8), B: (0.6, 0.4), C: (0.5, 0.0)})
    assert detections(head(nms_pre=1000), cls, reg) == detections(
        head(nms_pre=1000, postprocess_order="topk_first"), cls, reg
    )


def test_unknown_order_is_refused():
    cls, reg, _ = outputs({A: (0.9, 0.8)})
    with pytest.raises(ValueError, match=r"postprocess_order must be one of \('threshold_first', 'topk_"):
        head(postprocess_order="2.18").predict_by_feat(cls, reg, img_metas=[META])
