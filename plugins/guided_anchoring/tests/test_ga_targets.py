"""Guided Anchoring's targets on hand-made cases: the approx and square anchors, the approx-max-IoU
assignment, the shape targets (which square is matched, its dw/dh) and the location targets (centre,
ignore and negative regions), each against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from det_plugin_guided_anchoring import ApproxMaxIoUAssigner, calc_region

import detcore

pytestmark = pytest.mark.usefixtures("one_thread")

S2 = math.sqrt(2.0)


def ga_head(strides=(8,), octave_base_scale=4, **train) -> torch.nn.Module:
    """A tiny GARetinaHead with the reference GA-RetinaNet's anchors at the given strides."""
    train_cfg = {
        "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.5, "min_pos_iou": 0.0},
        "ga_assigner": {"type": "ApproxMaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.4,
                        "min_pos_iou": 0.4},
        "center_ratio": 0.2, "ignore_ratio": 0.5, **train,
    }  # fmt: skip
    return detcore.build("dense_head", {
        "type": "GARetinaHead", "num_classes": 2, "in_channels": 8, "feat_channels": 8, "stacked_convs": 1,
        "approx_anchor_generator": {"type": "AnchorGenerator", "octave_base_scale": octave_base_scale,
                                    "scales_per_octave": 3, "ratios": [0.5, 1.0, 2.0],
                                    "strides": list(strides)},
        "square_anchor_generator": {"type": "AnchorGenerator", "ratios": [1.0], "scales": [octave_base_scale],
                                    "strides": list(strides)},
        "train_cfg": train_cfg, "test_cfg": {"score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5}},
    })  # fmt: skip


def test_approx_and_square_anchors_by_hand():
    head = ga_head()
    assert head.approxs_per_octave == 9 and head.num_base_priors == 1
    approxs = head.approx_anchor_generator.grid_priors([(2, 3)])[0]
    squares = head.square_anchor_generator.grid_priors([(2, 3)])[0]
    assert approxs.shape == (2 * 3 * 9, 4) and squares.shape == (6, 4)
    # location (0, 0), ratio 0.5 (h/w) at scales 4, 4 * 2^(1/3), 4 * 2^(2/3) of stride 8: w = 32 s' * sqrt 2
    for i, s in enumerate([1.0, 2 ** (1 / 3), 2 ** (2 / 3)]):
        w, h = 32 * s * S2, 32 * s / S2
        torch.testing.assert_close(approxs[i], torch.tensor([-w / 2, -h / 2, w / 2, h / 2]))
    torch.testing.assert_close(approxs[3], torch.tensor([-16.0, -16.0, 16.0, 16.0]))  # ratio 1, scale 4
    torch.testing.assert_close(approxs[6], torch.tensor([-8 * S2, -16 * S2, 8 * S2, 16 * S2]))  # ratio 2
    # squares: 32 x 32 centred on each location, row-major; location (x=2, y=1) is square 5
    torch.testing.assert_close(squares[0], torch.tensor([-16.0, -16.0, 16.0, 16.0]))
    torch.testing.assert_close(squares[5], torch.tensor([0.0, -8.0, 32.0, 24.0]))
    # the approxs of location 5 are its 9 rows, the same shapes moved to (16, 8)
    torch.testing.assert_close(approxs[5 * 9 + 3], squares[5])


def test_approx_max_iou_assigner_judges_a_square_by_its_best_approx():
    squares = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    approxs = torch.tensor([[0.0, 0, 10, 10], [0, 0, 20, 10],     # square 0's two approxs
                            [20, 0, 30, 10], [15, 0, 35, 10]])    # square 1's
    gt = torch.tensor([[0.0, 0, 20, 10]])
    assigner = ApproxMaxIoUAssigner(pos_iou_thr=0.6, neg_iou_thr=0.4, min_pos_iou=0.6)
    result = assigner.assign(approxs, squares, 2, gt)
    # square 0 overlaps the gt by IoU 0.5 only, but its second approx is the gt itself: positive;
    # square 1's best approx overlaps it by 50 / 350
    assert result.gt_inds.tolist() == [1, 0]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1.0, 50 / 350]))
    with pytest.raises(ValueError, match="approxs_per_octave"):
        ApproxMaxIoUAssigner(0.5, 0.4).assign(approxs[:3], squares, 2, gt)


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_shape_targets_match_the_square_whose_approx_is_the_gt():
    torch.manual_seed(0)
    head = ga_head()
    sizes = [(5, 5)]
    meta = {"img_shape": (40, 40, 3), "pad_shape": (40, 40, 3)}
    # the gt is location (2, 2)'s ratio-2 approx at scale 4: 32/sqrt2 x 32 sqrt2 centred on (16, 16)
    gt = torch.tensor([[16 - 8 * S2, 16 - 16 * S2, 16 + 8 * S2, 16 + 16 * S2]])
    approxs, inside = head.get_sampled_approxs(sizes, [meta])
    squares = head.square_anchor_generator.grid_priors(sizes)
    anchors, gts, weights, num_pos, _ = head.ga_shape_targets(approxs, inside, [squares], [gt], [meta])
    anchors, gts, weights = anchors[0][0], gts[0][0], weights[0][0]
    # positives: the squares one of whose approxs overlaps the gt by >= 0.5 (brute force over the 9)
    flat = approxs[0][0].view(25, 9, 4).tolist()
    expected = [i for i in range(25) if max(_iou(a, gt[0].tolist()) for a in flat[i]) >= 0.5]
    pos = torch.nonzero(weights[:, 0] > 0).squeeze(1).tolist()
    assert pos == expected and 12 in pos and num_pos == len(expected)
    torch.testing.assert_close(anchors[12], torch.tensor([0.0, 0.0, 32.0, 32.0]))  # square at (16, 16)
    torch.testing.assert_close(gts[12], gt[0])
    # its ideal shape: dw = log(w_gt / 32) = -log(sqrt 2), dh = +log(sqrt 2) (anchor_coder stds 1)
    ideal = head.anchor_coder.encode(anchors[12:13], gts[12:13])[0]
    torch.testing.assert_close(ideal, torch.tensor([0.0, 0.0, -math.log(S2), math.log(S2)]))
    only12 = torch.zeros_like(weights)
    only12[12] = 1
    shape_pred = torch.zeros(1, 2, 5, 5)
    # a square shape: w and h bounds 1 - 1/sqrt2 each (>= beta 0.2: linear part, minus beta / 2); the
    # loss's eps (1e-3 on the widths) moves it by ~4e-5
    zero_loss = head.loss_shape_single(shape_pred, anchors[None], gts[None], only12[None], 1.0)
    torch.testing.assert_close(zero_loss, torch.tensor(2 * (1 - 1 / S2 - 0.1)), atol=1e-4, rtol=0)
    shape_pred[0, :, 2, 2] = ideal[2:]
    assert head.loss_shape_single(shape_pred, anchors[None], gts[None], only12[None], 1.0) < 1e-5


