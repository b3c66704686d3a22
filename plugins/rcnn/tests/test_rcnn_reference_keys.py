"""Every standard two-stage config against the reference checkpoint's layout.

For each config named like a file in ``shared/reference/checkpoint-keys`` the model built from it (on the
meta device: shapes only) has exactly the reference's state-dict entries, in order, with their shapes,
and the reference's parameter count; and a reference-format checkpoint (``{"meta": ..., "state_dict":
...}`` made here from the file's shapes) loads with no missing, unexpected or mis-shaped key, both as
``load_from`` does (``Runner.load_weights_from``) and through ``detcore.api.init_detector``.

The C4 config has no key file of its own; TridentNet's reference checkpoint is a C4 Faster R-CNN whose
RPN, shared res5 head and box head have the same layout, so those entries are checked against it.
"""

from __future__ import annotations

import logging
import types
from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import (
    check_reference_layout,
    first_differences,
    load_validated_config,
    reference_keys_or_skip,
    state_dict_layout,
)

pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")

ROOT = Path(__file__).resolve().parents[3]

#: reference key file (= config name) -> the configs/ folder holding that config
STANDARD = {
    "rpn_r50_fpn_1x_coco": "rpn",
    "fast_rcnn_r50_fpn_1x_coco": "fast_rcnn",
    "faster_rcnn_r50_fpn_1x_coco": "faster_rcnn",
    "faster_rcnn_r50_caffe_fpn_1x_coco": "faster_rcnn",
    "faster_rcnn_x101_64x4d_fpn_1x_coco": "faster_rcnn",
    "faster_rcnn_r50_fpn_dconv_c3-c5_1x_coco": "dcn",
    "faster_rcnn_r50_fpn_gn-ws-all_1x_coco": "gn+ws",
    "mask_rcnn_r50_fpn_1x_coco": "mask_rcnn",
    "mask_rcnn_r101_fpn_1x_coco": "mask_rcnn",
    "mask_rcnn_x101_32x4d_fpn_1x_coco": "mask_rcnn",
    "mask_rcnn_r50_fpn_gn-all_2x_coco": "gn",
    "mask_rcnn_r50_fpn_mdconv_c3-c5_1x_coco": "dcn",
}
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def config_path(name: str) -> Path:
    return ROOT / "configs" / STANDARD.get(name, "faster_rcnn") / f"{name}.toml"


def model_table(name: str) -> dict:
    return load_validated_config(config_path(name)).to_dict()["model"]


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_state_dict_and_parameter_count_match_the_reference(name):
    check_reference_layout(model_table(name), name)


def _reference_checkpoint(name: str, path: Path) -> dict[str, torch.Tensor]:
    """A reference-format checkpoint file of ``name``'s layout with seeded random values."""
    gen = torch.Generator().manual_seed(0)
    state = {
        k: torch.tensor(11) if k.endswith("num_batches_tracked") else torch.rand(shape, generator=gen)
        for k, shape in reference_keys_or_skip(name).entries
    }
    meta = {"CLASSES": [f"c{i}" for i in range(80)], "mmdet_version": "2.28.2"}
    torch.save({"meta": meta, "state_dict": state}, path)
    return state


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_reference_checkpoint_loads_through_init_detector_and_load_from(name, tmp_path):
    from detcore.api import init_detector
    from detcore.engine.runner import Runner

    ckpt = tmp_path / f"{name}_ref.pth"
    state = _reference_checkpoint(name, ckpt)
    model = init_detector(config_path(name), ckpt)
    report = model.load_report
    assert report.clean, report.format()
    assert not model.training and len(model.CLASSES) == 80
    loaded = model.state_dict()
    probe = [k for k in state if not k.endswith(_BUFFERS)]
    for key in probe[:: max(1, len(probe) // 25)] + [probe[-1]]:
        assert torch.equal(loaded[key], state[key]), key
    # load_from: the Runner's weights-only load into a freshly built model
    fresh = detcore.build("detector", model_table(name))
    owner = types.SimpleNamespace(unwrapped_model=fresh, logger=logging.getLogger("test_rcnn_reference_keys"))
    Runner.load_weights_from(owner, ckpt)
    assert owner.load_report.clean, owner.load_report.format()
    for key in (probe[0], probe[len(probe) // 2], probe[-1]):
        assert torch.equal(fresh.state_dict()[key], state[key]), key


def test_c4_heads_match_the_reference_c4_layout():
    trident = reference_keys_or_skip("tridentnet_r50_caffe_1x_coco").entries
    caffe_fpn = reference_keys_or_skip("faster_rcnn_r50_caffe_fpn_1x_coco").entries
    with torch.device("meta"):
        model = detcore.build("detector", model_table("faster_rcnn_r50_caffe_c4_1x_coco"))
    got = state_dict_layout(model)
    # backbone: the caffe R-50's stem and stages 1-3 (layer4 moved into the RoI head)
    expected_backbone = [(k, s) for k, s in caffe_fpn if k.startswith("backbone.") and "layer4" not in k]
    assert [e for e in got if e[0].startswith("backbone.")] == expected_backbone
    expected_heads = [(k, s) for k, s in trident if not k.startswith("backbone.")]
    got_heads = [e for e in got if not e[0].startswith("backbone.")]
    assert got_heads == expected_heads, first_differences(got_heads, expected_heads)


def test_dc5_layout():
    with torch.device("meta"):
        model = detcore.build("detector", model_table("faster_rcnn_r50_caffe_dc5_1x_coco"))
    state = dict(state_dict_layout(model))
    assert state["rpn_head.rpn_conv.weight"] == (2048, 2048, 3, 3)
    assert state["rpn_head.rpn_cls.weight"] == (15, 2048, 1, 1)
    assert state["roi_head.bbox_head.shared_fcs.0.weight"] == (1024, 2048 * 7 * 7)
    assert state["roi_head.bbox_head.fc_cls.weight"] == (81, 1024)
    assert state["backbone.layer4.0.conv2.weight"] == (512, 512, 3, 3)
    assert model.backbone.layer4[0].conv2.dilation == (2, 2) and model.backbone.layer4[0].conv1.stride == (
        1,
        1,
    )
    assert not any(k.startswith("neck.") for k in state)
