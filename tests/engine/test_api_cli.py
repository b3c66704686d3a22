"""detcore.api (init_detector / inference_detector) and the train / test subcommands."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import tomli_w
import torch

from detcore.api import inference_detector, init_detector
from detcore.data.image_io import imwrite

PIPELINE = [
    {"type": "LoadImageFromFile"},
    {"type": "Resize", "img_scale": [32, 32], "keep_ratio": False},
    {"type": "PackDetInputs"},
]


@pytest.fixture
def config_file(tmp_path, tiny_plugin):
    cfg = tiny_plugin.base_config(tmp_path / "work", runner={"type": "EpochBasedRunner", "max_epochs": 1})
    cfg["data"]["test"]["pipeline"] = PIPELINE
    path = tmp_path / "tiny.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


def test_init_and_inference(tmp_path, config_file, tiny_plugin):
    torch.manual_seed(3)
    source = tiny_plugin.TinyDetector()
    torch.save({"state_dict": source.state_dict()}, tmp_path / "plain.pth")  # not a detcore checkpoint
    model = init_detector(config_file, tmp_path / "plain.pth")
    assert not model.training and model.CLASSES == ("a", "b", "c")
    assert torch.equal(model.head.weight, source.head.weight)

    rng = np.random.RandomState(0)
    img = rng.randint(0, 255, size=(20, 24, 3), dtype=np.uint8)  # H=20, W=24
    imwrite(img, str(tmp_path / "img.png"))
    from_path = inference_detector(model, str(tmp_path / "img.png"))
    from_array = inference_detector(model, img)
    assert torch.equal(from_path.bboxes, from_array.bboxes) and torch.equal(
        from_path.labels, from_array.labels
    )

    # the same forward with scale_factor 1 gives boxes in the 32x32 resized frame; the API's boxes must be
    # those divided by the hand-computed factors 32/24 (x) and 32/20 (y)
    from detcore.api import _sample, _test_pipeline
    from detcore.data import collate

    sample = _test_pipeline(model.cfg, True)(_sample(img, 0))
    batch = collate([sample])
    batch["img_metas"][0]["scale_factor"] = [1.0, 1.0, 1.0, 1.0]
    with torch.no_grad():
        resized = model(**batch)[0].bboxes
    expected = resized / torch.tensor([32 / 24, 32 / 20, 32 / 24, 32 / 20])
    assert torch.allclose(from_array.bboxes, expected, atol=1e-5)

    batched = inference_detector(model, [img, str(tmp_path / "img.png"), img[::-1].copy()], batch_size=2)
    assert len(batched) == 3
    assert torch.allclose(batched[0].bboxes, from_array.bboxes, atol=1e-6)
    assert torch.allclose(batched[1].bboxes, from_path.bboxes, atol=1e-6)


def _parser():
    from detcore.cli import test as test_cmd
    from detcore.cli import train as train_cmd

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    train_cmd.add_parser(sub)
    test_cmd.add_parser(sub)
    return parser


def test_cli_train_then_test(tmp_path, config_file):
    parser = _parser()
    args = parser.parse_args(
        [
            "train",
            str(config_file),
            "--work-dir",
            str(tmp_path / "cli"),
            "--set",
            "optimizer.lr=0.01",
            "runner.max_epochs=2",
        ]
    )
    assert args.resume is False and args.amp is False
    assert args.func(args) == 0
    ckpt = torch.load(tmp_path / "cli" / "epoch_2.pth", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(0.01)
    assert parser.parse_args(["train", str(config_file), "--resume"]).resume is True
    assert parser.parse_args(["train", str(config_file), "--resume", "x.pth"]).resume == "x.pth"

    out = tmp_path / "results.json"
    args = parser.parse_args(
        [
            "test",
            str(config_file),
            str(tmp_path / "cli" / "epoch_2.pth"),
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "cli_test"),
        ]
    )
    assert args.func(args) == 0
    written = json.loads(out.read_text())
    assert len(written["results"]) == 6 and written["metrics"]["count"] == 6.0
    assert sorted(r["img_id"] for r in written["results"]) == list(range(6))
    assert all(len(r["bboxes"]) == 1 and len(r["bboxes"][0]) == 4 for r in written["results"])
