"""GridHead: neighbour wiring and fusion, grid-point targets and box decoding on hand-made cases, the
heatmap loss and the shapes through the head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("det_plugin_grid_rcnn", reason="det-plugin-grid-rcnn is not installed")

from det_plugin_grid_rcnn import GridHead, grid_neighbors  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def small_head(**kw) -> GridHead:
    args = dict(num_convs=2, in_channels=8, point_feat_channels=4, norm_cfg={"type": "GN", "num_groups": 9})
    args.update(kw)
    torch.manual_seed(0)
    head = GridHead(**args)
    head.init_weights()
    return head


# -- wiring -----------------------------------------------------------------------------------------


def test_neighbours_of_the_3x3_grid():
    # point k sits at column k // 3, row k % 3; neighbours in the order left, up, down, right
    assert grid_neighbors(3) == [
        (1, 3), (0, 2, 4), (1, 5),
        (0, 4, 6), (1, 3, 5, 7), (2, 4, 8),
        (3, 7), (4, 6, 8), (5, 7),
    ]  # fmt: skip


def test_transition_modules_follow_the_neighbours():
    head = small_head()
    assert [len(t) for t in head.forder_trans] == [2, 3, 2, 3, 4, 3, 2, 3, 2]
    assert [len(t) for t in head.sorder_trans] == [2, 3, 2, 3, 4, 3, 2, 3, 2]
    first = head.forder_trans[4][0]
    assert first[0].groups == 4 and first[0].kernel_size == (5, 5) and first[1].kernel_size == (1, 1)


def _identity_transitions(head: GridHead) -> None:
    with torch.no_grad():
        for trans in [*head.forder_trans, *head.sorder_trans]:
            for seq in trans:
                seq[0].weight.zero_()
                seq[0].weight[:, 0, 2, 2] = 1.0
                seq[0].bias.zero_()
                seq[1].weight.copy_(torch.eye(seq[1].weight.shape[0])[:, :, None, None])
                seq[1].bias.zero_()


def test_fusion_adds_first_and_second_order_neighbours():
    """With identity transitions, first order = (I + A) x, second order = x + A (I + A) x, A the grid's
    4-adjacency computed here from the points' positions."""
    head = small_head()
    _identity_transitions(head)
    cols = torch.arange(9) // 3
    rows = torch.arange(9) % 3
    adj = ((cols[:, None] - cols[None]).abs() + (rows[:, None] - rows[None]).abs() == 1).float()
    values = torch.arange(1.0, 10.0) ** 2  # point k's block holds (k + 1)^2 everywhere
    x = values.repeat_interleave(4)[None, :, None, None].expand(1, 36, 3, 3).contiguous()
    first, second = head.fuse(x)
    eye = torch.eye(9)
    expected_first = (eye + adj) @ values
    expected_second = values + adj @ expected_first
    assert torch.allclose(first[0, ::4, 1, 1], expected_first)
    assert torch.allclose(second[0, ::4, 1, 1], expected_second)
    # the centre reaches every point in two steps, a corner not the opposite corner
    assert expected_second[4] == pytest.approx(values[4] + 4 * values[4] + 2 * values[[0, 2, 6, 8]].sum()
                                               + values[[1, 3, 5, 7]].sum())  # fmt: skip


def test_forward_shapes_and_eval_mode():
    head = small_head()
    x = torch.randn(3, 8, 14, 14)
    out = head(x)
    assert out["fused"].shape == out["unfused"].shape == (3, 9, 28, 28)
    assert not torch.equal(out["fused"], out["unfused"])
    head.eval()
    out = head(x)
    assert out["unfused"] is out["fused"]
    with pytest.raises(ValueError, match="RoI features"):
        head(torch.randn(1, 8, 7, 7))


def test_dilated_variant_keeps_shapes_and_parameters():
    plain, dilated = small_head(), small_head(conv_dilation=2)
    assert dilated.convs[1].conv.dilation == (2, 2) and dilated.convs[0].conv.dilation == (1, 1)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in dilated.parameters()]
    assert dilated(torch.randn(2, 8, 14, 14))["fused"].shape == (2, 9, 28, 28)


