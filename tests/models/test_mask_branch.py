"""The mask branch: mask targets (bitmap, polygon), mask pasting, FCNMaskHead structure, loss, predict."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detcore.models.roi_heads.mask_heads import FCNMaskHead, paste_masks_in_image
from detcore.models.roi_heads.mask_target import mask_target, mask_target_single
from detcore.structures.instances import Instances
from detcore.structures.masks import BitmapMasks, PolygonMasks

# ------------------------------------------------------------------------------- mask targets


def _quadrant_mask() -> BitmapMasks:
    """A 40x40 mask that is 1 on rows >= 13 and columns >= 17."""
    m = np.zeros((1, 40, 40), np.uint8)
    m[0, 13:, 17:] = 1
    return BitmapMasks(m, 40, 40)


def _quadrant_weights() -> tuple[np.ndarray, np.ndarray]:
    """Hand computation for the box (10, 10, 24, 24) at 28x28: each bin is 0.5 px and holds one sample
    (sampling_ratio 0 -> ceil(0.5)), at pixel-index coordinate 9.75 + 0.5 j (aligned: -0.5). Bilinear
    weight of the ones: clip(u - 16, 0, 1) along x, clip(u - 12, 0, 1) along y."""
    u = 9.75 + 0.5 * np.arange(28)
    return np.clip(u - 12, 0, 1), np.clip(u - 16, 0, 1)  # (wy, wx)


def test_bitmap_mask_target_matches_hand_computation() -> None:
    wy, wx = _quadrant_weights()
    proposals = torch.tensor([[10.0, 10.0, 24.0, 24.0]])
    soft = mask_target_single(
        proposals, torch.tensor([0]), _quadrant_mask(), {"mask_size": 28, "soft_mask_target": True}
    )
    np.testing.assert_allclose(soft[0].numpy(), wy[:, None] * wx[None, :], atol=1e-6)
    hard = mask_target_single(proposals, torch.tensor([0]), _quadrant_mask(), {"mask_size": 28})
    expected = (wy[:, None] * wx[None, :]) >= 0.5  # rows >= 6 and columns >= 14 (0.75 * 0.75 = 0.5625)
    assert expected[6:, 14:].all() and not expected[:6].any() and not expected[:, :14].any()
    assert hard.dtype == torch.float32 and hard.shape == (1, 28, 28)
    np.testing.assert_array_equal(hard[0].numpy(), expected.astype(np.float32))


def test_mask_target_clips_rois_to_the_mask_and_picks_the_assigned_gt() -> None:
    masks = np.zeros((2, 40, 40), np.uint8)
    masks[1] = 1  # gt 1 covers everything, gt 0 nothing
    gt = BitmapMasks(masks, 40, 40)
    # the roi reaches outside the image: clipped to (0, 0, 40, 40), so its crop is all ones
    proposals = torch.tensor([[-20.0, -20.0, 40.0, 60.0], [0.0, 0.0, 10.0, 10.0]])
    t = mask_target_single(proposals, torch.tensor([1, 0]), gt, {"mask_size": (14, 7)})
    assert t.shape == (2, 14, 7)
    assert t[0].min() == 1 and t[1].max() == 0


def test_polygon_mask_target_matches_hand_computation() -> None:
    # square (10..20) x (10..20); box (5, 10, 25, 20): x scale 28 / 20 = 1.4, y scale 28 / 10 = 2.8
    # -> the polygon becomes x in [(10 - 5) * 1.4, (20 - 5) * 1.4] = [7, 21], y in [0, 28]
    gt = PolygonMasks([[np.array([10, 10, 20, 10, 20, 20, 10, 20.0])]], 40, 40)
    t = mask_target_single(torch.tensor([[5.0, 10.0, 25.0, 20.0]]), torch.tensor([0]), gt, {"mask_size": 28})
    expected = np.zeros((28, 28), np.float32)
    expected[:, 7:21] = 1
    np.testing.assert_array_equal(t[0].numpy(), expected)


def test_polygon_target_of_a_sub_pixel_box_scales_as_one_pixel() -> None:
    # box 0.2 px wide: the reference widens it to 1 px, so x scale is 28 (not 140)
    gt = PolygonMasks([[np.array([0, 0, 0.5, 0, 0.5, 28, 0, 28.0])]], 40, 40)
    t = mask_target_single(torch.tensor([[0.0, 0.0, 0.2, 1.0]]), torch.tensor([0]), gt, {"mask_size": 28})
    assert t[0, 0].sum() == 14  # x in [0, 0.5 * 28 = 14)


def test_mask_target_batch_concatenates_and_handles_no_positive() -> None:
    cfg = {"mask_size": 28}
    t = mask_target(
        [torch.zeros((0, 4)), torch.tensor([[10.0, 10.0, 24.0, 24.0]])],
        [torch.zeros(0, dtype=torch.long), torch.tensor([0])],
        [_quadrant_mask(), _quadrant_mask()],
        cfg,
    )
    assert t.shape == (1, 28, 28)
    with pytest.raises(KeyError, match="mask_size"):
        mask_target_single(torch.zeros((1, 4)), torch.tensor([0]), _quadrant_mask(), {})
    with pytest.raises(TypeError, match="BitmapMasks or PolygonMasks"):
        mask_target_single(torch.zeros((1, 4)), torch.tensor([0]), np.zeros((1, 4, 4)), cfg)


# ------------------------------------------------------------------------------- pasting


def _slow_paste(masks: np.ndarray, boxes: np.ndarray, h: int, w: int, window: bool) -> np.ndarray:
    """Per-pixel reference: pixel (x, y) samples mask coordinate u = (x + 0.5 - x0) / (x1 - x0) * M - 0.5
    (grid_sample's align_corners=False un-normalisation) bilinearly with zero padding."""
    n, mh, mw = masks.shape
    out = np.zeros((n, h, w), np.float64)

    def tap(m: np.ndarray, r: int, c: int) -> float:
        return float(m[r, c]) if 0 <= r < mh and 0 <= c < mw else 0.0

    for k in range(n):
        x0, y0, x1, y1 = boxes[k]
        if window:
            xs = range(max(math.floor(x0) - 1, 0), min(math.ceil(x1) + 1, w))
            ys = range(max(math.floor(y0) - 1, 0), min(math.ceil(y1) + 1, h))
        else:
            xs, ys = range(w), range(h)
        for y in ys:
            v = (y + 0.5 - y0) / (y1 - y0) * mh - 0.5
            for x in xs:
                u = (x + 0.5 - x0) / (x1 - x0) * mw - 0.5
                c, r = math.floor(u), math.floor(v)
                fu, fv = u - c, v - r
                out[k, y, x] = (
                    tap(masks[k], r, c) * (1 - fu) * (1 - fv)
                    + tap(masks[k], r, c + 1) * fu * (1 - fv)
                    + tap(masks[k], r + 1, c) * (1 - fu) * fv
                    + tap(masks[k], r + 1, c + 1) * fu * fv
                )
    return out


def test_paste_puts_a_known_mask_at_its_pixels() -> None:
    mask = torch.zeros(1, 28, 28)
    mask[0, :, :14] = 1  # left half
    # box 8 px wide: pixel x samples u = (x + 0.5 - 2) / 8 * 28 - 0.5: x = 5 -> 11.75 (ones), x = 6 -> 15.25
    out = paste_masks_in_image(mask, torch.tensor([[2.0, 3.0, 10.0, 8.0]]), 12, 16)
    expected = torch.zeros(12, 16, dtype=torch.bool)
    expected[3:8, 2:6] = True
    assert out.dtype == torch.bool and out.shape == (1, 12, 16)
    assert torch.equal(out[0], expected)


@pytest.mark.parametrize("skip_empty", [True, False])
def test_paste_equals_the_slow_per_pixel_reference(skip_empty: bool) -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 7, 7, generator=g)
    boxes = torch.tensor(
        [
            [1.3, 2.2, 9.7, 11.1],
            [0.0, 0.0, 30.0, 20.0],
            [-3.0, 5.5, 6.2, 30.0],
            [20.1, 1.0, 29.9, 4.6],
            [12.0, 9.0, 12.5, 9.5],
        ]
    )
    h, w = 21, 31
    slow = _slow_paste(masks.double().numpy(), boxes.double().numpy(), h, w, window=skip_empty)
    for thr in (0.5, 0.3):
        fast = paste_masks_in_image(masks, boxes, h, w, threshold=thr, skip_empty=skip_empty)
        far = np.abs(slow - thr) > 1e-5  # float32 vs float64: only compare away from the threshold
        np.testing.assert_array_equal(fast.numpy()[far], (slow >= thr)[far])
    raw = paste_masks_in_image(masks, boxes, h, w, threshold=-1, skip_empty=skip_empty)
    assert raw.dtype == torch.uint8
    assert np.abs(raw.numpy().astype(np.float64) - np.floor(slow * 255)).max() <= 1