def test_calc_region_rounds_and_clamps():
    box = torch.tensor([2.0, 2.0, 6.0, 6.0])
    assert calc_region(box, 0.4) == (4, 4, 4, 4)       # round(3.6), round(4.4)
    assert calc_region(box, 0.25) == (3, 3, 5, 5)
    assert calc_region(torch.tensor([-4.0, 1.0, 30.0, 3.0]), 0.0, (4, 8)) == (0, 1, 8, 3)


def test_location_targets_centre_ignore_and_neighbour_levels():
    head = ga_head(strides=(8, 16, 32))
    sizes = [(16, 16), (8, 8), (4, 4)]
    gt = torch.tensor([[32.0, 32.0, 96.0, 96.0]])  # 64 x 64: level floor(log2(64 / 32) + 0.5) = 1
    targets, weights, avg = head.ga_loc_targets([gt], sizes)
    assert avg == pytest.approx((256 + 64 + 16) / 200)
    # level 1 (stride 16): the box is cells [2, 6]; centre (ratio 0.2) cell 4, ignore (ratio 0.5) cells 3..5
    t1, w1 = targets[1][0, 0], weights[1][0, 0]
    assert t1.sum() == 1 and t1[4, 4] == 1
    expected = torch.full((8, 8), 0.1)
    expected[3:6, 3:6] = 0
    expected[4, 4] = 1
    torch.testing.assert_close(w1, expected)
    # level 0 (stride 8): the box is [4, 12], its ignore region cells 6..10, no positives
    assert targets[0].sum() == 0
    expected0 = torch.full((16, 16), 0.1)
    expected0[6:11, 6:11] = 0
    torch.testing.assert_close(weights[0][0, 0], expected0)
    # level 2 (stride 32): the box is [1, 3]; ignore region round(1.5) .. round(2.5) = cell 2 (half to even)
    expected2 = torch.full((4, 4), 0.1)
    expected2[2, 2] = 0
    torch.testing.assert_close(weights[2][0, 0], expected2)
    assert targets[2].sum() == 0
    # a 40 x 40 box goes to level 0 (floor(log2(40 / 32) + 0.5) = 0)
    targets, _, _ = head.ga_loc_targets([torch.tensor([[0.0, 0.0, 40.0, 40.0]])], sizes)
    assert targets[0].sum() > 0 and targets[1].sum() == 0


