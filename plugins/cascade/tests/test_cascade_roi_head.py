"""CascadeRoIHead on hand-made cases: each stage's targets use its own IoU threshold and stds, the
test-time class scores are the mean of the stages' logits (then the softmax), the refined proposals of
the next stage drop the gt boxes added as proposals, and the losses are named and weighted per stage."""

from __future__ import annotations

import math

import pytest
import torch

import detcore
from detcore.structures import Instances

pytest.importorskip("det_plugin_cascade", reason="det-plugin-cascade is not installed")

STDS = ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
IOUS = (0.5, 0.6, 0.7)
CHANNELS = 4
NUM_CLASSES = 3


def _bbox_head(stds: list[float]) -> dict:
    """A box head whose outputs are its biases when its weights are zero (average-pooled features)."""
    return {
        "type": "BBoxHead",
        "with_avg_pool": True,
        "roi_feat_size": 7,
        "in_channels": CHANNELS,
        "num_classes": NUM_CLASSES,
        "reg_class_agnostic": True,
        "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": stds},
    }


def _stage_train_cfg(iou: float, num: int = 512, add_gt: bool = True, with_mask: bool = False) -> dict:
    cfg = {
        "assigner": {
            "type": "MaxIoUAssigner", "pos_iou_thr": iou, "neg_iou_thr": iou, "min_pos_iou": iou,
            "match_low_quality": False, "ignore_iof_thr": -1,
        },
        "sampler": {
            "type": "RandomSampler", "num": num, "pos_fraction": 0.25, "neg_pos_ub": -1,
            "add_gt_as_proposals": add_gt,
        },
        "pos_weight": -1,
    }  # fmt: skip
    return dict(cfg, mask_size=28) if with_mask else cfg


def make_head(
    stage_loss_weights=(1.0, 0.5, 0.25), add_gt: bool = True, with_mask: bool = False, **train
) -> torch.nn.Module:
    table = {
        "type": "CascadeRoIHead",
        "num_stages": 3,
        "stage_loss_weights": list(stage_loss_weights),
        "bbox_roi_extractor": {
            "type": "SingleRoIExtractor",
            "roi_layer": {"type": "RoIAlign", "output_size": 7, "sampling_ratio": 0},
            "out_channels": CHANNELS,
            "featmap_strides": [4],
        },
        "bbox_head": [_bbox_head(s) for s in STDS],
        "train_cfg": [_stage_train_cfg(iou, add_gt=add_gt, with_mask=with_mask, **train) for iou in IOUS],
        "test_cfg": {"score_thr": 0.0, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100},
    }
    if with_mask:
        table["mask_roi_extractor"] = dict(table["bbox_roi_extractor"], roi_layer={
            "type": "RoIAlign", "output_size": 14, "sampling_ratio": 0,
        })  # fmt: skip
        table["mask_head"] = {
            "type": "FCNMaskHead", "num_convs": 1, "in_channels": CHANNELS, "conv_out_channels": CHANNELS,
            "num_classes": NUM_CLASSES,
        }  # fmt: skip
    torch.manual_seed(0)
    head = detcore.build("roi_head", table)
    head.init_weights()
    return head


META = {"img_shape": (128, 128, 3), "pad_shape": (128, 128, 3), "ori_shape": (128, 128, 3),
        "scale_factor": [1.0, 1.0, 1.0, 1.0]}  # fmt: skip


def _feats() -> list[torch.Tensor]:
    return [torch.randn(1, CHANNELS, 32, 32, generator=torch.Generator().manual_seed(3))]


def _encode(p: list[float], g: list[float], stds: list[float]) -> list[float]:
    """The delta-xywh encoding of box ``p`` towards ``g``, by hand."""
    pw, ph, gw, gh = p[2] - p[0], p[3] - p[1], g[2] - g[0], g[3] - g[1]
    px, py, gx, gy = p[0] + pw / 2, p[1] + ph / 2, g[0] + gw / 2, g[1] + gh / 2
    deltas = [(gx - px) / pw, (gy - py) / ph, math.log(gw / pw), math.log(gh / ph)]
    return [d / s for d, s in zip(deltas, stds)]


