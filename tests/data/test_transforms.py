import numpy as np
import pytest
import torch

from detcore.data.image_io import imread, imresize, imwrite
from detcore.data.transforms import (
    Expand,
    LoadAnnotations,
    LoadImageFromFile,
    MinIoURandomCrop,
    MultiScaleFlipAug,
    Normalize,
    PackDetInputs,
    Pad,
    RandomCrop,
    RandomFlip,
    Resize,
    SegRescale,
)
from detcore.data.transforms.photometric import PhotoMetricDistortion, bgr2hsv, hsv2bgr
from detcore.structures import BitmapMasks, PolygonMasks


def coord_image(h: int, w: int) -> np.ndarray:
    """uint8 image whose pixels encode their coordinates (y in channel 0, x in channel 1)."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = np.arange(h)[:, None]
    img[..., 1] = np.arange(w)[None, :]
    return img


def make_sample(h=40, w=60):
    """Image with a white rectangle exactly where the single box and mask are."""
    img = np.full((h, w, 3), 50, np.uint8)
    img[10:30, 20:50] = 255
    mask = np.zeros((1, h, w), np.uint8)
    mask[0, 10:30, 20:50] = 1
    seg = mask[0].copy()
    return {
        "img": img,
        "img_shape": img.shape,
        "ori_shape": img.shape,
        "img_fields": ["img"],
        "img_info": {"id": 7, "filename": "x.jpg", "width": w, "height": h},
        "gt_bboxes": np.array([[20, 10, 50, 30]], np.float32),
        "gt_labels": np.array([2]),
        "gt_bboxes_ignore": np.zeros((0, 4), np.float32),
        "gt_masks": BitmapMasks(mask, h, w),
        "gt_semantic_seg": seg,
        "bbox_fields": ["gt_bboxes", "gt_bboxes_ignore"],
        "mask_fields": ["gt_masks"],
        "seg_fields": ["gt_semantic_seg"],
    }


def white_region(img):
    return (img[..., 0] > 200).astype(np.uint8) if img.ndim == 3 else (img > 200).astype(np.uint8)


def test_resize_keep_ratio_reference_numerics():
    s = Resize(img_scale=(1333, 800), keep_ratio=True)(make_sample(40, 60))
    # factor = min(1333 / 60, 800 / 40) = 20 -> (1200, 800)
    assert (
        s["img"].shape == (800, 1200, 3)
        and s["img_shape"] == (800, 1200, 3)
        and s["pad_shape"] == (800, 1200, 3)
    )
    np.testing.assert_allclose(s["scale_factor"], [20, 20, 20, 20])
    assert s["scale_factor"].dtype == np.float32 and s["keep_ratio"] and s["scale"] == (1333, 800)
    np.testing.assert_allclose(s["gt_bboxes"], [[400, 200, 1000, 600]])
    assert s["gt_masks"].masks.shape == (1, 800, 1200)
    # masks use nearest resampling: they equal the white region of the nearest-resized image, and the
    # bilinear image differs from it only on the region's border
    nearest = white_region(imresize(make_sample(40, 60)["img"], (1200, 800), "nearest"))
    np.testing.assert_array_equal(s["gt_masks"].masks[0], nearest)
    np.testing.assert_array_equal(s["gt_masks"].masks[0][200:600, 400:1000], 1)
    assert s["gt_masks"].masks[0].sum() == 400 * 600
    assert abs(int((s["img"][..., 0] > 152).sum()) - 400 * 600) < 2 * (400 + 600) * 10
    np.testing.assert_array_equal(s["gt_semantic_seg"], s["gt_masks"].masks[0])
    # rounding rule int(x * s + 0.5): 37x53 to (1333, 800) -> s = min(1333/53, 800/37)
    f = min(1333 / 53, 800 / 37)
    out = Resize(img_scale=[1333, 800])(make_sample(37, 53))
    assert out["img"].shape[:2] == (int(37 * f + 0.5), int(53 * f + 0.5))


def test_resize_no_keep_ratio_and_multiscale():
    s = Resize(img_scale=(30, 80), keep_ratio=False)(make_sample(40, 60))
    assert s["img"].shape == (80, 30, 3)
    np.testing.assert_allclose(s["scale_factor"], [0.5, 2, 0.5, 2])
    np.testing.assert_allclose(s["gt_bboxes"], [[10, 20, 25, 60]])
    np.random.seed(0)
    seen = {
        Resize(img_scale=[[100, 50], [200, 60]], multiscale_mode="value")(make_sample())["scale"]
        for _ in range(20)
    }
    assert seen == {(100, 50), (200, 60)}
    for _ in range(10):
        sc = Resize(img_scale=[[100, 50], [200, 60]], multiscale_mode="range")(make_sample())["scale"]
        assert 100 <= sc[0] <= 200 and 50 <= sc[1] <= 60


def test_bilinear_resize_matches_opencv_grid():
    # a horizontal ramp downscaled by 2 with align_corners=False samples at 2x+0.5 -> mean of neighbours
    img = np.tile(np.arange(0, 80, 10, dtype=np.uint8)[None, :, None], (2, 1, 3))
    out = imresize(img, (4, 1))
    np.testing.assert_array_equal(out[0, :, 0], [5, 25, 45, 65])


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_moves_boxes_masks_and_image_together(direction):
    s = RandomFlip(flip_ratio=1.0, direction=direction)(make_sample())
    assert s["flip"] and s["flip_direction"] == direction
    region = white_region(s["img"])
    np.testing.assert_array_equal(s["gt_masks"].masks[0], region)
    np.testing.assert_array_equal(s["gt_semantic_seg"], region)
    ys, xs = np.nonzero(region)
    np.testing.assert_allclose(s["gt_bboxes"], [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]])
    assert not RandomFlip(flip_ratio=0.0)(make_sample())["flip"]
    assert not RandomFlip()(make_sample())["flip"]


def test_pad_size_divisor_and_fixed():
    s = Pad(size_divisor=32)(make_sample(40, 60))
    assert s["img"].shape == (64, 64, 3) and s["pad_shape"] == (64, 64, 3)
    assert s["pad_size_divisor"] == 32 and s["pad_fixed_size"] is None and s["img_shape"] == (40, 60, 3)
    assert (s["img"][40:] == 0).all() and s["gt_masks"].masks.shape == (1, 64, 64)
    assert (s["gt_semantic_seg"][40:] == 255).all()
    s = Pad(size=(50, 70), pad_val=3)(make_sample(40, 60))
    assert s["img"].shape == (50, 70, 3) and (s["img"][:, 60:] == 3).all() and s["pad_fixed_size"] == (50, 70)


def test_normalize_to_rgb():
    s = make_sample()
    s["img"][0, 0] = [10, 20, 30]  # BGR
    out = Normalize(mean=[1, 2, 3], std=[2, 4, 8], to_rgb=True)(s)
    np.testing.assert_allclose(out["img"][0, 0], [(30 - 1) / 2, (20 - 2) / 4, (10 - 3) / 8], rtol=1e-6)
    assert out["img"].dtype == np.float32 and out["img_norm_cfg"]["to_rgb"]


def test_random_crop_is_consistent():
    np.random.seed(1)
    s = make_sample(40, 60)
    s["img"] = coord_image(40, 60)
    s["img"][10:30, 20:50, 2] = 255
    out = RandomCrop(crop_size=(30, 40))(s)
    assert out["img"].shape == (30, 40, 3) and out["img_shape"] == (30, 40, 3)
    y0, x0 = int(out["img"][0, 0, 0]), int(out["img"][0, 0, 1])
    expected = np.clip(np.array([20 - x0, 10 - y0, 50 - x0, 30 - y0], np.float32), 0, [40, 30, 40, 30])
    np.testing.assert_allclose(out["gt_bboxes"][0], expected)
    np.testing.assert_array_equal(out["gt_masks"].masks[0], (out["img"][..., 2] == 255).astype(np.uint8))
    # a crop that loses every box drops the sample
    s = make_sample(40, 60)
    s["gt_bboxes"] = np.array([[0, 0, 2, 2]], np.float32)
    np.random.seed(0)
    results = [RandomCrop(crop_size=(5, 5))(dict(s, img=s["img"].copy())) for _ in range(30)]
    assert any(r is None for r in results)


def test_expand_and_min_iou_crop_move_boxes_with_pixels():
    np.random.seed(2)
    s = make_sample(40, 60)
    out = Expand(mean=(0, 0, 0), to_rgb=False, ratio_range=(2, 2), prob=1.0)(s)
    assert out["img"].shape == (80, 120, 3)
    region = white_region(out["img"])
    np.testing.assert_array_equal(out["gt_masks"].masks[0], region)
    ys, xs = np.nonzero(region)
    np.testing.assert_allclose(out["gt_bboxes"], [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]])
    np.random.seed(5)
    for _ in range(5):
        out = MinIoURandomCrop(min_ious=(0.1,), min_crop_size=0.5)(make_sample(40, 60))
        region = white_region(out["img"])
        np.testing.assert_array_equal(out["gt_masks"].masks[0], region)
        if len(out["gt_bboxes"]):
            ys, xs = np.nonzero(region)
            np.testing.assert_allclose(out["gt_bboxes"][0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_seg_rescale_and_photometric():
    s = SegRescale(scale_factor=0.5)(make_sample(40, 60))
    assert s["gt_semantic_seg"].shape == (20, 30) and s["gt_semantic_seg"][5:15, 10:25].all()
    rgb = np.random.RandomState(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(hsv2bgr(bgr2hsv(rgb)), rgb, atol=1e-3)
    # pure red (BGR (0, 0, 255)) has hue 0, saturation 1
    np.testing.assert_allclose(bgr2hsv(np.array([[[0, 0, 255.0]]], np.float32))[0, 0], [0, 1, 255])
    np.random.seed(0)
    out = PhotoMetricDistortion()(make_sample())
    assert out["img"].dtype == np.float32 and out["img"].shape == (40, 60, 3)
    np.testing.assert_allclose(out["gt_bboxes"], [[20, 10, 50, 30]])


def test_loading_and_packing(tmp_path):
    img = np.zeros((6, 8, 3), np.uint8)
    img[..., 0] = 10  # B
    img[..., 2] = 200  # R
    imwrite(img, str(tmp_path / "a.png"))
    assert imread(str(tmp_path / "a.png"))[0, 0].tolist() == [10, 0, 200]
    results = {
        "img_info": {"id": 3, "filename": "a.png", "width": 8, "height": 6},
        "img_prefix": str(tmp_path),
        "ann_info": {
            "bboxes": np.array([[1, 1, 5, 4]], np.float32),
            "labels": np.array([1]),
            "bboxes_ignore": np.array([[0, 0, 2, 2]], np.float32),
            "masks": [[[1, 1, 5, 1, 5, 4, 1, 4]]],
        },
        "bbox_fields": [],
        "mask_fields": [],
        "seg_fields": [],
    }
    r = LoadImageFromFile(to_float32=True)(dict(results))
    assert r["img"].dtype == np.float32 and r["ori_shape"] == (6, 8, 3) and r["filename"].endswith("a.png")
    assert LoadImageFromFile(color_type="grayscale")(dict(results))["img"].shape == (6, 8)
    r = LoadAnnotations(with_mask=True)(r)
    assert isinstance(r["gt_masks"], BitmapMasks) and r["gt_masks"].masks[0].sum() == 12
    assert r["bbox_fields"] == ["gt_bboxes", "gt_bboxes_ignore"] and r["mask_fields"] == ["gt_masks"]
    r2 = LoadAnnotations(with_mask=True, poly2mask=False)(dict(results, bbox_fields=[], mask_fields=[]))
    assert isinstance(r2["gt_masks"], PolygonMasks)
    packed = PackDetInputs()(r)
    assert set(packed) == {"img", "img_meta", "gt_instances", "gt_ignored_instances"}
    assert packed["img"].shape == (3, 6, 8) and packed["img"].dtype == torch.float32
    assert packed["img_meta"]["img_id"] == 3 and packed["img_meta"]["ori_shape"] == (6, 8, 3)
    gt = packed["gt_instances"]
    assert gt.bboxes.dtype == torch.float32 and gt.labels.dtype == torch.long and gt.labels.tolist() == [1]
    assert isinstance(gt.masks, BitmapMasks) and packed["gt_ignored_instances"].bboxes.shape == (1, 4)


def test_multiscale_flip_aug(tmp_path):
    inner = [dict(type="Resize", keep_ratio=True), dict(type="RandomFlip"), dict(type="PackDetInputs")]
    one = MultiScaleFlipAug(inner, img_scale=(120, 80))(make_sample(40, 60))
    assert isinstance(one, dict) and one["img"].shape == (3, 80, 120) and one["img_meta"]["flip"] is False
    many = MultiScaleFlipAug(inner, img_scale=[(120, 80), (60, 40)], flip=True)(make_sample(40, 60))
    assert isinstance(many, list) and len(many) == 4
    assert [m["img_meta"]["flip"] for m in many] == [False, True, False, True]
    assert [m["img"].shape[1] for m in many] == [80, 80, 40, 40]
    # the flipped copy is the mirror image of the unflipped one
    torch.testing.assert_close(many[1]["img"], many[0]["img"].flip(-1))
