"""Libra R-CNN and Libra RetinaNet: the reference layouts and counts, reference checkpoints loading,
the loss names, and a few training iterations lowering the losses on a painted batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import (
    check_loss_falls,
    check_reference_checkpoint_loads,
    fake_batch,
    load_validated_config,
    reference_keys_or_skip,
)

pytest.importorskip("det_plugin_libra", reason="det-plugin-libra is not installed")
pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "libra_rcnn"
STANDARD = ["libra_faster_rcnn_r50_fpn_1x_coco", "libra_retinanet_r50_fpn_1x_coco"]


def model_table(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"]


@pytest.mark.parametrize("name", STANDARD)
def test_layout_and_parameter_count_match_the_reference(name):
    count, entries = reference_keys_or_skip(name)
    with torch.device("meta"):
        model = detcore.build("detector", model_table(name))
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == entries
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("name", STANDARD)
def test_reference_checkpoint_loads(name, tmp_path):
    check_reference_checkpoint_loads(CONFIGS / f"{name}.toml", name, tmp_path)


@pytest.mark.parametrize(
    ("name", "depth", "base"),
    [("libra_faster_rcnn_r101_fpn_1x_coco", 101, "faster_rcnn_r101_fpn_1x_coco"),
     ("libra_faster_rcnn_x101_64x4d_fpn_1x_coco", 101, "faster_rcnn_x101_64x4d_fpn_1x_coco")],
)  # fmt: skip
def test_variants_are_the_plain_variant_plus_bfp(name, depth, base):
    """The deeper variants: the R-50 Libra settings on the plain config's backbone; their parameters
    are the plain variant's plus BFP's non-local block (4 x (256 x 256 + 256))."""
    table = model_table(name)
    assert table["backbone"]["depth"] == depth
    assert table["roi_head"] == model_table(STANDARD[0])["roi_head"]
    plain = load_validated_config(CONFIGS.parent / "faster_rcnn" / f"{base}.toml").to_dict()["model"]
    assert table["backbone"] == plain["backbone"]
    with torch.device("meta"):
        libra, reference = detcore.build("detector", table), detcore.build("detector", plain)
    count = sum(p.numel() for p in libra.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) + 4 * (256 * 256 + 256)


def test_libra_fast_rcnn_is_fast_rcnn_plus_bfp_on_the_libra_proposals():
    cfg = load_validated_config(CONFIGS / "libra_fast_rcnn_r50_fpn_1x_coco.toml").to_dict()
    plain = load_validated_config(CONFIGS.parent / "fast_rcnn" / "fast_rcnn_r50_fpn_1x_coco.toml").to_dict()
    for split in ("train", "val", "test"):
        steps = [s for s in cfg["data"][split]["pipeline"] if s["type"] == "LoadProposals"]
        assert len(steps) == 1 and "/libra_proposals/" in steps[0]["proposal_file"], split
        assert len(cfg["data"][split]["pipeline"]) == len(plain["data"][split]["pipeline"])
    assert cfg["model"]["train_cfg"]["rcnn"]["sampler"]["type"] == "CombinedSampler"
    with torch.device("meta"):
        libra, reference = detcore.build("detector", cfg["model"]), detcore.build("detector", plain["model"])
    count = sum(p.numel() for p in libra.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) + 4 * (256 * 256 + 256)


def shapes_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = detcore.build("detector", model_table(name))
    model.init_weights()
    return model


def test_libra_faster_rcnn_trains():
    model = shapes_model("libra_faster_rcnn_shapes")
    sampler = model.roi_head.bbox_sampler
    assert type(sampler.neg_sampler).__name__ == "IoUBalancedNegSampler"
    assert type(model.roi_head.bbox_head.loss_bbox).__name__ == "BalancedL1Loss"
    batch = fake_batch(num_images=2, img_size=(96, 96), num_classes=3, boxes_per_image=2)
    model.train()
    names = set(model(**batch))
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc"} <= names
    check_loss_falls(model, batch, iterations=12, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_rpn_cls", "loss_cls"), ratio=0.8)  # fmt: skip


def test_libra_retinanet_trains():
    model = shapes_model("libra_retinanet_shapes")
    assert type(model.neck[1]).__name__ == "BFP" and model.neck[1].refine_level == 1
    batch = fake_batch(num_images=2, img_size=(96, 96), num_classes=3, boxes_per_image=2)
    check_loss_falls(model, batch, iterations=12, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_cls", "loss_bbox"), ratio=0.8)  # fmt: skip
