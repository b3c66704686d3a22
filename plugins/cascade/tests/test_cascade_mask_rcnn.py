"""Cascade Mask R-CNN on the shapes data: per-stage loss names, learning (30 iterations on a fixed batch
lower every stage's losses), eval outputs (boxes in the original image, bool masks at its size, the
masks averaged over the stages' mask heads). The cascade_mask_rcnn_shapes config at 128 px on a few
generated images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import first_batch, shapes_config_tables

pytest.importorskip("det_plugin_cascade", reason="det-plugin-cascade is not installed")

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "cascade_rcnn" / "cascade_mask_rcnn_shapes.toml"
STAGE_LOSSES = ("loss_cls", "loss_bbox", "loss_mask")
GROUPS = ("rpn", "s0", "s1", "s2")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict:
    """The shapes config at 128 px on 4 train / 2 val images (val images resized 128 -> 160)."""
    return shapes_config_tables(CONFIG, tmp_path_factory.mktemp("shapes") / "shapes", num_train=4)


def _model(cfg: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = detcore.build("detector", cfg["model"])
    model.init_weights()
    return model


def _value(v) -> torch.Tensor:
    return sum(x.sum() for x in v) if isinstance(v, list) else v.sum()


def _groups(losses: dict) -> dict[str, float]:
    """Summed losses per group: the RPN's and each stage's (weighted as trained)."""
    out = dict.fromkeys(GROUPS, 0.0)
    for k, v in losses.items():
        if "loss" in k:
            out["rpn" if k.startswith("loss_rpn") else k.split(".")[0]] += float(_value(v).detach())
    return out


def _fixed_losses(model: torch.nn.Module, batch: dict) -> dict[str, float]:
    """The losses of ``batch`` with the samplers seeded alike on every call."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(100)
        return _groups(model(**batch))


@pytest.fixture(scope="module")
def trained(shapes) -> dict:
    """30 AdamW iterations (lr 2e-3) of the whole detector on one batch of two train images."""
    batch = first_batch(shapes["train"])
    model = _model(shapes["cfg"]).train()
    first = model(**batch)
    before = _fixed_losses(model, batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    for _ in range(30):
        losses = model(**batch)
        optimizer.zero_grad()
        sum(_value(v) for k, v in losses.items() if "loss" in k).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=35)
        optimizer.step()
    after = _fixed_losses(model, batch)
    return {"model": model.eval(), "first": first, "before": before, "after": after}


def test_train_forward_names_the_losses_per_stage(trained):
    losses = trained["first"]
    expected = {"loss_rpn_cls", "loss_rpn_bbox"}
    expected |= {f"s{i}.{n}" for i in range(3) for n in (*STAGE_LOSSES, "acc")}
    assert set(losses) == expected
    for name, value in losses.items():
        value = torch.stack(value) if isinstance(value, list) else value
        assert torch.isfinite(value).all(), f"{name} is not finite: {value}"
    for i in range(3):
        assert losses[f"s{i}.loss_mask"].requires_grad and float(losses[f"s{i}.loss_mask"].detach()) > 0


def test_thirty_iterations_lower_the_losses_of_every_stage(trained):
    before, after = trained["before"], trained["after"]
    for group in GROUPS:
        assert after[group] < 0.7 * before[group], f"{group}: {before[group]:.4f} -> {after[group]:.4f}"


def test_eval_outputs_are_well_formed_in_the_original_image(shapes, trained):
    from detcore.testing import check_detections

    model = trained["model"]
    model.roi_head.test_cfg["score_thr"] = 0.0
    batch = first_batch(shapes["val"])
    with torch.no_grad():
        results = model(imgs=batch["imgs"], img_metas=batch["img_metas"])
    metas = batch["img_metas"]
    assert tuple(metas[0]["img_shape"][:2]) == (160, 160) and tuple(metas[0]["ori_shape"][:2]) == (128, 128)
    check_detections(results, metas, max_per_img=100, num_classes=3, with_masks=True)


def test_test_masks_average_the_stage_mask_probabilities(shapes, trained):
    """The pasted masks equal those pasted from the mean of the three heads' sigmoids (and differ from
    the last head's alone)."""
    from detcore.models.utils import bbox2roi

    model = trained["model"]
    head = model.roi_head
    batch = first_batch(shapes["val"])
    with torch.no_grad():
        feats = model.extract_feat(batch["imgs"])
        proposals = model.rpn_head.predict(feats, batch["img_metas"], rescale=False)
        dets = head.predict_bbox(feats, batch["img_metas"], proposals, rescale=False)
        rois = bbox2roi([d.bboxes for d in dets])
        per_stage = []
        for i in range(3):
            mask_feats = head.mask_roi_extractor[i](feats[:4], rois)
            per_stage.append(head.mask_head[i](mask_feats).sigmoid())
        mean = torch.stack(per_stage).mean(0)
        torch.testing.assert_close(head.predict_mask_probs(feats, rois), mean)
        assert not torch.allclose(mean, per_stage[-1], atol=1e-3)