def test_init_gives_probability_one_percent():
    head = small_head()
    assert torch.allclose(head.deconv2.bias, torch.full((9,), -math.log(99.0)))
    assert head.deconv2.weight.std() < 0.01


def test_sub_regions():
    head = small_head()
    starts = [(0, 0), (0, 14), (0, 28), (14, 0), (14, 14), (14, 28), (28, 0), (28, 14), (28, 28)]
    assert head.sub_regions == [(x, y, x + 28, y + 28) for x, y in starts]


def test_bad_arguments():
    with pytest.raises(ValueError, match="square number"):
        GridHead(grid_points=8, in_channels=8, point_feat_channels=4, norm_cfg=None)
    with pytest.raises(ValueError, match="num_groups"):
        GridHead(in_channels=8, point_feat_channels=4, norm_cfg={"type": "GN", "num_groups": 8})


# -- targets ----------------------------------------------------------------------------------------


def _positives(target: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(x), int(y)) for y, x in torch.nonzero(target).tolist()}


def plus(x: int, y: int) -> set[tuple[int, int]]:
    return {(x, y), (x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)}


def test_targets_of_a_hand_made_roi():
    """RoI (14, 14, 42, 42): enlarged 2x it is (0, 0, 56, 56), one whole-map pixel per image pixel.
    The gt (10.7, 20.2, 40.5, 50.9) has grid points at x 10.7 / 25.6 / 40.5, y 20.2 / 35.55 / 50.9,
    truncated to pixels 10 / 25 / 40 and 20 / 35 / 50; radius 1 marks the pixel and its 4 neighbours,
    in each point's heatmap shifted by its sub-region's origin."""
    head = small_head()
    roi = torch.tensor([[14.0, 14.0, 42.0, 42.0]])
    gt = torch.tensor([[10.7, 20.2, 40.5, 50.9]])
    targets = head.get_targets(roi, gt, pos_radius=1)
    assert targets.shape == (1, 9, 28, 28)
    # (point, whole-map centre, sub-region origin)
    cases = [
        (0, (10, 20), (0, 0)), (1, (10, 35), (0, 14)), (2, (10, 50), (0, 28)),
        (3, (25, 20), (14, 0)), (4, (25, 35), (14, 14)), (5, (25, 50), (14, 28)),
        (6, (40, 20), (28, 0)), (7, (40, 35), (28, 14)), (8, (40, 50), (28, 28)),
    ]  # fmt: skip
    for k, (cx, cy), (ox, oy) in cases:
        assert _positives(targets[0, k]) == plus(cx - ox, cy - oy), k
    # radius 0: the single pixel; radius 2: the 13-pixel disc
    single = head.get_targets(roi, gt, pos_radius=0)
    assert _positives(single[0, 4]) == {(11, 21)}
    disc = head.get_targets(roi, gt, pos_radius=2)
    assert len(_positives(disc[0, 4])) == 13 and (11, 23) in _positives(disc[0, 4])


def test_targets_scale_clip_and_skip_small_rois():
    head = small_head()
    # RoI (0, 0, 112, 112) enlarged to (-56, -56, 168, 168): 4 image pixels per whole-map pixel;
    # the gt's top-left corner (0, 0) is at whole-map (14, 14), point 0's sub-region starts at 0
    roi = torch.tensor([[0.0, 0.0, 112.0, 112.0]])
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    assert _positives(head.get_targets(roi, gt)[0, 0]) == plus(14, 14)
    # a gt corner on the map's edge: the disc is cut by the heatmap's border
    roi = torch.tensor([[14.0, 14.0, 42.0, 42.0]])
    gt = torch.tensor([[0.0, 0.0, 30.0, 30.0]])
    assert _positives(head.get_targets(roi, gt)[0, 0]) == {(0, 0), (1, 0), (0, 1)}
    # enlarged width 2 * 1.4 <= 3 pixels: no positives at all
    tiny = head.get_targets(torch.tensor([[5.0, 5.0, 6.4, 30.0]]), torch.tensor([[5.0, 5.0, 6.0, 30.0]]))
    assert tiny.sum() == 0
    with pytest.raises(ValueError, match="must both be"):
        head.get_targets(torch.zeros(2, 4), torch.zeros(3, 4))