def test_each_stage_assigns_at_its_own_iou_and_encodes_with_its_own_stds():
    head = make_head(add_gt=False)
    gt = Instances(bboxes=torch.tensor([[10.0, 10.0, 110.0, 110.0]]), labels=torch.tensor([2]))
    # IoU 0.65 with the gt (100 x 65 inside 100 x 100): positive at IoU 0.5 and 0.6, negative at 0.7
    proposal = [10.0, 10.0, 110.0, 75.0]
    boxes = torch.tensor([proposal, [0.0, 0.0, 8.0, 8.0]])
    for stage, (iou, stds) in enumerate(zip(IOUS, STDS)):
        res = head.sample(stage, [boxes], [gt])
        labels, _, targets, weights = head.bbox_head[stage].get_targets(res, head.train_cfg[stage])
        positive = iou < 0.65
        assert len(res[0].pos_bboxes) == int(positive), f"stage {stage}"
        if positive:
            assert labels[0] == 2
            expected = torch.tensor(_encode(proposal, [10.0, 10.0, 110.0, 110.0], stds))
            torch.testing.assert_close(targets[0], expected, rtol=1e-5, atol=1e-6)
            assert weights[0].tolist() == [1.0] * 4
            assert (labels[1:] == NUM_CLASSES).all()
        else:
            assert (labels == NUM_CLASSES).all() and (weights == 0).all()
    # the stds differ by stage: stage 1's y-target is twice stage 0's
    res0, res1 = head.sample(0, [boxes], [gt]), head.sample(1, [boxes], [gt])
    t0 = head.bbox_head[0].get_targets(res0, head.train_cfg[0])[2][0]
    t1 = head.bbox_head[1].get_targets(res1, head.train_cfg[1])[2][0]
    torch.testing.assert_close(t1, t0 * torch.tensor([2.0, 2.0, 2.0, 2.0]))


def _set_stage_outputs(head, logits: list[list[float]], deltas: list[list[float]]) -> None:
    """Zero weights: every RoI gets ``logits[i]`` and ``deltas[i]`` (scaled by the stds) at stage i."""
    with torch.no_grad():
        for bbox_head, cls_bias, reg_bias in zip(head.bbox_head, logits, deltas):
            bbox_head.fc_cls.weight.zero_()
            bbox_head.fc_reg.weight.zero_()
            bbox_head.fc_cls.bias.copy_(torch.tensor(cls_bias))
            bbox_head.fc_reg.bias.copy_(torch.tensor(reg_bias))


