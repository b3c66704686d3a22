"""COCO error breakdown on a hand-made image: one dog box found late after three kinds of false positive."""

import json

import pytest

from detcore.tools.coco_error_analysis import analyze

pytest.importorskip("pycocotools")


def box(x, y, w, h):
    return [x, y, w, h]


def coco_gt(tmp_path):
    from pycocotools.coco import COCO

    cats = [{"id": 1, "name": "dog", "supercategory": "animal"},
            {"id": 2, "name": "cat", "supercategory": "animal"},
            {"id": 3, "name": "car", "supercategory": "vehicle"}]  # fmt: skip
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": box(0, 0, 100, 100)},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": box(200, 200, 100, 100)},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": box(400, 0, 100, 100)},
    ]
    for ann in anns:
        ann.update(area=ann["bbox"][2] * ann["bbox"][3], iscrowd=0)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "width": 700, "height": 700, "file_name": "a.jpg"}],
                                "annotations": anns, "categories": cats}))  # fmt: skip
    return COCO(str(path)), path


# every detection says "dog"; by falling score: background, on the car, on the cat, then the dog box at
# IoU 0.6 ([0, 0, 100, 60] inside [0, 0, 100, 100])
DETS = [
    {"image_id": 1, "category_id": 1, "bbox": box(600, 600, 50, 50), "score": 0.95},
    {"image_id": 1, "category_id": 1, "bbox": box(200, 200, 100, 100), "score": 0.9},
    {"image_id": 1, "category_id": 1, "bbox": box(400, 0, 100, 100), "score": 0.85},
    {"image_id": 1, "category_id": 1, "bbox": box(0, 0, 100, 60), "score": 0.6},
]


def test_each_level_forgives_one_kind_of_error(tmp_path):
    gt, _ = coco_gt(tmp_path)
    b = analyze(gt, DETS)
    dog = b.cat_names.index("dog")
    # the one dog box is recalled at the 4th detection (precision 1/4) once IoU 0.6 counts;
    # forgiving the cat (same supercategory) leaves 2 false positives before it, the car too leaves 1
    expected = {"C75": 0.0, "C50": 0.25, "Loc": 0.25, "Sim": 1 / 3, "Oth": 0.5, "BG": 1.0, "FN": 1.0}
    for error, ap in expected.items():
        assert b.ap(error, dog) == pytest.approx(ap, abs=1e-6), error
    cat = b.cat_names.index("cat")  # never detected: nothing until missed boxes are forgiven
    assert [b.ap(e, cat) for e in ("C50", "Oth", "BG", "FN")] == [0.0, 0.0, 0.0, 1.0]
    assert b.table()["overall"]["C50"] == pytest.approx(0.25 / 3)


def test_command_writes_pictures_and_json(tmp_path, capsys):
    from detcore.cli.main import main

    _, ann = coco_gt(tmp_path)
    results = tmp_path / "dets.json"
    results.write_text(json.dumps(DETS))
    out = tmp_path / "out"
    assert main(["coco-error-analysis", str(results), str(ann), "--out-dir", str(out)]) == 0
    summary = json.loads((out / "error_analysis.json").read_text())
    assert summary["bbox"]["all"]["dog"]["Oth"] == pytest.approx(0.5)
    pytest.importorskip("matplotlib")
    assert {p.name for p in (out / "bbox").glob("*.png")} == {"overall-all.png", "dog-all.png",
                                                               "cat-all.png", "car-all.png"}  # fmt: skip
    # detcore's own results file: labels 0..2 are the categories in id order (dog, cat, car)
    own = tmp_path / "own.json"
    rows = [{"img_id": 1, "bboxes": [[d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2],
             d["bbox"][1] + d["bbox"][3]] for d in DETS], "scores": [d["score"] for d in DETS],
             "labels": [0] * 4}]  # fmt: skip
    own.write_text(json.dumps({"results": rows}))
    assert main(["coco-error-analysis", str(own), str(ann), "--out-dir", str(tmp_path / "o2")]) == 0
    again = json.loads((tmp_path / "o2" / "error_analysis.json").read_text())
    assert again["bbox"]["all"]["dog"] == summary["bbox"]["all"]["dog"]