def test_paste_window_matters_only_below_half() -> None:
    # a 600 px wide box: pixel 18, just left of its window [19, 621), samples u = -1.5 / 600 * 28 - 0.5
    # = -0.57, i.e. 0.43 of the mask's first column: above 0.3, below 0.5
    masks = torch.ones(1, 28, 28) * 0.99
    boxes = torch.tensor([[20.0, 2.0, 620.0, 10.0]])
    windowed = paste_masks_in_image(masks, boxes, 12, 640, threshold=0.3, skip_empty=True)
    full = paste_masks_in_image(masks, boxes, 12, 640, threshold=0.3, skip_empty=False)
    assert not windowed[0, :, 18].any() and full[0, 5, 18]
    assert torch.equal(
        paste_masks_in_image(masks, boxes, 12, 640, skip_empty=True),
        paste_masks_in_image(masks, boxes, 12, 640, skip_empty=False),
    )


def _per_instance_paste(masks: torch.Tensor, boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The reference's way on the CPU: one grid_sample per instance on its own window."""
    out = torch.zeros(len(masks), h, w, dtype=torch.bool)
    for k in range(len(masks)):
        x0, y0 = int(max(boxes[k, 0].floor() - 1, 0)), int(max(boxes[k, 1].floor() - 1, 0))
        x1, y1 = int(min(boxes[k, 2].ceil() + 1, w)), int(min(boxes[k, 3].ceil() + 1, h))
        gx = ((torch.arange(x0, x1).float() + 0.5) - boxes[k, 0]) / (boxes[k, 2] - boxes[k, 0]) * 2 - 1
        gy = ((torch.arange(y0, y1).float() + 0.5) - boxes[k, 1]) / (boxes[k, 3] - boxes[k, 1]) * 2 - 1
        grid = torch.stack([gx[None, :].expand(len(gy), -1), gy[:, None].expand(-1, len(gx))], 2)[None]
        out[k, y0:y1, x0:x1] = F.grid_sample(masks[k][None, None], grid, align_corners=False)[0, 0] >= 0.5
    return out


@pytest.fixture
def grid_sample_calls(monkeypatch) -> list[int]:
    """The batch size of every F.grid_sample call."""
    calls: list[int] = []
    real = F.grid_sample

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "grid_sample", counting)
    return calls


