"""FSAF detectors: the reference layouts and parameter counts, a reference checkpoint loading, the
train-mode loss names, 30 iterations lowering the loss, and detections in eval mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import (
    check_detections,
    check_loss_falls,
    check_reference_checkpoint_loads,
    check_reference_layout,
    fake_batch,
    load_validated_config,
    reference_keys_or_skip,
    state_dict_layout,
)

pytest.importorskip("det_plugin_fsaf", reason="det-plugin-fsaf is not installed")
pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "fsaf"
STANDARD = "fsaf_r50_fpn_1x_coco"


def model_table(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"]


def test_layout_and_parameter_count_match_the_reference():
    assert check_reference_layout(model_table(STANDARD), STANDARD) == 36_419_732


def test_reference_checkpoint_loads(tmp_path):
    model = check_reference_checkpoint_loads(CONFIGS / f"{STANDARD}.toml", STANDARD, tmp_path)
    assert type(model).__name__ == "FSAF" and type(model.bbox_head).__name__ == "FSAFHead"


@pytest.mark.parametrize("depth", ["r101", "x101_64x4d"])
def test_deeper_variants_are_the_retinanet_variants_with_the_fsaf_predictors(depth):
    """No key list ships for them: their layout is the reference RetinaNet variant's with the head's
    predictors of FSAF R-50 (80 classes and 4 distances for 1 prior instead of 9 anchors), and their
    count is RetinaNet's minus the R-50 RetinaNet/FSAF difference."""
    fsaf = reference_keys_or_skip(STANDARD)
    retina = reference_keys_or_skip(f"retinanet_{depth}_fpn_1x_coco")
    retina_r50 = reference_keys_or_skip("retinanet_r50_fpn_1x_coco")
    heads = ("bbox_head.retina_cls", "bbox_head.retina_reg")
    predictors = {k: s for k, s in fsaf.entries if k.startswith(heads)}
    expected = [(k, predictors.get(k, s)) for k, s in retina.entries]
    with torch.device("meta"):
        model = detcore.build("detector", model_table(f"fsaf_{depth}_fpn_1x_coco"))
    assert state_dict_layout(model) == expected
    count = sum(p.numel() for p in model.parameters())
    assert count == retina.param_count - retina_r50.param_count + fsaf.param_count


def shapes_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = detcore.build("detector", model_table("fsaf_shapes"))
    model.init_weights()
    return model


def test_shapes_model_parts_and_init():
    model = shapes_model()
    head = model.bbox_head
    assert type(head.assigner).__name__ == "CenterRegionAssigner"
    assert (head.assigner.pos_scale, head.assigner.neg_scale) == (0.2, 0.2)
    assert type(head.bbox_coder).__name__ == "TBLRBBoxCoder" and head.bbox_coder.normalizer == 4.0
    assert head.num_base_priors == 1
    assert torch.all(head.retina_reg.bias == 0.25)
    assert torch.allclose(head.retina_cls.bias.sigmoid(), torch.full((3,), 0.01))


def test_loss_names_and_training_lowers_the_loss():
    model = shapes_model()
    batch = fake_batch(num_images=2, img_size=(96, 96), num_classes=3, boxes_per_image=2)
    model.train()
    losses = model(**batch)
    assert set(losses) == {"loss_cls", "loss_bbox", "num_pos", "pos_recall"}  # the reference's names
    assert len(losses["loss_cls"]) == len(losses["loss_bbox"]) == 5
    check_loss_falls(model, batch, iterations=30, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_cls", "loss_bbox"), ratio=0.6)  # fmt: skip
    model.eval()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
    check_detections(results, batch["img_metas"], max_per_img=100, num_classes=3)