def test_location_loss_takes_target_one_as_the_object_class():
    head = ga_head()
    loc_pred = torch.tensor([[[[4.0, -4.0]]]])   # confident object at cell 0, background at cell 1
    target = torch.tensor([[[[1.0, 0.0]]]])
    good = head.loss_loc_single(loc_pred, target, torch.ones_like(target), 1.0)
    bad = head.loss_loc_single(loc_pred, 1 - target, torch.ones_like(target), 1.0)
    assert good < 1e-3 < bad


def test_inference_keeps_only_the_locations_above_loc_filter_thr():
    torch.manual_seed(0)
    head = ga_head(strides=(8, 16))
    head.init_weights()
    feats = [torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2)]
    metas = [{"img_shape": (32, 32, 3), "pad_shape": (32, 32, 3), "scale_factor": [1.0, 1.0, 1.0, 1.0]}]
    cfg = {"score_thr": 0.0, "nms": {"type": "nms", "iou_threshold": 1.0}, "max_per_img": -1}
    head.eval()
    with torch.no_grad():
        cls, reg, shape, loc = head(feats)
        for lvl in loc:
            lvl.fill_(-10.0)                           # sigmoid 4.5e-5: below loc_filter_thr 0.01
        loc[0][0, 0, 1, 2] = 5.0                       # location (x=2, y=1) of level 0: kept
        loc[0][0, 0, 3, 3] = -5.0                      # sigmoid 0.0067 < 0.01: dropped
        loc[0][0, 0, 0, 0] = -4.0                      # sigmoid 0.018: kept
        _, anchors, masks = head.get_guided_anchors([(4, 4), (2, 2)], shape, loc, metas, use_loc_filter=True)
        assert masks[0][0].nonzero().squeeze(1).tolist() == [0, 6] and not masks[0][1].any()
        det = head.predict_by_feat(cls, reg, shape, loc, img_metas=metas, cfg=cfg, with_nms=False)[0]
        assert det.scores.shape == (2, 2)              # two locations, per-class scores
        # the guided anchor of location (x=2, y=1): square [0, -8, 32, 24] with the predicted dw, dh
        dw, dh = shape[0][0, :, 1, 2].tolist()
        w, h = 32 * math.exp(dw), 32 * math.exp(dh)
        expected = torch.tensor([16 - w / 2, 8 - h / 2, 16 + w / 2, 8 + h / 2])
        torch.testing.assert_close(anchors[0][0][1], expected)