def test_test_time_scores_are_the_softmax_of_the_mean_stage_logits():
    head = make_head().eval()
    logits = [[2.0, 0.0, -1.0, 0.5], [0.0, 3.0, 0.0, 0.0], [-2.0, 1.0, 4.0, 1.0]]
    # stage 0 moves the RoI right by 0.1 of its width, stage 1 down by 0.05 of its height; the last
    # stage's deltas (0) decode the final boxes on the twice-refined RoIs
    _set_stage_outputs(head, logits, [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    proposal = torch.tensor([[20.0, 30.0, 60.0, 90.0]])
    with torch.no_grad():
        (res,) = head.predict(_feats(), [Instances(bboxes=proposal)], [META])
    expected = torch.softmax(torch.tensor(logits).mean(0), 0)[:NUM_CLASSES]
    # one detection per class (score_thr 0), sorted by score
    order = torch.argsort(expected, descending=True)
    assert res.labels.tolist() == order.tolist()
    torch.testing.assert_close(res.scores, expected[order])
    # not the mean of the stages' probabilities
    mean_probs = torch.softmax(torch.tensor(logits), 1).mean(0)[:NUM_CLASSES]
    assert not torch.allclose(res.scores, mean_probs[order], atol=1e-3)
    moved = torch.tensor([20.0 + 0.1 * 40, 30.0 + 0.05 * 60, 60.0 + 0.1 * 40, 90.0 + 0.05 * 60])
    torch.testing.assert_close(res.bboxes, moved.expand(NUM_CLASSES, 4), rtol=1e-5, atol=1e-4)


def test_refined_proposals_drop_the_gt_boxes_added_as_proposals():
    head = make_head()
    _set_stage_outputs(head, [[0.0] * 4] * 3, [[0.0] * 4] * 3)  # refinement leaves boxes as they are
    gt_boxes = torch.tensor([[10.0, 10.0, 60.0, 60.0], [70.0, 20.0, 120.0, 100.0]])
    gt = Instances(bboxes=gt_boxes, labels=torch.tensor([0, 1]))
    proposals = torch.tensor([[12.0, 11.0, 60.0, 62.0], [72.0, 25.0, 118.0, 100.0], [0.0, 0.0, 9.0, 9.0]])
    seen: list[tuple[torch.Tensor, list]] = []
    sample = head.sample

    def spy(stage, props, gts, ignored=None):
        results = sample(stage, props, gts, ignored)
        seen.append((props[0].clone(), results))
        return results

    head.sample = spy
    head.loss(_feats(), [Instances(bboxes=proposals)], [gt], [META])
    assert len(seen) == 3
    for (_, results), (next_props, _) in zip(seen[:-1], seen[1:]):
        res = results[0]
        assert int(res.pos_is_gt.sum()) == 2  # both gt boxes were sampled as positives
        keep = torch.cat([res.pos_is_gt == 0, torch.ones(len(res.neg_bboxes), dtype=torch.bool)])
        torch.testing.assert_close(next_props, res.bboxes[keep])
    # stage 0 trained on the 3 proposals + 2 gts; stages 1 and 2 on the 3 refined proposals + 2 gts
    assert [len(p) for p, _ in seen] == [3, 3, 3]


def _losses(head, with_mask: bool, seed: int = 5) -> dict:
    from detcore.structures.masks import BitmapMasks

    masks = torch.zeros(2, 128, 128, dtype=torch.uint8)
    masks[0, 10:60, 10:60] = 1
    masks[1, 20:100, 70:120] = 1
    gt = Instances(
        bboxes=torch.tensor([[10.0, 10.0, 60.0, 60.0], [70.0, 20.0, 120.0, 100.0]]),
        labels=torch.tensor([0, 1]),
        masks=BitmapMasks(masks.numpy(), 128, 128),
    )
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(40, 2, generator=g) * 90
    proposals = torch.cat([gt.bboxes + torch.randn(2, 4, generator=g) * 3, torch.cat([xy, xy + 30], 1)])
    torch.manual_seed(seed)
    return head.loss(_feats(), [Instances(bboxes=proposals)], [gt], [META])


@pytest.mark.parametrize("with_mask", [False, True])
def test_losses_are_named_per_stage_and_weighted_by_the_stage_weights(with_mask):
    weights = (1.0, 0.5, 0.25)
    head = make_head(weights, with_mask=with_mask)
    unweighted = make_head((1.0, 1.0, 1.0), with_mask=with_mask)
    unweighted.load_state_dict(head.state_dict())
    names = ["loss_cls", "acc", "loss_bbox"] + (["loss_mask"] if with_mask else [])
    got, plain = _losses(head, with_mask), _losses(unweighted, with_mask)
    assert set(got) == {f"s{i}.{n}" for i in range(3) for n in names}
    for i, w in enumerate(weights):
        for n in names:
            key = f"s{i}.{n}"
            factor = 1.0 if n == "acc" else w  # the accuracy is a metric: never weighted
            torch.testing.assert_close(got[key], plain[key] * factor)
            assert float(plain[key].detach()) > 0, key
    assert got["s2.loss_cls"].requires_grad and not got["s0.acc"].requires_grad


def test_stage_tables_must_match_the_number_of_stages():
    from detcore.errors import ConfigError

    with pytest.raises((ValueError, ConfigError), match="stage_loss_weights has 2 entries for 3 stages"):
        make_head((1.0, 0.5))
    table = {
        "type": "CascadeRoIHead", "num_stages": 3, "stage_loss_weights": [1, 0.5, 0.25],
        "bbox_roi_extractor": {
            "type": "SingleRoIExtractor", "roi_layer": {"type": "RoIAlign", "output_size": 7},
            "out_channels": 4, "featmap_strides": [4],
        },
        "bbox_head": [_bbox_head(s) for s in STDS[:2]],
    }  # fmt: skip
    with pytest.raises((ValueError, ConfigError), match="bbox_head has 2 entries for 3 stages"):
        detcore.build("roi_head", table)
