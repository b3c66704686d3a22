"""The FCOS configs carry the reference 2.x settings (input normalisation, neck, head, schedule)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detcore.config import load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "fcos"
BASE = "fcos_r50_caffe_fpn_gn-head_1x_coco"
TRICKS = "fcos_r50_caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco"


def normalize_of(pipeline: list) -> dict:
    for t in pipeline:
        if t["type"] == "Normalize":
            return t
        if t["type"] == "MultiScaleFlipAug":
            return normalize_of(t["transforms"])
    raise AssertionError("no Normalize in the pipeline")


def test_standard_config():
    cfg = load_config(CONFIGS / f"{BASE}.toml")
    assert cfg["plugins"] == ["resnet", "fpn", "fcos"]
    bb = cfg["model"]["backbone"]
    assert (bb["depth"], bb["style"], bb["frozen_stages"], bb["norm_eval"]) == (50, "caffe", 1, True)
    neck = cfg["model"]["neck"]
    assert (neck["start_level"], neck["add_extra_convs"], neck["num_outs"]) == (1, "on_output", 5)
    assert neck["relu_before_extra_convs"] is True
    head = cfg["model"]["bbox_head"]
    assert head["strides"] == [8, 16, 32, 64, 128] and head["norm_cfg"] == {"type": "GN", "num_groups": 32}
    tricks = ("center_sampling", "norm_on_bbox", "centerness_on_reg", "dcn_on_last_conv")
    assert not any(head[k] for k in tricks)
    assert head["loss_bbox"]["type"] == "IoULoss" and head["loss_cls"]["gamma"] == 2.0
    assert cfg["model"]["test_cfg"]["nms"]["iou_threshold"] == 0.5
    for split in ("train", "val", "test"):
        norm = normalize_of(cfg["data"][split]["pipeline"])
        assert norm == {"type": "Normalize", "mean": [102.9801, 115.9465, 122.7717], "std": [1.0, 1.0, 1.0],
                        "to_rgb": False}
        assert cfg["data"][split]["data_root"] == "data/coco/"
    assert cfg["optimizer"]["lr"] == 0.01
    assert cfg["optimizer"]["paramwise_cfg"] == {"bias_lr_mult": 2.0, "bias_decay_mult": 0.0}
    assert cfg["optimizer_config"]["grad_clip"] == {"max_norm": 35, "norm_type": 2}
    lr = cfg["lr_config"]
    assert (lr["warmup"], lr["warmup_iters"], lr["step"]) == ("constant", 500, [8, 11])
    assert lr["warmup_ratio"] == pytest.approx(1 / 3)
    assert cfg["runner"]["max_epochs"] == 12


def test_tricks_config_switches():
    cfg = load_config(CONFIGS / f"{TRICKS}.toml")
    head = cfg["model"]["bbox_head"]
    assert all(head[k] for k in ("center_sampling", "norm_on_bbox", "centerness_on_reg", "conv_bias"))
    assert head["dcn_on_last_conv"] is False and head["center_sample_radius"] == 1.5
    assert head["loss_bbox"] == {"type": "GIoULoss", "loss_weight": 1.0}
    assert cfg["model"]["test_cfg"]["nms"]["iou_threshold"] == 0.6
    assert normalize_of(cfg["data"]["train"]["pipeline"])["mean"] == [103.53, 116.28, 123.675]
    assert cfg["optimizer_config"] == {}  # no gradient clipping
    assert cfg["lr_config"]["warmup"] == "linear"
    assert "resnet50_msra" in cfg["model"]["backbone"]["init_cfg"]["checkpoint"]
