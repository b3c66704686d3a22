"""analyze-results: per-image AP on hand-made images and the command's ranking and pictures."""

import json

import numpy as np
import pytest

from detcore.tools.analyze_results import image_ap, rank_images
from detcore.tools.results import ImageResult, ImageTruth


def result(boxes, scores, labels, img_id=1):
    return ImageResult(img_id, None, np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                       np.array(labels, np.int64))  # fmt: skip


def truth(boxes, labels, img_id=1):
    return ImageTruth(img_id, None, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64),
                      np.zeros((0, 4), np.float32))  # fmt: skip


GT = truth([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1])


def test_perfect_missing_and_partial_images():
    assert image_ap(result(GT.bboxes, [0.9, 0.8], GT.labels), GT, 2) == pytest.approx(1.0)
    assert image_ap(result([], [], []), GT, 2) == 0.0
    # class 0 found exactly, class 1 not at all: (1 + 0) / 2 at every IoU threshold
    assert image_ap(result([[0, 0, 10, 10]], [0.9], [0]), GT, 2) == pytest.approx(0.5)
    shifted = result([[0, 0, 10, 10], [22.4, 20, 40, 40]], [0.9, 0.8], [0, 1])
    # IoU of [22.4,20,40,40] with [20,20,40,40] = 352 / 400 = 0.88: matched at 0.50..0.85 (8 of 10 thresholds)
    assert image_ap(shifted, GT, 2) == pytest.approx((1.0 + 0.8) / 2)


def test_no_ground_truth_and_ranking():
    empty = truth([], [], img_id=2)
    assert image_ap(result([], [], [], img_id=2), empty, 2) == 1.0
    assert image_ap(result([[0, 0, 5, 5]], [0.9], [0], img_id=2), empty, 2) == 0.0
    assert image_ap(result([[0, 0, 5, 5]], [0.1], [0], img_id=2), empty, 2, score_thr=0.3) == 1.0
    perfect = result(GT.bboxes, [0.9, 0.8], GT.labels, img_id=3)
    pairs = [(result([[0, 0, 10, 10]], [0.9], [0], img_id=1), GT), (perfect, truth(GT.bboxes, GT.labels, 3))]
    assert [(s.img_id, round(s.ap, 3)) for s in rank_images(pairs, 2)] == [(3, 1.0), (1, 0.5)]


def test_command_ranks_and_draws(tmp_path, capsys):
    from detcore.cli.main import main
    from detcore.config import load_config
    from detcore.tools.results import ground_truth_of, load_test_dataset

    config = tmp_path / "c.toml"
    config.write_text(
        f'[data.test]\ntype = "ShapesDataset"\nsplit = "val"\nroot = "{tmp_path / "shapes"}"\n'
        "num_images = 3\nnum_train = 2\nimage_size = [96, 96]\n"
    )
    truths = ground_truth_of(load_test_dataset(load_config(config)))
    rows = [{"img_id": t.img_id, "filename": None, "bboxes": t.bboxes.tolist(),
             "scores": [0.9] * len(t.labels), "labels": t.labels.tolist()} for t in truths]  # fmt: skip
    rows[1].update(bboxes=[], scores=[], labels=[])  # image 1: nothing detected
    (tmp_path / "r.json").write_text(json.dumps({"results": rows}))
    out = tmp_path / "out"
    assert main(["analyze-results", str(config), str(tmp_path / "r.json"), "--topk", "1",
                 "--show-dir", str(out)]) == 0  # fmt: skip
    ranked = json.loads((out / "per_image_ap.json").read_text())
    assert ranked[-1]["img_id"] == truths[1].img_id and ranked[-1]["ap"] == 0.0
    assert ranked[0]["ap"] == pytest.approx(1.0)
    good, bad = list((out / "good").glob("*.jpg")), list((out / "bad").glob("*.jpg"))
    assert len(good) == len(bad) == 1 and bad[0].name.startswith("001_ap0.000")
    from PIL import Image

    assert Image.open(bad[0]).size == (2 * 96 + 8, 96 + 16)  # ground truth beside predictions
    assert "mean per-image AP" in capsys.readouterr().out
