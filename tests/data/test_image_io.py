"""Decode and resize pixels against hand-computed values (OpenCV's rules, as the reference uses them)."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from detcore.data.image_io import ImageReadError, imfrombytes, imread, imrescale, imresize, imwrite
from detcore.data.transforms import LoadImageFromFile, Resize
from detcore.structures import BitmapMasks

# RGB pixels as a Pillow-encoded file holds them (Pillow is only the independent encoder here)
RGB = np.array([[[10, 200, 30], [255, 0, 0]], [[0, 0, 255], [90, 90, 90]]], np.uint8)


def encoded(arr: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format=fmt)
    return buf.getvalue()


def test_decode_png_is_bgr_then_channel_order(tmp_path):
    (tmp_path / "a.png").write_bytes(encoded(RGB, "PNG"))
    bgr = imread(str(tmp_path / "a.png"))
    assert bgr.dtype == np.uint8 and bgr.shape == (2, 2, 3)
    assert bgr[0, 0].tolist() == [30, 200, 10] and bgr[0, 1].tolist() == [0, 0, 255]
    np.testing.assert_array_equal(imread(str(tmp_path / "a.png"), channel_order="rgb"), RGB)
    # grayscale: ITU-R 601 luma; grey stays grey, pure red 0.299 * 255 = 76.2, pure blue 0.114 * 255 = 29.1
    gray = imread(str(tmp_path / "a.png"), "grayscale")
    assert gray.shape == (2, 2) and gray[1, 1] == 90 and gray[0, 1] == 76 and gray[1, 0] == 29


def test_decode_unchanged_keeps_depth_and_alpha(tmp_path):
    deep = np.array([[0, 1000], [40000, 65535]], np.uint16)
    (tmp_path / "d.png").write_bytes(encoded(deep, "PNG"))
    out = imread(str(tmp_path / "d.png"), "unchanged")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, deep)
    # the same file read as 'color' is 8 bits, 3 channels (the high byte: 40000 >> 8 = 156)
    assert imread(str(tmp_path / "d.png"))[1, 0].tolist() == [156, 156, 156]
    rgba = np.concatenate([RGB, np.full((2, 2, 1), 7, np.uint8)], axis=2)
    bgra = imfrombytes(encoded(rgba, "PNG"), "unchanged")
    assert bgra.shape == (2, 2, 4) and bgra[0, 0].tolist() == [30, 200, 10, 7]


def test_pillow_fallback_warns_and_corrupt_file_errors(tmp_path):
    # OpenCV has no TGA decoder: Pillow decodes it, in BGR like OpenCV, and says so
    (tmp_path / "a.tga").write_bytes(encoded(RGB, "TGA"))
    with pytest.warns(UserWarning, match=r"a\.tga: OpenCV cannot decode this TGA file; decoded with Pillow"):
        out = imread(str(tmp_path / "a.tga"))
    assert out[0, 0].tolist() == [30, 200, 10]
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ImageReadError, match=r"bad\.jpg: OpenCV cannot read it and Pillow fails"):
        imread(str(tmp_path / "bad.jpg"))
    with pytest.raises(ImageReadError, match="not found"):
        imread(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="channel_order"):
        imread(str(tmp_path / "a.tga"), channel_order="gbr")


def test_png_written_and_read_back_without_warning(tmp_path):
    img = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    imwrite(img, str(tmp_path / "w.png"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(imread(str(tmp_path / "w.png")), img)


def test_bilinear_upscale_2x2_half_pixel_centres():
    # 2 -> 4: src = (dst + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25; the outer two clamp to the edge
    # pixel, so the weights per axis are (1, 0), (.75, .25), (.25, .75), (0, 1)
    img = np.array([[0, 100], [200, 40]], np.uint8)
    expected = [
        [0, 25, 75, 100],
        [50, 59, 76, 85],  # .75 * [0, 25, 75, 100] + .25 * [200, 160, 80, 40] = 50, 58.75, 76.25, 85
        [150, 126, 79, 55],  # .25 * row 0 + .75 * row 3 = 150, 126.25, 78.75, 55
        [200, 160, 80, 40],
    ]
    np.testing.assert_array_equal(imresize(img, (4, 4)), expected)
    out3 = imresize(np.repeat(img[:, :, None], 3, axis=2), (4, 4))
    assert out3.shape == (4, 4, 3) and (out3 == np.asarray(expected, np.uint8)[:, :, None]).all()


def test_bilinear_downscale_4x3_fixed_point_rounding():
    # 4 rows x 3 cols -> (w, h) = (2, 3). x: src = 0.25, 1.75 (weights .75/.25 of cols 0-1, .25/.75 of
    # cols 1-2); y: src = 1/6, 1.5, 17/6 (rows 0-1 at 5/6, 1/6; rows 1-2 at .5, .5; rows 2-3 at 1/6, 5/6)
    img = np.array([[0, 60, 120], [30, 90, 240], [200, 10, 50], [100, 100, 0]], np.uint8)
    exact = np.array([[20, 121.25], [98.75, 121.25], [108.75, 27.5]])
    np.testing.assert_allclose(imresize(img.astype(np.float32), (2, 3)), exact, rtol=0, atol=1e-4)
    # uint8 uses OpenCV's fixed point (weights * 2048, rows summed in 1/4 units): 27.5 becomes 27:
    # ((341 * (40 * 2048 >> 4)) >> 16) + ((1707 * (25 * 2048 >> 4)) >> 16) = 26 + 83; (109 + 2) >> 2 = 27
    np.testing.assert_array_equal(imresize(img, (2, 3)), [[20, 121], [99, 121], [109, 27]])


def test_nearest_for_masks_and_seg_maps():
    # nearest: src = floor(dst * in / out); 3 -> 5 columns: floor(0, .6, 1.2, 1.8, 2.4) = 0, 0, 1, 1, 2
    m = np.array([[1, 0, 2]], np.uint8)
    np.testing.assert_array_equal(imresize(m, (5, 2), "nearest"), [[1, 1, 0, 0, 2]] * 2)
    # the same rule for dtypes OpenCV does not resize
    np.testing.assert_array_equal(imresize(m.astype(np.int64), (5, 2), "nearest"), [[1, 1, 0, 0, 2]] * 2)
    np.testing.assert_array_equal(imresize(m.astype(bool), (5, 1), "nearest"), [[1, 1, 0, 0, 1]])
    with pytest.raises(TypeError, match="only 'nearest'"):
        imresize(m.astype(np.int64), (5, 2))
    masks = BitmapMasks(np.array([[[1, 0, 1]]], np.uint8), 1, 3).resize((2, 5))
    np.testing.assert_array_equal(masks.masks[0], [[1, 1, 0, 0, 1]] * 2)


def test_rescale_size_rule_and_resize_scale_factor():
    # 427 x 640 to (1333, 800): f = min(1333 / 640, 800 / 427); new = int(640 f + .5), int(427 f + .5)
    f = min(1333 / 640, 800 / 427)
    out, factor = imrescale(np.zeros((427, 640, 3), np.uint8), (1333, 800), return_scale=True)
    assert factor == f and out.shape == (int(427 * f + 0.5), int(640 * f + 0.5), 3) == (800, 1199, 3)
    s = Resize(img_scale=(1333, 800), keep_ratio=True)({"img": np.zeros((427, 640, 3), np.uint8)})
    np.testing.assert_allclose(s["scale_factor"], [1199 / 640, 800 / 427] * 2, rtol=1e-6)
    # keep_ratio: image bilinear, seg map nearest, as imresize computes them
    img = np.array([[0, 100], [200, 40]], np.uint8)
    sample = {"img": img, "seg_fields": ["seg"], "seg": np.array([[1, 2], [3, 4]], np.uint8)}
    out = Resize(img_scale=(4, 4), keep_ratio=True)(sample)
    assert out["img"][1].tolist() == [50, 59, 76, 85]
    np.testing.assert_array_equal(out["seg"], np.kron([[1, 2], [3, 4]], np.ones((2, 2), np.uint8)))


def test_load_image_from_file_flags(tmp_path):
    (tmp_path / "a.png").write_bytes(encoded(RGB, "PNG"))
    info = {"img_info": {"filename": "a.png"}, "img_prefix": str(tmp_path)}
    out = LoadImageFromFile(channel_order="rgb", to_float32=True)(dict(info))
    assert out["img"].dtype == np.float32 and out["img"][0, 0].tolist() == [10, 200, 30]
    assert LoadImageFromFile(color_type="grayscale")(dict(info))["img_shape"] == (2, 2)
    with pytest.raises(ValueError, match="color_type must be one of"):
        LoadImageFromFile(color_type="colour")


def test_hsv_conversion_follows_opencv_float_rules():
    from detcore.data.transforms.photometric import bgr2hsv, hsv2bgr

    # (B, G, R) = (10, 200, 30): V = 200, S = 190 / 200, H = 120 + 60 (B - R) / 190 (green is the max)
    # (-10, -20, -5) after a brightness shift: V = -5, S = 15 / |-5| = 3, H = 60 (G - B) / 15 + 360 = 320
    img = np.array([[[10, 200, 30], [-10, -20, -5]]], np.float32)
    np.testing.assert_allclose(
        bgr2hsv(img)[0], [[120 - 1200 / 190, 0.95, 200], [320, 3, -5]], rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(hsv2bgr(bgr2hsv(img[:, :1]))[0, 0], [10, 200, 30], atol=1e-4)
