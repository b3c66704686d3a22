"""Item 7: a TOML config overrides one stage of a cascade without restating the others, in an ``extends``
chain (a table keyed by the stage index) and with ``--set`` (an index path); the built head uses the
patched stage; a wrong index or a misspelt stage key names the file and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import load_config
from detcore.errors import ConfigError
from detcore.testing import load_validated_config

pytest.importorskip("det_plugin_cascade", reason="det-plugin-cascade is not installed")

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / "configs" / "cascade_rcnn" / "cascade_rcnn_r50_fpn_1x_coco.toml"

PATCH = f"""
extends = ["{BASE.as_posix()}"]

[model.train_cfg.rcnn.2.assigner]
pos_iou_thr = 0.75
neg_iou_thr = 0.75
min_pos_iou = 0.75

[model.roi_head.bbox_head.1.bbox_coder]
target_stds = [0.04, 0.04, 0.08, 0.08]
"""


def _build_roi_head(cfg) -> torch.nn.Module:
    with torch.device("meta"):
        return detcore.build("detector", cfg.to_dict()["model"]).roi_head


def test_one_stage_is_patched_and_the_others_stay_the_bases(tmp_path):
    path = tmp_path / "cascade_stage2_075.toml"
    path.write_text(PATCH)
    cfg, base = load_validated_config(path), load_validated_config(BASE)
    rcnn, base_rcnn = cfg["model"]["train_cfg"]["rcnn"], base["model"]["train_cfg"]["rcnn"]
    assert len(rcnn) == 3 and rcnn[:2] == base_rcnn[:2]
    assert rcnn[2]["assigner"] == dict(base_rcnn[2]["assigner"], pos_iou_thr=0.75, neg_iou_thr=0.75,
                                       min_pos_iou=0.75)  # fmt: skip
    assert rcnn[2]["sampler"] == base_rcnn[2]["sampler"]
    heads, base_heads = cfg["model"]["roi_head"]["bbox_head"], base["model"]["roi_head"]["bbox_head"]
    assert heads[0] == base_heads[0] and heads[2] == base_heads[2]
    assert heads[1]["bbox_coder"]["target_stds"] == [0.04, 0.04, 0.08, 0.08]
    assert {k: v for k, v in heads[1].items() if k != "bbox_coder"} == {
        k: v for k, v in base_heads[1].items() if k != "bbox_coder"
    }
    assert cfg.source_of("model.train_cfg.rcnn.2.assigner.pos_iou_thr") == str(path)
    assert cfg.source_of("model.train_cfg.rcnn.0.assigner.pos_iou_thr").endswith("cascade_rcnn_r50_fpn.toml")

    head = _build_roi_head(cfg)
    assert [a.pos_iou_thr for a in head.bbox_assigner] == [0.5, 0.6, 0.75]
    assert [a.neg_iou_thr for a in head.bbox_assigner] == [0.5, 0.6, 0.75]
    stds = [h.bbox_coder.stds for h in head.bbox_head]
    assert [list(map(float, s)) for s in stds] == [
        [0.1, 0.1, 0.2, 0.2], [0.04, 0.04, 0.08, 0.08], [0.033, 0.033, 0.067, 0.067],
    ]  # fmt: skip


def test_set_overrides_one_stage_by_its_index():
    cfg = load_config(BASE, ["model.train_cfg.rcnn.2.assigner.pos_iou_thr=0.75"])
    head = _build_roi_head(cfg)
    assert [a.pos_iou_thr for a in head.bbox_assigner] == [0.5, 0.6, 0.75]
    assert [a.neg_iou_thr for a in head.bbox_assigner] == [0.5, 0.6, 0.7]


def test_a_stage_index_outside_the_cascade_names_the_file_and_key_path(tmp_path):
    path = tmp_path / "bad_stage.toml"
    stage_3 = "[model.train_cfg.rcnn.3.assigner]\npos_iou_thr = 0.8\n"
    path.write_text(f'extends = ["{BASE.as_posix()}"]\n' + stage_3)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    expected = f"{path}: model.train_cfg.rcnn.3: index 3 is outside the array of 3 items"
    assert str(exc.value).startswith(expected)


def test_a_misspelt_key_in_one_stage_names_that_stage(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text(f'extends = ["{BASE.as_posix()}"]\n[model.train_cfg.rcnn.1]\npos_weigth = 1.0\n')
    with pytest.raises(ConfigError) as exc:
        load_validated_config(path)
    msg = str(exc.value)
    assert f"{path}: model.train_cfg.rcnn.1.pos_weigth: unknown key 'pos_weigth'" in msg
    assert "did you mean 'pos_weight'" in msg