def test_paste_samples_similar_windows_in_one_call(grid_sample_calls) -> None:
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(6, 28, 28, generator=g)
    xy = torch.rand(6, 2, generator=g) * 40
    # boxes 20-26 px: windows of 22-29 px, all in the same power of two (17..32)
    boxes = torch.cat([xy, xy + 20 + torch.rand(6, 2, generator=g) * 6], 1)
    expected = _per_instance_paste(masks, boxes, 70, 80)
    grid_sample_calls.clear()
    assert torch.equal(paste_masks_in_image(masks, boxes, 70, 80), expected)
    assert grid_sample_calls == [6]
    grid_sample_calls.clear()
    # a memory bound that fits two padded windows (at most 29 x 29 px) per call
    assert torch.equal(paste_masks_in_image(masks, boxes, 70, 80, chunk_bytes=2 * 29 * 29 * 24), expected)
    assert grid_sample_calls == [2, 2, 2]


def test_paste_groups_by_window_size_not_by_instance(grid_sample_calls) -> None:
    g = torch.Generator().manual_seed(2)
    n = 60
    masks = torch.rand(n, 28, 28, generator=g)
    xy = torch.rand(n, 2, generator=g) * 100
    sizes = torch.tensor([4.0, 12.0, 40.0])[torch.arange(n) % 3]  # three sizes: at most 3 x 3 groups
    boxes = torch.cat([xy, xy + sizes[:, None] * (1 + 0.1 * torch.rand(n, 2, generator=g))], 1)
    expected = _per_instance_paste(masks, boxes, 150, 160)
    grid_sample_calls.clear()
    assert torch.equal(paste_masks_in_image(masks, boxes, 150, 160), expected)
    assert 3 <= len(grid_sample_calls) <= 9 and sum(grid_sample_calls) == n


