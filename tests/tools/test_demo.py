"""The main job end to end, with a shortened schedule on a few shapes images."""

import json
from pathlib import Path

import pytest

from detcore.tools.demo import DEFAULT_CONFIG, run_demo

pytest.importorskip("det_plugin_fcos", reason="the demo config needs det-plugin-fcos")


def test_demo_trains_evaluates_and_draws(tmp_path, monkeypatch):
    monkeypatch.setenv("DETCORE_DATA", str(tmp_path / "data"))
    summary = run_demo(
        DEFAULT_CONFIG,
        out_dir=tmp_path / "out",
        epochs=3,
        num_pictures=2,
        overrides=[
            "data.train.num_images=16",
            "data.val.num_images=4",
            "data.test.num_images=4",
            "log_config.interval=1",
            "evaluation.interval=3",
            "lr_config.warmup_iters=2",
        ],
    )
    out = tmp_path / "out"
    assert Path(summary["checkpoint"]).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["bbox_mAP"] <= 1.0 and "bbox_mAP_50" in metrics
    assert metrics["precision"] == summary["precision"] in ("fp32", "bf16")  # which precision ran
    assert [Path(p).name for p in summary["pictures"]] and all(Path(p).is_file() for p in summary["pictures"])
    assert len(summary["pictures"]) == 2
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    detections = json.loads(Path(summary["detections"]).read_text())
    assert {c["name"] for c in detections["categories"]} == {"square", "circle", "triangle"}
    assert summary["last_loss"] < summary["first_loss"]
