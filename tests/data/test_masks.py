import numpy as np
import pytest
import torch

from detcore.structures import BitmapMasks, Instances, PolygonMasks


def _square_poly(x1, y1, x2, y2):
    return [np.array([x1, y1, x2, y1, x2, y2, x1, y2], dtype=np.float64)]


def _pair():
    polys = PolygonMasks([_square_poly(2, 4, 10, 12), _square_poly(20, 0, 30, 6)], 16, 32)
    return polys, polys.to_bitmap()


def test_polygon_rasterisation_and_areas():
    polys, bitmaps = _pair()
    assert bitmaps.masks.shape == (2, 16, 32)
    assert bitmaps.masks[0, 4:12, 2:10].all() and bitmaps.masks[0].sum() == 64
    np.testing.assert_allclose(polys.areas, [64.0, 60.0])
    np.testing.assert_allclose(bitmaps.areas, [64.0, 60.0])
    np.testing.assert_allclose(bitmaps.get_bboxes(), [[2, 4, 10, 12], [20, 0, 30, 6]])


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_polygon_matches_bitmap(direction):
    polys, bitmaps = _pair()
    np.testing.assert_array_equal(polys.flip(direction).to_ndarray(), bitmaps.flip(direction).masks)
    axes = {"horizontal": (2,), "vertical": (1,), "diagonal": (1, 2)}[direction]
    np.testing.assert_array_equal(bitmaps.flip(direction).masks, np.flip(bitmaps.masks, axes))


def test_resize_rescale_pad_crop_expand():
    polys, bitmaps = _pair()
    r = bitmaps.rescale(2.0)
    assert (r.height, r.width) == (32, 64)
    np.testing.assert_array_equal(polys.rescale(2.0).to_ndarray(), r.masks)
    rz = polys.resize((8, 64))
    np.testing.assert_allclose(rz.masks[0][0], [4, 2, 20, 2, 20, 6, 4, 6])
    p = bitmaps.pad((20, 40))
    assert p.masks.shape == (2, 20, 40) and p.masks[:, 16:].sum() == 0 and p.masks[:, :16, :32].sum() == 124
    assert (polys.pad((20, 40)).height, polys.pad((20, 40)).width) == (20, 40)
    c = bitmaps.crop(np.array([4, 6, 24, 14]))
    np.testing.assert_array_equal(c.masks, bitmaps.masks[:, 6:14, 4:24])
    np.testing.assert_array_equal(polys.crop(np.array([4, 6, 24, 14])).to_ndarray(), c.masks)
    e = bitmaps.expand(30, 50, 5, 7)
    np.testing.assert_array_equal(e.masks[:, 5:21, 7:39], bitmaps.masks)
    np.testing.assert_array_equal(polys.expand(30, 50, 5, 7).to_ndarray(), e.masks)


def test_indexing_cat_tensor_and_instances():
    polys, bitmaps = _pair()
    assert len(bitmaps[torch.tensor([True, False])]) == 1 and len(polys[[1]]) == 1
    assert len(BitmapMasks.cat([bitmaps, bitmaps[0]])) == 3
    assert len(PolygonMasks.cat([polys, polys])) == 4
    t = bitmaps.to_tensor(torch.bool)
    assert t.dtype == torch.bool and t.shape == (2, 16, 32)
    inst = Instances(bboxes=torch.zeros(2, 4), masks=bitmaps)
    sub = inst[torch.tensor([1])]
    np.testing.assert_array_equal(sub.masks.masks[0], bitmaps.masks[1])
    assert len(Instances.cat([inst, inst]).masks) == 4
    with pytest.raises(ValueError):
        BitmapMasks(np.zeros((1, 3, 3)), 4, 4)


def test_crop_and_resize_bitmap_and_polygon_agree():
    polys, bitmaps = _pair()
    boxes = np.array([[2, 4, 10, 12], [0, 0, 16, 16]], dtype=np.float32)
    out_b = bitmaps.crop_and_resize(boxes, (8, 8), np.array([0, 0]))
    out_p = polys.crop_and_resize(boxes, (8, 8), np.array([0, 0]))
    assert out_b.masks[0].all() and out_p.masks[0].all()  # the box is exactly the square
    # second box: square covers x 2..10, y 4..12 of a 16x16 window -> rows 2..6, cols 1..5 at 8x8
    expected = np.zeros((8, 8), np.uint8)
    expected[2:6, 1:5] = 1
    np.testing.assert_array_equal(out_b.masks[1], expected)
    np.testing.assert_array_equal(out_p.masks[1], expected)
