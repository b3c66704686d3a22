"""HTC with the semantic branch on the shapes data: the loss names (``loss_semantic_seg`` and
``s{i}.*`` per stage), learning (30 iterations on a fixed batch lower the semantic loss and every
stage's losses), eval outputs (boxes in the original image, bool masks at its size). The htc_shapes
config at 128 px on a few generated images, semantic maps through LoadAnnotations(with_seg) and
SegRescale."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import first_batch, shapes_config_tables

pytest.importorskip("det_plugin_htc", reason="det-plugin-htc is not installed")

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "htc" / "htc_shapes.toml"
STAGE_LOSSES = ("loss_cls", "loss_bbox", "loss_mask")
GROUPS = ("rpn", "semantic", "s0", "s1", "s2")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict:
    """The shapes config at 128 px on 4 train / 2 val images (val images resized 128 -> 160)."""
    return shapes_config_tables(CONFIG, tmp_path_factory.mktemp("shapes") / "shapes", num_train=4)


def _value(v) -> torch.Tensor:
    return sum(x.sum() for x in v) if isinstance(v, list) else v.sum()


def _groups(losses: dict) -> dict[str, float]:
    out = dict.fromkeys(GROUPS, 0.0)
    for k, v in losses.items():
        if "loss" in k:
            group = "rpn" if k.startswith("loss_rpn") else "semantic" if k == "loss_semantic_seg" else k[:2]
            out[group] += float(_value(v).detach())
    return out


def _fixed_losses(model: torch.nn.Module, batch: dict) -> dict[str, float]:
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(100)
        return _groups(model(**batch))


@pytest.fixture(scope="module")
def trained(shapes) -> dict:
    """30 AdamW iterations (lr 2e-3) of the whole detector on one batch of two train images."""
    batch = first_batch(shapes["train"])
    torch.manual_seed(0)
    model = detcore.build("detector", shapes["cfg"]["model"])
    model.init_weights()
    model.train()
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
    return {"model": model.eval(), "batch": batch, "first": first, "before": before, "after": after}


def test_the_batch_carries_semantic_maps_at_the_fusion_level(shapes, trained):
    batch = trained["batch"]
    seg = batch["gt_semantic_seg"]
    assert seg.shape == (2, 1, 16, 16) and seg.dtype == torch.long  # 128 px padded to 128, 1/8
    values = set(seg.unique().tolist())
    assert 0 in values and values <= {0, 1, 2, 3, 255} and len(values - {0, 255}) >= 1
    # the map's foreground lies inside the gt boxes (scaled to 1/8)
    for i, gt in enumerate(batch["gt_instances"]):
        inside = torch.zeros(16, 16, dtype=torch.bool)
        for x1, y1, x2, y2 in (gt.bboxes / 8).tolist():
            inside[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1] = True
        fg = (seg[i, 0] > 0) & (seg[i, 0] != 255)
        assert fg.any() and not (fg & ~inside).any()


def test_train_forward_names_the_losses_per_stage(trained):
    losses = trained["first"]
    expected = {"loss_rpn_cls", "loss_rpn_bbox", "loss_semantic_seg"}
    expected |= {f"s{i}.{n}" for i in range(3) for n in (*STAGE_LOSSES, "acc")}
    assert set(losses) == expected
    for name, value in losses.items():
        value = torch.stack(value) if isinstance(value, list) else value
        assert torch.isfinite(value).all(), f"{name} is not finite: {value}"
    assert losses["loss_semantic_seg"].requires_grad and float(losses["loss_semantic_seg"].detach()) > 0
    for i in range(3):
        assert losses[f"s{i}.loss_mask"].requires_grad and float(losses[f"s{i}.loss_mask"].detach()) > 0


def test_thirty_iterations_lower_the_losses(trained):
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


def test_a_batch_without_semantic_maps_is_refused_by_name(trained):
    model = trained["model"].train()
    batch = {k: v for k, v in trained["batch"].items() if k != "gt_semantic_seg"}
    try:
        with pytest.raises(KeyError, match="gt_semantic_seg"):
            model(**batch)
    finally:
        model.eval()
