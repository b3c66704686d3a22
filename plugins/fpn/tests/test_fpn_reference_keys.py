"""The necks' state-dict layouts against the reference checkpoints' key lists (``neck.*`` entries:
names, shapes, order), read from ``../shared/reference/checkpoint-keys`` relative to the repo root."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from det_plugin_fpn import FPN

from detcore.testing import reference_keys_dir, reference_keys_or_skip

REPO_ROOT = Path(__file__).resolve().parents[3]
KEY_DIR = reference_keys_dir()

C2_C5 = [256, 512, 1024, 2048]
P2_P6 = {"in_channels": C2_C5, "out_channels": 256, "num_outs": 5}
RETINA = {**P2_P6, "start_level": 1, "add_extra_convs": "on_input"}
FCOS = {**P2_P6, "start_level": 1, "add_extra_convs": "on_output", "relu_before_extra_convs": True}

#: key file -> FPN arguments of the reference config of that name
NECKS = {
    "cascade_mask_rcnn_r50_fpn_1x_coco": P2_P6,
    "cascade_rcnn_r50_fpn_1x_coco": P2_P6,
    "fast_rcnn_r50_fpn_1x_coco": P2_P6,
    "faster_rcnn_r50_caffe_fpn_1x_coco": P2_P6,
    "faster_rcnn_r50_fpn_1x_coco": P2_P6,
    "faster_rcnn_x101_64x4d_fpn_1x_coco": P2_P6,
    "fcos_r50_caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco": FCOS,
    "fcos_r50_caffe_fpn_gn-head_1x_coco": FCOS,
    "htc_r50_fpn_1x_coco": P2_P6,
    "htc_without_semantic_r50_fpn_1x_coco": P2_P6,
    "htc_x101_64x4d_fpn_dconv_c3-c5_mstrain_400_1400_16x1_20e_coco": P2_P6,
    "mask_rcnn_r101_fpn_1x_coco": P2_P6,
    "mask_rcnn_r50_fpn_1x_coco": P2_P6,
    "mask_rcnn_x101_32x4d_fpn_1x_coco": P2_P6,
    "retinanet_r101_fpn_1x_coco": RETINA,
    "retinanet_r50_fpn_1x_coco": RETINA,
    "retinanet_x101_64x4d_fpn_1x_coco": RETINA,
    "rpn_r50_fpn_1x_coco": P2_P6,
}



def reference_entries(name: str, prefix: str) -> list[tuple[str, tuple[int, ...]]]:
    """``(key without prefix, shape)`` of the entries of key file ``name`` that start with ``prefix``."""
    entries = reference_keys_or_skip(name).entries
    return [(key[len(prefix) :], shape) for key, shape in entries if key.startswith(prefix)]


@pytest.mark.skipif(KEY_DIR is None, reason="reference checkpoint-keys folder not found")
@pytest.mark.parametrize("name", sorted(NECKS))
def test_neck_entries_match_reference(name: str) -> None:
    expected = reference_entries(name, "neck.")
    with torch.device("meta"):
        neck = FPN(**NECKS[name])
    got = [(k, tuple(v.shape)) for k, v in neck.state_dict().items()]
    assert got == expected, [(g, e) for g, e in zip(got, expected) if g != e][:5] or (len(got), len(expected))


@pytest.mark.parametrize(
    "args, expected",
    [
        # 4 laterals (256..2048 -> 256, 1x1 + bias) and 4 output convs (3x3 + bias)
        (P2_P6, (256 + 512 + 1024 + 2048) * 256 + 4 * 256 + 4 * (256 * 256 * 9 + 256)),
        # 3 laterals, 3 output convs, extra convs 2048 -> 256 and 256 -> 256 (3x3, stride 2)
        (
            RETINA,
            (512 + 1024 + 2048) * 256
            + 3 * 256
            + 3 * (256 * 256 * 9 + 256)
            + (2048 * 256 * 9 + 256)
            + (256 * 256 * 9 + 256),
        ),
        (FCOS, (512 + 1024 + 2048) * 256 + 3 * 256 + 5 * (256 * 256 * 9 + 256)),
    ],
    ids=["P2-P6", "retinanet", "fcos"],
)
def test_neck_parameter_counts(args: dict, expected: int) -> None:
    with torch.device("meta"):
        neck = FPN(**args)
    assert sum(p.numel() for p in neck.parameters()) == expected