def test_paste_no_detection_and_bad_shapes() -> None:
    out = paste_masks_in_image(torch.zeros(0, 28, 28), torch.zeros(0, 4), 7, 9)
    assert out.shape == (0, 7, 9) and out.dtype == torch.bool
    with pytest.raises(ValueError, match="boxes must be"):
        paste_masks_in_image(torch.zeros(2, 28, 28), torch.zeros(3, 4), 7, 9)


# ------------------------------------------------------------------------------- FCNMaskHead


def test_fcn_mask_head_structure_and_init() -> None:
    head = FCNMaskHead(num_classes=80)
    head.init_weights()
    keys = list(head.state_dict())
    assert keys == [f"convs.{i}.conv.{p}" for i in range(4) for p in ("weight", "bias")] + [
        "upsample.weight",
        "upsample.bias",
        "conv_logits.weight",
        "conv_logits.bias",
    ]
    assert tuple(head.upsample.weight.shape) == (256, 256, 2, 2)
    # 4 * (256*256*9 + 256) + (256*256*4 + 256) + (256*80 + 80)
    assert sum(p.numel() for p in head.parameters()) == 4 * (589824 + 256) + 262400 + 20560
    assert head(torch.randn(2, 256, 14, 14)).shape == (2, 80, 28, 28)
    # kaiming normal, fan_out: std = sqrt(2 / (out_channels * k * k))
    std = head.conv_logits.weight.std().item()
    assert abs(std - math.sqrt(2 / 80)) / math.sqrt(2 / 80) < 0.05
    assert head.conv_logits.bias.abs().max() == 0 and head.upsample.bias.abs().max() == 0


@pytest.mark.parametrize("method", ["nearest", "bilinear", None])
def test_fcn_mask_head_upsample_options(method: str | None) -> None:
    head = FCNMaskHead(
        num_convs=2,
        in_channels=8,
        conv_out_channels=16,
        num_classes=3,
        class_agnostic=True,
        upsample_cfg={"type": method, "scale_factor": 2},
        norm_cfg={"type": "GN", "num_groups": 4},
    )
    assert "upsample.weight" not in head.state_dict()
    assert "convs.0.gn.weight" in head.state_dict() and "convs.0.conv.bias" not in head.state_dict()
    side = 28 if method else 14
    assert head(torch.randn(3, 8, 14, 14)).shape == (3, 1, side, side)
    with pytest.raises(ValueError, match="carafe"):
        FCNMaskHead(upsample_cfg={"type": "carafe", "scale_factor": 2})


def _sampling(pos_bboxes: list[list[float]], gt_inds: list[int], labels: list[int]) -> SimpleNamespace:
    return SimpleNamespace(
        pos_bboxes=torch.tensor(pos_bboxes).reshape(-1, 4),
        pos_assigned_gt_inds=torch.tensor(gt_inds, dtype=torch.long),
        pos_gt_labels=torch.tensor(labels, dtype=torch.long),
    )


def test_mask_loss_is_bce_of_the_label_channel() -> None:
    head = FCNMaskHead(num_convs=0, in_channels=4, num_classes=3, upsample_cfg=None, roi_feat_size=28)
    gt = Instances(bboxes=torch.zeros(1, 4), labels=torch.tensor([2]), masks=_quadrant_mask())
    res = _sampling([[10.0, 10.0, 24.0, 24.0]], [0], [2])
    g = torch.Generator().manual_seed(0)
    preds = torch.randn(1, 3, 28, 28, generator=g, requires_grad=True)
    out = head.loss_and_target(preds, [res], [gt], {"mask_size": 28})
    wy, wx = _quadrant_weights()
    target = torch.from_numpy(((wy[:, None] * wx[None, :]) >= 0.5).astype(np.float32))
    assert torch.equal(out["mask_targets"][0], target)
    x = preds[0, 2].detach()
    bce = (torch.clamp(x, min=0) - x * target + torch.log1p(torch.exp(-x.abs()))).mean()
    assert torch.allclose(out["loss_mask"].reshape(()), bce, atol=1e-6)
    out["loss_mask"].sum().backward()
    assert preds.grad[0, 2].abs().sum() > 0 and preds.grad[0, :2].abs().sum() == 0
    # class agnostic: the only channel
    agn = FCNMaskHead(num_convs=0, in_channels=4, class_agnostic=True, upsample_cfg=None, roi_feat_size=28)
    out = agn.loss_and_target(preds[:, 2:3].detach(), [res], [gt], {"mask_size": 28})
    assert torch.allclose(out["loss_mask"].reshape(()), bce, atol=1e-6)


