"""The backbones' state-dict layouts against the reference checkpoints' key lists.

Each file in ``../shared/reference/checkpoint-keys`` (relative to the repository root) lists the
reference checkpoint's entries ``name (shape)`` in state-dict order. A backbone built with the
config of the same name must produce exactly the ``backbone.*`` entries: names, shapes and order,
``num_batches_tracked`` buffers included. Models are built on the meta device (shapes only).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import reference_keys_dir, reference_keys_or_skip

REPO_ROOT = Path(__file__).resolve().parents[3]
KEY_DIR = reference_keys_dir()

R50 = {"type": "ResNet", "depth": 50, "frozen_stages": 1, "norm_eval": True, "style": "pytorch"}
R50_CAFFE = {**R50, "style": "caffe", "norm_cfg": {"type": "BN", "requires_grad": False}}
R101 = {**R50, "depth": 101}
X101_32 = {**R101, "type": "ResNeXt", "groups": 32, "base_width": 4}
X101_64 = {**R101, "type": "ResNeXt", "groups": 64, "base_width": 4}
X101_64_DCN = {
    **X101_64,
    "dcn": {"type": "DCN", "deform_groups": 1, "fallback_on_stride": False},
    "stage_with_dcn": [False, True, True, True],
}

#: key file -> the backbone table of the reference config of that name
BACKBONES = {
    "cascade_mask_rcnn_r50_fpn_1x_coco": R50,
    "cascade_rcnn_r50_fpn_1x_coco": R50,
    "fast_rcnn_r50_fpn_1x_coco": R50,
    "faster_rcnn_r50_caffe_fpn_1x_coco": R50_CAFFE,
    "faster_rcnn_r50_fpn_1x_coco": R50,
    "faster_rcnn_x101_64x4d_fpn_1x_coco": X101_64,
    "fcos_r50_caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco": R50_CAFFE,
    "fcos_r50_caffe_fpn_gn-head_1x_coco": R50_CAFFE,
    "htc_r50_fpn_1x_coco": R50,
    "htc_without_semantic_r50_fpn_1x_coco": R50,
    "htc_x101_64x4d_fpn_dconv_c3-c5_mstrain_400_1400_16x1_20e_coco": X101_64_DCN,
    "mask_rcnn_r101_fpn_1x_coco": R101,
    "mask_rcnn_r50_fpn_1x_coco": R50,
    "mask_rcnn_x101_32x4d_fpn_1x_coco": X101_32,
    "retinanet_r101_fpn_1x_coco": R101,
    "retinanet_r50_fpn_1x_coco": R50,
    "retinanet_x101_64x4d_fpn_1x_coco": X101_64,
    "rpn_r50_fpn_1x_coco": R50,
}

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def reference_entries(name: str, prefix: str) -> list[tuple[str, tuple[int, ...]]]:
    """``(key without prefix, shape)`` of the entries of key file ``name`` that start with ``prefix``."""
    entries = reference_keys_or_skip(name).entries
    return [(key[len(prefix) :], shape) for key, shape in entries if key.startswith(prefix)]


def backbone_entries(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    with torch.device("meta"):
        model = detcore.build("backbone", cfg)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.skipif(KEY_DIR is None, reason="reference checkpoint-keys folder not found")
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_entries_match_reference(name: str) -> None:
    expected = reference_entries(name, "backbone.")
    got = backbone_entries(BACKBONES[name])
    assert [k for k, _ in got] == [k for k, _ in expected], "key names or order differ"
    assert got == expected, [(g, e) for g, e in zip(got, expected) if g != e][:5]
    # the reference's BatchNorm2d keeps a num_batches_tracked buffer per norm, and so do we
    assert sum(k.endswith("num_batches_tracked") for k, _ in expected) > 0


@pytest.mark.skipif(KEY_DIR is None, reason="reference checkpoint-keys folder not found")
@pytest.mark.parametrize("name", ["retinanet_r50_fpn_1x_coco", "mask_rcnn_x101_32x4d_fpn_1x_coco"])
def test_backbone_parameter_count_matches_reference_shapes(name: str) -> None:
    expected = sum(
        int(torch.Size(shape).numel())
        for k, shape in reference_entries(name, "backbone.")
        if not k.endswith(_BUFFER_SUFFIXES)
    )
    with torch.device("meta"):
        model = detcore.build("backbone", BACKBONES[name])
    assert sum(p.numel() for p in model.parameters()) == expected
