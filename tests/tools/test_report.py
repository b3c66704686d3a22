"""detcore report: the page's figures against pycocotools on the same data, and the page in Chromium."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pycocotools")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("DETCORE_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A shapes test set of 6 images and results: exact boxes except image 0 (all missed) and image 1
    (every box shifted by a third of its width), plus a training log."""
    from detcore.config import load_config
    from detcore.tools.results import ground_truth_of, load_test_dataset

    tmp = tmp_path_factory.mktemp("report")
    config = tmp / "shapes_test.toml"
    config.write_text(
        f'[data.test]\ntype = "ShapesDataset"\nsplit = "val"\nroot = "{tmp / "shapes"}"\n'
        "num_images = 6\nnum_train = 2\nimage_size = [128, 128]\n"
    )
    truths = ground_truth_of(load_test_dataset(load_config(config)))
    rows = []
    for i, t in enumerate(truths):
        boxes = t.bboxes.copy()
        if i == 1:
            boxes[:, [0, 2]] += (boxes[:, 2:3] - boxes[:, 0:1]) / 3
        keep = slice(0, 0) if i == 0 else slice(None)
        rows.append({"img_id": t.img_id, "filename": None, "bboxes": boxes[keep].tolist(),
                     "scores": [0.9] * len(boxes[keep]), "labels": t.labels[keep].tolist()})  # fmt: skip
    results = tmp / "results.json"
    results.write_text(json.dumps({"metrics": {}, "results": rows}))
    log = tmp / "run.log.json"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"mode": "train", "epoch": 1, "iter": 10, "loss": 2.0, "loss_cls": 1.2},
        {"mode": "train", "epoch": 1, "iter": 20, "loss": 1.0, "loss_cls": 0.6},
        {"mode": "val", "epoch": 1, "iter": 20, "bbox_mAP": 0.4}]))  # fmt: skip
    return tmp, config, results, log, truths


def test_figures_match_pycocotools_on_the_same_data(run):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detcore.config import load_config
    from detcore.tools.report import evaluate_boxes
    from detcore.tools.results import load_results, load_test_dataset, pair_with_truth

    tmp, config, results, _, truths = run
    dataset = load_test_dataset(load_config(config))
    pairs = pair_with_truth(load_results(results)[0], truths)
    ours = evaluate_boxes(pairs, list(dataset.CLASSES))
    # independent: pycocotools on the shapes set's own annotation file and the results in COCO format
    gt = COCO(dataset.ann_file)
    cat_ids = sorted(gt.getCatIds())
    dets = [{"image_id": r["img_id"], "category_id": cat_ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
             "score": s} for r in json.loads(results.read_text())["results"]
            for (x1, y1, x2, y2), s, label in zip(r["bboxes"], r["scores"], r["labels"])]  # fmt: skip
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.params.imgIds = [t.img_id for t in truths]
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ours.stats["bbox_mAP"] == pytest.approx(ev.stats[0], abs=1e-9)
    assert ours.stats["bbox_mAP_50"] == pytest.approx(ev.stats[1], abs=1e-9)
    assert 0 < ours.stats["bbox_mAP"] < 1  # image 0 missed, image 1 off by a third
    assert set(ours.class_ap) == set(dataset.CLASSES)


def test_page_is_self_contained(run):
    from detcore.cli.main import main

    tmp, config, results, log, _ = run
    out = tmp / "report.html"
    assert main(["report", str(config), str(results), "--out", str(out), "--log", str(log), "--topk=2"]) == 0
    page = out.read_text()
    headings = ("COCO box metrics", "AP per class", "Precision-recall", "Confusion matrix", "Worst images",
                "Best images", "Training curves")  # fmt: skip
    for heading in headings:
        assert f"<h2>{heading}" in page, heading
    assert page.count("<img ") == 3 + 2 * 2 + 1  # class AP, PR, matrix; 2 worst + 2 best; the curves
    assert "http://" not in page and "https://" not in page and 'src="data:image/' in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_page_renders_in_headless_chromium(run):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    from detcore.cli.main import main

    tmp, config, results, log, _ = run
    out = tmp / "browser.html"
    assert main(["report", str(config), str(results), "--out", str(out), "--log", str(log), "--topk=2"]) == 0
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}",
             "--virtual-time-budget=5000"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = dom.stdout[dom.stdout.index("<body"):].split(">", 1)[0]
    assert 'data-images-ok="8/8"' in body, body  # every picture decoded (naturalWidth > 0)
    assert 'data-errors="0"' in body, body  # no script error
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report_page.png"
    shot.unlink(missing_ok=True)
    done = subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}", out.as_uri()],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    from PIL import Image

    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape[:2] == (2400, 1280)
    assert (picture[:40].reshape(-1, 3) == (31, 59, 87)).all(1).mean() > 0.5  # the page's header band