def test_mask_loss_without_positives_is_zero_and_differentiable() -> None:
    head = FCNMaskHead(num_classes=3)
    gt = Instances(bboxes=torch.zeros(1, 4), labels=torch.tensor([2]), masks=_quadrant_mask())
    preds = head(torch.zeros(0, 256, 14, 14))
    out = head.loss_and_target(preds, [_sampling([], [], [])], [gt], {"mask_size": 28})
    assert out["loss_mask"].item() == 0 and out["loss_mask"].requires_grad
    assert out["mask_targets"].shape == (0, 28, 28)
    with pytest.raises(KeyError, match="with_mask"):
        head.loss_and_target(
            preds, [_sampling([], [], [])], [Instances(bboxes=torch.zeros(0, 4))], {"mask_size": 28}
        )


def test_predict_by_feat_rescales_and_pastes_the_label_channel() -> None:
    head = FCNMaskHead(num_classes=3)
    logits = torch.full((2, 3, 28, 28), -10.0)
    logits[0, 1, :, :14] = 10.0  # detection 0 (label 1): left half; other channels empty
    logits[1, 0] = 10.0  # detection 1 (label 0): its whole box
    logits[1, 2] = -10.0
    results = Instances(
        bboxes=torch.tensor([[4.0, 6.0, 20.0, 16.0], [0.0, 0.0, 8.0, 4.0]]),
        scores=torch.tensor([0.9, 0.8]),
        labels=torch.tensor([1, 0]),
    )
    meta = {"ori_shape": (12, 16, 3), "img_shape": (24, 32, 3), "scale_factor": [2.0, 2.0, 2.0, 2.0]}
    out = head.predict_by_feat([logits], [results], [meta], {"mask_thr_binary": 0.5}, rescale=True)[0]
    assert torch.equal(out.bboxes, torch.tensor([[2.0, 3.0, 10.0, 8.0], [0.0, 0.0, 4.0, 2.0]]))
    expected = torch.zeros(2, 12, 16, dtype=torch.bool)
    expected[0, 3:8, 2:6] = True
    expected[1, 0:2, 0:4] = True
    assert out.masks.dtype == torch.bool and torch.equal(out.masks, expected)
    # without rescale: the resized image's size and boxes
    results = Instances(
        bboxes=torch.tensor([[4.0, 6.0, 20.0, 16.0]]),
        scores=torch.ones(1),
        labels=torch.ones(1, dtype=torch.long),
    )
    out = head.predict_by_feat([logits[:1]], [results], [meta], {"mask_thr_binary": 0.5}, rescale=False)[0]
    assert out.masks.shape == (1, 24, 32) and out.masks[0].sum() == 8 * 10


def test_predict_by_feat_no_detection() -> None:
    head = FCNMaskHead(num_classes=3)
    empty = Instances(
        bboxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long)
    )
    meta = {"ori_shape": (12, 16, 3), "scale_factor": [1.5, 1.5, 1.5, 1.5]}
    out = head.predict_by_feat(
        [torch.zeros(0, 3, 28, 28)], [empty], [meta], {"mask_thr_binary": 0.5}, rescale=True
    )[0]
    assert out.masks.shape == (0, 12, 16) and out.masks.dtype == torch.bool
    with pytest.raises(KeyError, match="mask_thr_binary"):
        head.predict_by_feat([torch.zeros(0, 3, 28, 28)], [empty], [meta], {}, rescale=True)
