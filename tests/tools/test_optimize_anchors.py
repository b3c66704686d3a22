"""optimize-anchors: centred IoU by hand, both searches recover three chosen box clusters."""

import json

import numpy as np
import pytest

from detcore.tools.optimize_anchors import centered_iou, de_anchors, kmeans_anchors, mean_best_iou

CENTRES = np.array([[10.0, 10.0], [40.0, 20.0], [20.0, 80.0]])


def clusters(n=60, jitter=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([c * (1 + jitter * rng.uniform(-1, 1, (n, 2))) for c in CENTRES])


def test_centered_iou_by_hand():
    iou = centered_iou(np.array([[10.0, 10.0]]), np.array([[20.0, 5.0], [10.0, 10.0], [5.0, 5.0]]))
    # 10x10 vs 20x5: overlap 10x5 = 50, union 100 + 100 - 50; vs itself 1; vs 5x5: 25 / 100
    assert iou.tolist() == [[pytest.approx(1 / 3), 1.0, 0.25]]


def test_kmeans_and_de_recover_the_clusters():
    shapes = clusters()
    km, km_iou = kmeans_anchors(shapes, 3, seed=1)
    # sorted by area: 10x10 (100), 40x20 (800), 20x80 (1600)
    np.testing.assert_allclose(km, CENTRES, rtol=0.03)
    assert km_iou == pytest.approx(mean_best_iou(shapes, km)) and km_iou > 0.93
    de, de_iou = de_anchors(shapes, 3, iters=150, seed=0)
    np.testing.assert_allclose(de, CENTRES, rtol=0.06)
    assert de_iou > km_iou - 0.01
    # one anchor for three clusters cannot do as well
    assert kmeans_anchors(shapes, 1)[1] < km_iou - 0.3


def test_too_few_boxes_is_an_error():
    with pytest.raises(Exception, match="2 boxes cannot place 3 anchors"):
        kmeans_anchors(np.ones((2, 2)), 3)


def test_command_on_shapes_data(tmp_path, capsys):
    from detcore.cli.main import main

    config = tmp_path / "c.toml"
    config.write_text(
        f'[data.train]\ntype = "ShapesDataset"\nsplit = "train"\nroot = "{tmp_path / "shapes"}"\n'
        "num_images = 6\nnum_val = 2\nimage_size = [96, 96]\n"
    )
    assert main(["optimize-anchors", str(config), "--algorithm", "k-means", "--num-anchors", "3",
                 "--input-shape", "192", "192", "--output-dir", str(tmp_path)]) == 0  # fmt: skip
    result = json.loads((tmp_path / "anchor_optimize_result.json").read_text())
    assert len(result["anchors"]) == 3 and 0.5 < result["mean_iou"] <= 1.0
    areas = [w * h for w, h in result["anchors"]]
    assert areas == sorted(areas)
    assert "average IoU" in capsys.readouterr().out
