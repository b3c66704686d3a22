import json
import logging

import numpy as np
import pytest

from detcore.data import BadDataError, build_dataloader
from detcore.data.datasets import CocoDataset
from detcore.data.image_io import imwrite

PIPE = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), dict(type="PackDetInputs")]


def _coco(tmp_path, anns, images=None):
    images = images or [{"id": i, "file_name": f"{i}.png", "width": 40, "height": 30} for i in (1, 2, 3)]
    for im in images:
        imwrite(np.zeros((30, 40, 3), np.uint8), str(tmp_path / im["file_name"]))
    data = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 5, "name": "b"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return str(tmp_path / "ann.json")


def _ann(i, img, bbox, cat=1, **kw):
    return {"id": i, "image_id": img, "bbox": bbox, "category_id": cat, "area": 10.0, "iscrowd": 0, **kw}


GOOD = [_ann(1, 1, [1, 1, 10, 10]), _ann(2, 2, [2, 2, 5, 5], cat=5), _ann(3, 3, [0, 0, 4, 4])]


def test_each_bad_annotation_is_skipped_and_counted(tmp_path):
    anns = GOOD + [
        _ann(10, 1, [1, 1, 0, 5]),  # zero width
        _ann(11, 1, [float("nan"), 1, 3, 3]),  # NaN
        _ann(12, 1, [100, 100, 5, 5]),  # outside the 40x30 image
        _ann(13, 1, [30, 20, 20, 20]),  # partly outside: clipped
        _ann(14, 2, [1, 1, 5, 5], cat=99),  # unknown category
        _ann(15, 2, [1, 1, 5, 5], iscrowd=1),  # crowd -> ignore, not bad
    ]
    ds = CocoDataset(_coco(tmp_path, anns), PIPE, img_prefix=str(tmp_path))
    assert ds.bad_data_summary() == {
        "bad_box_size": 1,
        "nan_box": 1,
        "box_outside_image": 1,
        "box_clipped": 1,
        "unknown_category": 1,
    }
    info = ds.get_ann_info(0)
    np.testing.assert_allclose(info["bboxes"], [[1, 1, 11, 11], [30, 20, 40, 30]])
    assert len(ds.get_ann_info(1)["bboxes_ignore"]) == 1
    recs = {r.reason: r for r in ds.bad_data.all_records()}
    assert recs["nan_box"].img_id == 1 and recs["nan_box"].filename == "1.png"


def test_strict_fails_fast_with_image_and_reason(tmp_path):
    path = _coco(tmp_path, GOOD + [_ann(10, 2, [1, 1, -3, 5])])
    with pytest.raises(BadDataError, match=r"image 2 \(2.png\): bad_box_size"):
        CocoDataset(path, PIPE, img_prefix=str(tmp_path), strict=True)


def test_empty_and_missing_images(tmp_path):
    path = _coco(tmp_path, GOOD[:2])  # image 3 has no annotations
    (tmp_path / "2.png").unlink()  # missing file
    train = CocoDataset(path, PIPE, img_prefix=str(tmp_path))
    assert train.img_ids == [1] and train.bad_data_summary() == {"missing_image": 1, "no_annotations": 1}
    test = CocoDataset(path, PIPE, img_prefix=str(tmp_path), test_mode=True)
    assert test.img_ids == [1, 3] and test.bad_data_summary() == {"missing_image": 1}


def test_corrupt_image_train_resamples_test_drops_and_workers_report(tmp_path, caplog):
    path = _coco(tmp_path, GOOD)
    (tmp_path / "2.png").write_bytes(b"not an image")
    train = CocoDataset(path, PIPE, img_prefix=str(tmp_path))
    np.random.seed(0)
    s = train[1]
    assert s is not None and s["img_meta"]["img_id"] != 2
    assert train.bad_data_summary() == {"corrupt_image": 1}
    test = CocoDataset(path, PIPE, img_prefix=str(tmp_path), test_mode=True)
    assert test[1] is None
    batches = list(build_dataloader(test, 3, 1, shuffle=False))  # read in a worker process
    assert [m["img_id"] for m in batches[0]["img_metas"]] == [1, 3]
    assert test.bad_data_summary() == {"corrupt_image": 2}
    with caplog.at_level(logging.INFO, logger="detcore.data"):
        assert test.log_bad_data_summary() == {"corrupt_image": 2}
    assert "corrupt_image=2" in caplog.text
    assert test.bad_data_summary() == {}  # runtime counts restart each epoch
    with pytest.raises(BadDataError, match="corrupt_image"):
        CocoDataset(path, PIPE, img_prefix=str(tmp_path), test_mode=True, strict=True)[1]