# -- decoding ---------------------------------------------------------------------------------------


def _peaks(points: dict[int, tuple[int, int, float]]) -> torch.Tensor:
    """Heatmap logits (1, 9, 28, 28) at -20 with point k's peak at heatmap pixel (x, y) of
    probability p."""
    maps = torch.full((1, 9, 28, 28), -20.0)
    for k, (x, y, p) in points.items():
        maps[0, k, y, x] = math.log(p / (1 - p))
    return maps


def test_decode_hand_made_heatmaps():
    """Box (14, 14, 42, 42): whole-map pixel q is image x = q + 0.5. Peaks of probability 0.5 at
    the points' whole-map pixels, except point 0 (0.75) and point 8 (0.25), weigh the edges."""
    head = small_head()
    whole = {0: (10, 20, 0.75), 1: (12, 36, 0.5), 2: (11, 50, 0.5),
             3: (25, 21, 0.5), 4: (26, 35, 0.5), 5: (24, 49, 0.5),
             6: (40, 19, 0.5), 7: (41, 35, 0.5), 8: (42, 51, 0.25)}  # fmt: skip
    local = {k: (x - head.sub_regions[k][0], y - head.sub_regions[k][1], p) for k, (x, y, p) in whole.items()}
    box = head.decode(torch.tensor([[14.0, 14.0, 42.0, 42.0]]), _peaks(local))[0]

    def edge(points, axis):
        w = [whole[k][2] for k in points]
        return sum(wk * (whole[k][axis] + 0.5) for wk, k in zip(w, points)) / sum(w)

    expected = [edge([0, 1, 2], 0), edge([0, 3, 6], 1), edge([6, 7, 8], 0), edge([2, 5, 8], 1)]
    assert box.tolist() == pytest.approx(expected, abs=1e-4)
    assert expected[0] == pytest.approx((0.75 * 10.5 + 0.5 * 12.5 + 0.5 * 11.5) / 1.75)


def test_decode_scales_with_the_box_and_inverts_the_targets():
    head = small_head()
    # box (100, 200, 156, 256): 2 image pixels per whole-map pixel, the map starts at (72, 172)
    peaks = {k: (5 + k, 7 + k, 0.9) for k in range(9)}
    box = head.decode(torch.tensor([[100.0, 200.0, 156.0, 256.0]]), _peaks(peaks))[0]
    xs = [2 * (head.sub_regions[k][0] + 5 + k + 0.5) + 72 for k in range(9)]
    ys = [2 * (head.sub_regions[k][1] + 7 + k + 0.5) + 172 for k in range(9)]
    expected = [sum(xs[:3]) / 3, sum(ys[0::3]) / 3, sum(xs[6:]) / 3, sum(ys[2::3]) / 3]
    assert box.tolist() == pytest.approx(expected, abs=1e-3)
    # decoding the targets of a gt returns it to within one whole-map pixel (2 px here)
    roi = torch.tensor([[100.0, 200.0, 156.0, 256.0]])
    gt = torch.tensor([[95.0, 210.0, 150.0, 262.0]])
    logits = head.get_targets(roi, gt, pos_radius=0) * 40 - 20
    assert torch.allclose(head.decode(roi, logits), gt, atol=2.0)
    with pytest.raises(ValueError, match="expected"):
        head.decode(roi, logits[:, :4])


# -- loss -------------------------------------------------------------------------------------------


def test_loss_is_weighted_bce_of_both_heatmaps():
    head = small_head()
    pred = {"fused": torch.randn(2, 9, 28, 28), "unfused": torch.randn(2, 9, 28, 28)}
    targets = (torch.rand(2, 9, 28, 28) > 0.95).float()
    loss = head.loss(pred, targets)
    assert set(loss) == {"loss_grid"}
    expected = 15 * (F.binary_cross_entropy_with_logits(pred["fused"], targets)
                     + F.binary_cross_entropy_with_logits(pred["unfused"], targets))  # fmt: skip
    assert loss["loss_grid"].item() == pytest.approx(expected.item(), rel=1e-5)
