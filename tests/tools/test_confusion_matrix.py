"""Confusion matrix: hand-made images with known hits, confusions, background detections and misses."""

import json

import numpy as np
import pytest

from detcore.tools.confusion_matrix import confusion_matrix, image_confusion, row_percent
from detcore.tools.results import ImageResult, ImageTruth


def result(boxes, scores, labels):
    return ImageResult(1, None, np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                       np.array(labels, np.int64))  # fmt: skip


def truth(boxes, labels):
    return ImageTruth(1, None, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64),
                      np.zeros((0, 4), np.float32))  # fmt: skip


GT = truth([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0, 1, 2])


def test_hits_confusions_background_and_misses():
    dets = result(
        [[0, 0, 10, 10],  # class 0 on the class-0 box: true positive
         [21, 21, 30, 30],  # IoU 81/100 with the class-1 box, predicted as class 2: a confusion 1 -> 2
         [80, 80, 90, 90],  # on nothing: background false positive of class 0
         [50, 50, 60, 60]],  # below the score threshold: ignored, so the class-2 box is missed
        [0.9, 0.8, 0.7, 0.1], [0, 2, 0, 2],
    )  # fmt: skip
    m = image_confusion(dets, GT, num_classes=3, score_thr=0.3, tp_iou_thr=0.5)
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0] = 1  # TP
    expected[1, 2] = 1  # class 1 taken for class 2
    expected[3, 0] = 1  # background detected as class 0
    expected[1, 3] = 1  # the class-1 box has no class-1 detection
    expected[2, 3] = 1  # the class-2 box's detection scored under the threshold
    assert m.tolist() == expected.tolist()
    # a lower threshold lets the class-2 detection in: that box is found
    low = image_confusion(dets, GT, num_classes=3, score_thr=0.05)
    assert low[2, 2] == 1 and low[2, 3] == 0


def test_iou_threshold_and_duplicates():
    # IoU of [0,0,10,10] and [5,0,15,10] is 50/150 = 1/3
    shifted = result([[5, 0, 15, 10]], [0.9], [0])
    assert image_confusion(shifted, GT, 3, tp_iou_thr=0.3)[0, 0] == 1
    at_half = image_confusion(shifted, GT, 3, tp_iou_thr=0.5)
    assert at_half[3, 0] == 1 and at_half[0, 3] == 1
    # two detections of one box count twice on the diagonal; class-wise NMS at 0.5 keeps one
    twice = result([[0, 0, 10, 10], [0, 0, 10, 9]], [0.9, 0.8], [0, 0])
    assert image_confusion(twice, GT, 3)[0, 0] == 2
    assert image_confusion(twice, GT, 3, nms_iou_thr=0.5)[0, 0] == 1


def test_sums_over_images_and_row_percent():
    perfect = result(GT.bboxes, [1, 1, 1], GT.labels)
    total = confusion_matrix([(perfect, GT), (perfect, GT)], 3)
    assert total.diagonal().tolist() == [2, 2, 2, 0] and total.sum() == 6
    assert row_percent(np.array([[1, 3], [0, 0]])).tolist() == [[25.0, 75.0], [0.0, 0.0]]


def test_command_writes_json_and_picture(tmp_path, capsys):
    from detcore.cli.main import main
    from detcore.config import load_config
    from detcore.tools.results import ground_truth_of, load_test_dataset

    config = tmp_path / "c.toml"
    config.write_text(
        f'[data.test]\ntype = "ShapesDataset"\nsplit = "val"\nroot = "{tmp_path / "shapes"}"\n'
        "num_images = 4\nnum_train = 2\nimage_size = [96, 96]\n"
    )
    truths = ground_truth_of(load_test_dataset(load_config(config)))
    rows = [{"img_id": t.img_id, "filename": t.filename, "bboxes": t.bboxes.tolist(),
             "scores": [0.9] * len(t.labels), "labels": t.labels.tolist()} for t in truths]  # fmt: skip
    rows[0]["labels"] = [(label + 1) % 3 for label in rows[0]["labels"]]  # image 0: every box misnamed
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"metrics": {}, "results": rows}))
    assert main(["confusion-matrix", str(config), str(results), "--out-dir", str(tmp_path / "cm")]) == 0
    saved = json.loads((tmp_path / "cm" / "confusion_matrix.json").read_text())
    counts = np.array(saved["counts"])
    n0, n = len(truths[0].labels), sum(len(t.labels) for t in truths)
    assert counts.diagonal()[:-1].sum() == n - n0  # the other images' boxes all hit
    assert counts[:-1, -1].sum() == n0  # image 0's boxes are missed ...
    assert counts[:-1, :-1].sum() - counts.diagonal()[:-1].sum() == n0  # ... and counted as confusions
    assert saved["labels"][-1] == "background"
    pytest.importorskip("matplotlib")
    assert (tmp_path / "cm" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": [{"img_id": 999, "bboxes": [], "scores": [], "labels": []}]}))
    assert main(["confusion-matrix", str(config), str(bad)]) == 1
    assert "img_id 999 is not in the test dataset" in capsys.readouterr().err
