"""MaskIoUHead: the area ratios and MaskIoU targets on hand-drawn masks (hand-computed IoUs, the
reference's area-ratio correction and its logit threshold), the forward pass against a plain
functional computation, the loss over the positive targets, the mask scores and the input checks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import detcore
from detcore.structures import Instances
from detcore.structures.masks import BitmapMasks, PolygonMasks

pytest.importorskip("det_plugin_ms_rcnn", reason="det-plugin-ms-rcnn is not installed")
from det_plugin_ms_rcnn import MaskIoUHead, area_ratios, mask_iou_targets  # noqa: E402


def _canvas_masks() -> BitmapMasks:
    """Two instances on a 20 x 20 canvas: an 8 x 8 square at x 2..9, y 4..11 (64 px) and a 4 x 10 bar
    at x 12..15, y 0..9 (40 px)."""
    masks = np.zeros((2, 20, 20), np.uint8)
    masks[0, 4:12, 2:10] = 1
    masks[1, 0:10, 12:16] = 1
    return BitmapMasks(masks, 20, 20)


def test_area_ratios_by_hand():
    gt = _canvas_masks()
    rois = torch.tensor(
        [
            [0.0, 0.0, 6.0, 20.0],  # columns 0..5 hold x 2..5 of the square: 4 x 8 = 32 of 64 px
            [2.9, 4.7, 10.2, 12.9],  # truncated to (2, 4, 10, 12): the whole square
            [12.0, 5.0, 20.0, 20.0],  # rows 5..9 of the bar: 4 x 5 = 20 of 40 px
            [0.0, 0.0, 1.0, 1.0],  # misses the square
        ]
    )
    ratios = area_ratios(rois, torch.tensor([0, 0, 1, 0]), gt)
    expected = torch.tensor([32 / 64, 1.0, 20 / 40, 0.0])
    assert torch.allclose(ratios, expected, atol=1e-6)
    assert ratios.dtype == torch.float32
    assert area_ratios(rois[:0], torch.zeros(0, dtype=torch.long), gt).shape == (0,)


def test_area_ratios_of_polygon_masks():
    """A 10 x 10 square polygon at (0, 0)-(10, 10); the RoI (0, 0, 10, 4) keeps 10 x 4 = 40 of 100."""
    poly = PolygonMasks([[np.array([0, 0, 10, 0, 10, 10, 0, 10], np.float64)]], 20, 20)
    ratios = area_ratios(torch.tensor([[0.0, 0.0, 10.0, 4.0]]), torch.tensor([0]), poly)
    assert ratios.item() == pytest.approx(0.4, abs=1e-6)


def test_area_ratios_refuse_bad_indices():
    with pytest.raises(IndexError, match="outside the 2 masks"):
        area_ratios(torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([2]), _canvas_masks())


def test_mask_iou_targets_by_hand():
    """4 x 4 targets. Row 0: the prediction covers 6 cells, the target 4 of which 3 overlap, and only
    half the instance lies in the RoI (full area 4 / 0.5 = 8): IoU = 3 / (6 + 8 - 3) = 3 / 11. Row 1:
    the same without the correction (ratio 1): 3 / (6 + 4 - 3) = 3 / 7. Row 2: logits of 0.3 have
    probability 0.57 but do not pass the reference's logit threshold 0.5, so the prediction is empty:
    IoU 0. Row 3: nothing predicted, nothing in the RoI: 0 (not NaN)."""
    target = torch.zeros(4, 4)
    target[0, 0:4] = 1  # 4 cells
    pred = torch.full((4, 4), -5.0)
    pred[0, 1:4] = 2.0  # 3 cells overlap the target
    pred[1, 0:3] = 0.6  # 3 more outside it: 6 predicted cells
    weak = torch.full((4, 4), -5.0)
    weak[0, :] = 0.3
    preds = torch.stack([pred, pred, weak, torch.full((4, 4), -5.0)])
    targets = torch.stack([target, target, target, torch.zeros(4, 4)])
    ratios = torch.tensor([0.5, 1.0, 1.0, 0.0])
    iou = mask_iou_targets(preds, targets, ratios, mask_thr_binary=0.5)
    assert torch.allclose(iou, torch.tensor([3 / 11, 3 / 7, 0.0, 0.0]), atol=1e-5)
    assert torch.isfinite(iou).all()


def test_get_targets_from_sampling_results_and_gt_masks():
    """Two RoIs on the canvas square, with the kernel's mask targets (crop and resize to 4 x 4): the
    RoI (2, 4, 10, 12) is the square (target all ones, ratio 1), the RoI (2, 4, 6, 12) its left half
    (target all ones, ratio 0.5). A prediction of all ones gives IoU 1 and 16 / 32 = 0.5."""
    from detcore.models.roi_heads.mask_target import mask_target

    gt = _canvas_masks()
    res = SimpleNamespace(
        pos_bboxes=torch.tensor([[2.0, 4.0, 10.0, 12.0], [2.0, 4.0, 6.0, 12.0]]),
        pos_assigned_gt_inds=torch.tensor([0, 0]),
    )
    targets = mask_target([res.pos_bboxes], [res.pos_assigned_gt_inds], [gt], {"mask_size": 4})
    assert torch.equal(targets, torch.ones(2, 4, 4))
    head = MaskIoUHead(num_convs=1, num_fcs=1, roi_feat_size=2, in_channels=2, conv_out_channels=2,
                       fc_out_channels=4, num_classes=3)  # fmt: skip
    iou = head.get_targets([res], [Instances(masks=gt)], torch.full((2, 4, 4), 3.0), targets, 0.5)
    assert torch.allclose(iou, torch.tensor([1.0, 0.5]), atol=1e-5)


def _tiny_head() -> MaskIoUHead:
    torch.manual_seed(0)
    head = MaskIoUHead(num_convs=2, num_fcs=2, roi_feat_size=4, in_channels=3, conv_out_channels=5,
                       fc_out_channels=6, num_classes=3)  # fmt: skip
    head.init_weights()
    return head


def test_forward_matches_a_functional_computation():
    """sigmoid -> 2x2 max pool -> concat as the last channel -> conv(s1) -> conv(s2) -> fc -> fc -> out."""
    head = _tiny_head()
    feats, masks = torch.randn(2, 3, 4, 4), torch.randn(2, 8, 8)
    x = torch.cat([feats, F.max_pool2d(masks.sigmoid()[:, None], 2)], 1)
    x = F.relu(F.conv2d(x, head.convs[0].weight, head.convs[0].bias, padding=1))
    x = F.relu(F.conv2d(x, head.convs[1].weight, head.convs[1].bias, stride=2, padding=1)).flatten(1)
    for fc in head.fcs:
        x = F.relu(F.linear(x, fc.weight, fc.bias))
    expected = F.linear(x, head.fc_mask_iou.weight, head.fc_mask_iou.bias)
    assert torch.allclose(head(feats, masks), expected, atol=1e-6)
    assert head.convs[0].in_channels == 4 and head.convs[1].stride == (2, 2)
    assert head.fcs[0].in_features == 5 * 2 * 2


def test_reference_layout_and_init():
    with torch.device("meta"):
        head = MaskIoUHead()
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes["convs.0.weight"] == (256, 257, 3, 3)
    assert shapes["fcs.0.weight"] == (1024, 256 * 7 * 7)
    assert shapes["fc_mask_iou.weight"] == (80, 1024)
    torch.manual_seed(0)
    head = MaskIoUHead(num_convs=2, roi_feat_size=4, in_channels=8, conv_out_channels=8, fc_out_channels=512)
    head.init_weights()
    with torch.no_grad():
        assert head.fc_mask_iou.weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert float(head.fc_mask_iou.bias.abs().max()) == 0.0
        # Caffe2Xavier: uniform(+-sqrt(3 / fan_in)); Kaiming fan_out: std sqrt(2 / (8 * 9))
        assert float(head.fcs[1].weight.abs().max()) <= (3 / 512) ** 0.5 + 1e-6
        assert head.convs[1].weight.std().item() == pytest.approx((2 / 72) ** 0.5, rel=0.15)


def test_loss_counts_only_positive_targets():
    head = _tiny_head()
    pred = torch.tensor([0.5, 0.2, 0.9, 0.4], requires_grad=True)
    target = torch.tensor([0.75, 0.0, 0.5, 0.0])
    loss = head.loss(pred, target)["loss_mask_iou"]
    # MSE over the two positive targets, times loss_weight 0.5
    assert loss.item() == pytest.approx(0.5 * ((0.25**2 + 0.4**2) / 2), abs=1e-6)
    empty = head.loss(pred, torch.zeros(4))["loss_mask_iou"]
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="differ"):
        head.loss(pred, target[:3])


def test_mask_scores_are_cls_score_times_the_class_iou():
    iou = torch.tensor([[0.1, 0.6, 0.3], [0.8, 0.2, 0.4]])
    scores = torch.tensor([0.5, 0.9])
    labels = torch.tensor([1, 0])
    out = MaskIoUHead.get_mask_scores(iou, scores, labels)
    assert torch.allclose(out, torch.tensor([0.5 * 0.6, 0.9 * 0.8]))


def test_bad_inputs_are_refused():
    head = _tiny_head()
    with pytest.raises(ValueError, match=r"mask features \(N, 3, 4, 4\)"):
        head(torch.randn(2, 4, 4, 4), torch.randn(2, 8, 8))
    with pytest.raises(ValueError, match=r"one \(8, 8\) mask per RoI"):
        head(torch.randn(2, 3, 4, 4), torch.randn(2, 6, 6))
    with pytest.raises(ValueError, match="roi_feat_size must be even"):
        MaskIoUHead(roi_feat_size=7)
    with pytest.raises(ValueError, match="num_convs and num_fcs"):
        MaskIoUHead(num_convs=0)
    with torch.device("meta"):
        built = detcore.build("roi_head", {"type": "MaskIoUHead", "num_classes": 3})
    assert isinstance(built, MaskIoUHead) and built.fc_mask_iou.out_features == 3
