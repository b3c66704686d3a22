"""A COCO split with every kind of bad item: each is reported once (image id, file, reason), counted in
the end-of-test summary and listed in the work dir's JSON report; every valid image is evaluated, also
when it shares a batch with a corrupt one; the strict policy stops at the first item with one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from detcore.cli.main import main
from detcore.data.image_io import imwrite

NAN = float("nan")


def _ann(i: int, img: int, bbox, cat: int = 1, area: float = 10.0) -> dict:
    return {"id": i, "image_id": img, "bbox": bbox, "category_id": cat, "area": area, "iscrowd": 0}


def build_split(root: Path) -> tuple[Path, set[int], list[tuple[str, object]]]:
    """The files and annotation JSON of a faulty split; the image ids that must be evaluated and the
    ``(reason, image id)`` of every bad item."""
    imgs = root / "imgs"
    imgs.mkdir(parents=True)
    color = np.full((24, 32, 3), 90, np.uint8)
    for name in ("good1", "good2", "dupa", "dupb", "zerosize"):
        imwrite(color, str(imgs / f"{name}.png"))
    imwrite(np.full((24, 32), 200, np.uint8), str(imgs / "gray.png"))
    imwrite(np.dstack([color, np.full((24, 32), 7, np.uint8)]), str(imgs / "rgba.png"))
    imwrite(np.full((24, 32, 3), 60000, np.uint16), str(imgs / "deep.png"))  # 16-bit
    imwrite(np.zeros((1500, 2000, 3), np.uint8), str(imgs / "large.png"))
    (imgs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (imgs / "empty.png").write_bytes(b"")
    images = [
        (1, "good1.png", 32, 24), (2, "good2.png", 32, 24), (3, "missing.png", 32, 24),
        (4, "corrupt.png", 32, 24), (5, "empty.png", 32, 24), (6, "dupa.png", 32, 24),
        (6, "dupb.png", 32, 24), (7, "zerosize.png", 0, 24), (8, "gray.png", 32, 24),
        (9, "rgba.png", 32, 24), (10, "deep.png", 32, 24), (12, "large.png", 2000, 1500),
    ]
    anns = [
        _ann(1, 1, [2, 2, 10, 10]),
        _ann(2, 2, [3, 3, 8, 8]),
        _ann(3, 2, [1, 1, 0, 5]),  # zero width
        _ann(4, 2, [5, 5, -3, 4]),  # negative width
        _ann(5, 2, [NAN, 1, 3, 3]),  # non-finite coordinate
        _ann(6, 2, [100, 100, 5, 5]),  # outside the 32x24 image
        _ann(7, 2, [1, 1, 5, 5], cat=99),  # unknown category
        _ann(8, 2, [1, 2, 3]),  # malformed bbox
        _ann(9, 2, [20, 10, 30, 30]),  # partly outside: clipped and kept
        _ann(10, 99, [1, 1, 5, 5]),  # an image that does not exist
        _ann(11, 6, [4, 4, 6, 6]),
        _ann(12, 8, [4, 4, 6, 6]),
        _ann(13, 9, [4, 4, 6, 6]),
        _ann(14, 10, [4, 4, 6, 6]),
        _ann(15, 12, [100, 100, 600, 400]),
        _ann(16, 2, [1, 1, 4, 4], area=0.0),  # zero area
        _ann(17, 4, [2, 2, 8, 8]),  # of the corrupt image (so training reads it)
    ]
    data = {
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    }
    (root / "ann.json").write_text(json.dumps(data))  # NaN as the JSON extension Python reads
    evaluated = {1, 2, 6, 13, 8, 9, 10, 12}  # dupb.png is kept as id 13 (max id + 1)
    bad = [
        ("missing_image", 3), ("corrupt_image", 4), ("empty_image", 5), ("duplicate_image_id", 6),
        ("bad_image_size", 7), ("orphan_annotation", 99), ("bad_box_size", 2), ("bad_box_size", 2),
        ("nan_box", 2), ("box_outside_image", 2), ("unknown_category", 2), ("bad_annotation", 2),
        ("box_clipped", 2), ("bad_annotation", 2),
    ]
    return root, evaluated, bad


PIPELINE = [
    {"type": "LoadImageFromFile"},
    {"type": "Resize", "img_scale": [40, 40], "keep_ratio": True},
    {"type": "Normalize", "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0], "to_rgb": True},
    {"type": "PackDetInputs"},
]


def _config(tmp_path: Path, root: Path, batch_size: int, strict: bool = False) -> Path:
    import tomli_w
    from _engine_tiny import base_config

    cfg = base_config(tmp_path / "work")
    test = {"type": "CocoDataset", "ann_file": str(root / "ann.json"), "img_prefix": str(root / "imgs"),
            "test_mode": True, "pipeline": PIPELINE, "strict": strict}
    cfg["data"].update(test=test, test_batch_size=batch_size)
    cfg["evaluator"] = {"type": "CocoMetric", "metric": ["bbox"]}
    path = tmp_path / "faulty.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


def _checkpoint(tmp_path: Path) -> Path:
    from _engine_tiny import TinyDetector

    torch.manual_seed(0)
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": TinyDetector().state_dict()}, path)
    return path


@pytest.mark.parametrize("batch_size", [3, 1])  # a corrupt image beside valid ones / alone in its batch
def test_every_bad_item_is_reported_and_every_valid_image_evaluated(tmp_path, capsys, caplog, batch_size):
    root, evaluated, bad = build_split(tmp_path / "split")
    cfg, ckpt, out = _config(tmp_path, root, batch_size), _checkpoint(tmp_path), tmp_path / "out.json"
    with caplog.at_level(logging.WARNING):
        rc = main(["test", str(cfg), str(ckpt), "--out", str(out), "--work-dir", str(tmp_path / "work")])
    assert rc == 0, capsys.readouterr().err
    rows = json.loads(out.read_text())["results"]
    assert sorted(r["img_id"] for r in rows) == sorted(evaluated)  # each valid image once, none lost

    report = json.loads((tmp_path / "work" / "bad_data_test.json").read_text())
    got = sorted((item["reason"], item["img_id"]) for item in report["items"])
    assert got == sorted(bad)
    assert report["counts"] == {r: sum(1 for b in bad if b[0] == r) for r, _ in bad}
    by_reason = {item["reason"]: item for item in report["items"]}
    assert by_reason["corrupt_image"]["filename"] == "corrupt.png"
    assert by_reason["duplicate_image_id"]["filename"] == "dupb.png"
    assert "kept as image id 13" in by_reason["duplicate_image_id"]["detail"]
    assert by_reason["missing_image"]["filename"].endswith("missing.png")

    messages = [r.getMessage() for r in caplog.records]
    per_item = [m for m in messages if ": skipped: image " in m or ": fixed: image " in m]
    assert len(per_item) == len(bad)  # every item logged once
    assert any(m.endswith("skipped: image 4 (corrupt.png): corrupt_image - " + m.split(" - ", 1)[-1])
               for m in per_item)
    stdout = capsys.readouterr().out  # the summary goes to the run's log
    summary = [m.split(" - WARNING - ", 1)[1] for m in stdout.splitlines() if " - WARNING - data.test: " in m]
    assert summary == [
        "data.test: bad data skipped or fixed: "
        + ", ".join(f"{k}={v}" for k, v in report["counts"].items())
        + f" (total {len(bad)}); every item in {tmp_path / 'work' / 'bad_data_test.json'}"
    ]


def test_strict_policy_stops_at_the_first_item_with_one_line(tmp_path, capsys):
    root, _, _ = build_split(tmp_path / "split")
    cfg = _config(tmp_path, root, 2, strict=True)
    rc = main(["test", str(cfg), str(_checkpoint(tmp_path)), "--work-dir", str(tmp_path / "work")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("detcore:")]
    assert rc == 1
    assert err == [
        "detcore: error: CocoDataset(ann.json): image 6 (dupb.png): duplicate_image_id - id also used by "
        "dupa.png; kept as image id 13 (the id's annotations stay with dupa.png) (strict = true; set strict "
        "= false to skip and count)"
    ]


def test_high_bit_depth_gray_and_rgba_decode_to_8_bit_colour(tmp_path):
    from detcore.data.image_io import imread

    root, _, _ = build_split(tmp_path / "split")
    deep = imread(str(root / "imgs" / "deep.png"))
    assert deep.dtype == np.uint8 and deep.shape == (24, 32, 3)
    assert np.all(deep == 60000 >> 8)  # scaled (234), not saturated at 255
    assert imread(str(root / "imgs" / "gray.png")).shape == (24, 32, 3)
    assert np.all(imread(str(root / "imgs" / "rgba.png")) == 90)


def test_pillow_fallback_scales_16_bit_instead_of_saturating():
    import io

    from PIL import Image

    from detcore.data.image_io import _pillow_decode

    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "TIFF")
    with pytest.warns(UserWarning, match="decoded with Pillow"):
        img = _pillow_decode(buf.getvalue(), "color", "t.tif")
    assert img.dtype == np.uint8 and img.shape == (8, 8, 3)
    np.testing.assert_array_equal(img[..., 0], (values >> 8).astype(np.uint8))


def test_training_summarises_bad_data_at_the_end_of_every_epoch(tmp_path, make_runner, capsys):
    root, _, _ = build_split(tmp_path / "split")
    train = {"type": "CocoDataset", "ann_file": str(root / "ann.json"), "img_prefix": str(root / "imgs"),
             "pipeline": [PIPELINE[0], {"type": "LoadAnnotations"}, *PIPELINE[1:]]}
    runner = make_runner(data={"train": train, "batch_size": 2}, evaluation={"enabled": False})
    runner.train()
    report = json.loads((runner.work_dir / "bad_data_train.json").read_text())
    assert ("corrupt_image", 4) in {(i["reason"], i["img_id"]) for i in report["items"]}  # read, resampled
    assert report["counts"]["missing_image"] == 1 and report["counts"]["duplicate_image_id"] == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "data.train: bad data" in line]
    assert len(lines) == 2  # one summary per epoch (2 epochs)


def test_infer_skips_and_reports_unreadable_inputs(tmp_path):
    from detcore.api import init_detector
    from detcore.tools.infer import run_inference

    root, _, _ = build_split(tmp_path / "split")
    cfg = _config(tmp_path, root, 1)
    model = init_detector(str(cfg), str(_checkpoint(tmp_path)))
    inputs = [root / "imgs" / n for n in ("good1.png", "corrupt.png", "gray.png")]
    # score_thr above 1: nothing drawn (the untrained tiny model predicts unordered corners)
    summary = run_inference(model, [str(p) for p in inputs], tmp_path / "out", score_thr=1.01, batch_size=2)
    detections = json.loads(summary["json"].read_text())
    assert [im["id"] for im in detections["images"]] == [1, 3]  # ids are the inputs' places
    assert summary["bad_data"] == {"corrupt_image": 1}
    report = json.loads(summary["bad_data_file"].read_text())
    assert [(i["img_id"], Path(i["filename"]).name) for i in report["items"]] == [(2, "corrupt.png")]


def test_middle_format_duplicate_ids_are_both_kept(tmp_path):
    from detcore.data.datasets import CustomDataset

    for name in ("a.png", "b.png"):
        imwrite(np.zeros((8, 8, 3), np.uint8), str(tmp_path / name))
    ann = {"bboxes": [[1, 1, 6, 6]], "labels": [0]}
    images = [{"id": 5, "filename": n, "width": 8, "height": 8, "ann": ann} for n in ("a.png", "b.png")]
    (tmp_path / "mid.json").write_text(json.dumps({"classes": ["x"], "images": images}))
    ds = CustomDataset(str(tmp_path / "mid.json"), [], img_prefix=str(tmp_path), test_mode=True)
    assert ds.img_ids == [5, 6]
    [rec] = ds.bad_data.all_records()
    assert (rec.reason, rec.img_id, rec.filename) == ("duplicate_image_id", 5, "b.png")
    with pytest.raises(Exception, match=r"image 5 \(b.png\): duplicate_image_id"):
        CustomDataset(str(tmp_path / "mid.json"), [], img_prefix=str(tmp_path), strict=True)
