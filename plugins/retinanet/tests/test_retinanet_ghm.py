"""RetinaNet with the GHM losses (configs/ghm): reference layout, the head's targets reach GHM-C / GHM-R
as the reference passes them (label weights, no avg_factor), and training lowers the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import detcore
from detcore.testing import (
    check_loss_falls,
    check_reference_checkpoint_loads,
    fake_batch,
    load_validated_config,
    reference_keys_or_skip,
)

pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "ghm"
VARIANTS = [
    "retinanet_ghm_r50_fpn_1x_coco",
    "retinanet_ghm_r101_fpn_1x_coco",
    "retinanet_ghm_x101_32x4d_fpn_1x_coco",
    "retinanet_ghm_x101_64x4d_fpn_1x_coco",
]


def model_table(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"]


def test_r50_layout_and_parameter_count_match_the_reference():
    count, entries = reference_keys_or_skip("retinanet_ghm_r50_fpn_1x_coco")
    with torch.device("meta"):
        model = detcore.build("detector", model_table("retinanet_ghm_r50_fpn_1x_coco"))
    layout = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert layout == entries
    assert sum(p.numel() for p in model.parameters()) == count


def test_reference_checkpoint_loads(tmp_path):
    name = "retinanet_ghm_r50_fpn_1x_coco"
    check_reference_checkpoint_loads(CONFIGS / f"{name}.toml", name, tmp_path)


@pytest.mark.parametrize("name", VARIANTS[1:])
def test_variants_differ_from_r50_only_in_the_backbone(name):
    base = model_table(VARIANTS[0])
    table = model_table(name)
    assert table["bbox_head"] == base["bbox_head"]
    assert table["backbone"]["depth"] == 101
    with torch.device("meta"):
        model = detcore.build("detector", table)
    assert type(model.bbox_head.loss_cls).__name__ == "GHMC"
    assert model.bbox_head.loss_bbox.loss_weight == 10.0


def _slow_ghm_weights(g: list[float], valid: list[bool], bins: int, last_edge: float) -> list[float]:
    """GHM density weights without momentum, one entry at a time: ``tot / (count in bin * bins used)``."""
    edges = [i / bins for i in range(bins + 1)]
    edges[-1] = last_edge
    tot = max(sum(valid), 1)
    bin_of = [next((b for b in range(bins) if edges[b] <= x < edges[b + 1]), None) if v else None
              for x, v in zip(g, valid)]
    counts = {b: bin_of.count(b) for b in set(bin_of) if b is not None}
    return [0.0 if b is None else tot / counts[b] / len(counts) for b in bin_of]


def _shapes_model(momentum: bool) -> torch.nn.Module:
    table = load_validated_config(CONFIGS / "retinanet_ghm_shapes.toml").to_dict()["model"]
    if not momentum:
        table["bbox_head"]["loss_cls"]["momentum"] = 0.0
        table["bbox_head"]["loss_bbox"]["momentum"] = 0.0
    torch.manual_seed(0)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def test_head_losses_equal_ghm_recomputed_from_its_targets():
    """Per level, the head's loss_cls is GHM-C over the anchors of positive label weight (ignored
    anchors between the IoU thresholds and background one-hot rows all zero) averaged over their
    count, and loss_bbox is GHM-R over the positives' deltas: both recomputed here entry by entry."""
    model = _shapes_model(momentum=False)
    model.train()
    batch = fake_batch(num_images=2, img_size=(96, 128), num_classes=3, boxes_per_image=2)
    head = model.bbox_head
    feats = model.extract_feat(batch["imgs"])
    cls_scores, bbox_preds = head(feats)
    targets = head.loss_targets(cls_scores, batch["gt_instances"], batch["img_metas"],
                                batch["gt_ignored_instances"])
    losses = head.loss_from_targets(cls_scores, bbox_preds, targets)
    assert any(bool((w == 0).any()) for w in targets.label_weights_list), "no ignored anchor in the case"
    for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
        logits = cls.detach().permute(0, 2, 3, 1).reshape(-1, 3)
        labels = targets.labels_list[level].reshape(-1)
        lw = targets.label_weights_list[level].reshape(-1)
        onehot = torch.zeros_like(logits)
        fg = labels < 3
        onehot[fg, labels[fg]] = 1.0
        valid = (lw > 0)[:, None].expand_as(logits)
        g = (logits.sigmoid() - onehot).abs()
        w = torch.tensor(_slow_ghm_weights(g.flatten().tolist(), valid.flatten().tolist(), 30, 1 + 1e-6))
        bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").flatten()
        expected_cls = (bce * w).sum() / max(int(valid.sum()), 1)
        torch.testing.assert_close(losses["loss_cls"][level].detach(), expected_cls, rtol=1e-4, atol=1e-6)

        deltas = reg.detach().permute(0, 2, 3, 1).reshape(-1, 4)
        t = targets.bbox_targets_list[level].reshape(-1, 4)
        bw = targets.bbox_weights_list[level].reshape(-1, 4)
        d = deltas - t
        mu = 0.02
        g = (d / torch.sqrt(d * d + mu * mu)).abs()
        w = torch.tensor(_slow_ghm_weights(g.flatten().tolist(), (bw > 0).flatten().tolist(), 10, 1e3))
        per_entry = (torch.sqrt(d * d + mu * mu) - mu).flatten()
        expected_bbox = 10.0 * (per_entry * w).sum() / max(float(bw.sum()), 1.0)
        torch.testing.assert_close(losses["loss_bbox"][level].detach(), expected_bbox, rtol=1e-4, atol=1e-6)


def test_momentum_counts_accumulate_during_training():
    model = _shapes_model(momentum=True)
    batch = fake_batch(num_images=2, img_size=(96, 128), num_classes=3, boxes_per_image=2)
    check_loss_falls(model, batch, iterations=20, lr=0.005, ratio=0.8)
    assert float(model.bbox_head.loss_cls.acc_sum.sum()) > 0
    assert float(model.bbox_head.loss_bbox.acc_sum.sum()) > 0


def test_ghmc_density_weights_on_a_chosen_distribution():
    """Four negatives with gradient norms g = 0.05, 0.05, 0.05, 0.95 (sigmoid outputs against target 0):
    bins 0 and 9 of 10 are used (n = 2), tot = 4. Without momentum the weights are tot / (count * n):
    2/3 for the three easy ones and 2 for the hard one; with momentum 0.75 the counts are moving
    averages starting at 0: 0.75 and 0.25 after the first call, 1.3125 and 0.4375 after the second."""
    from detcore.models.losses import GHMC

    g = torch.tensor([0.05, 0.05, 0.05, 0.95])
    logits = torch.log(g / (1 - g))[:, None]
    labels = torch.ones(4, dtype=torch.long)  # = num_classes (1): background
    bce = -torch.log(1 - g)

    def expected(weights):
        return float((bce * torch.tensor(weights)).sum() / 4)

    plain = GHMC(bins=10, momentum=0)(logits, labels, torch.ones(4))
    assert float(plain) == pytest.approx(expected([2 / 3, 2 / 3, 2 / 3, 2.0]), rel=1e-5)
    loss = GHMC(bins=10, momentum=0.75)
    first = loss(logits, labels, torch.ones(4))
    assert float(first) == pytest.approx(expected([4 / 0.75 / 2] * 3 + [4 / 0.25 / 2]), rel=1e-5)
    second = loss(logits, labels, torch.ones(4))
    assert float(second) == pytest.approx(expected([4 / 1.3125 / 2] * 3 + [4 / 0.4375 / 2]), rel=1e-5)
    torch.testing.assert_close(loss.acc_sum[[0, 9]], torch.tensor([1.3125, 0.4375]))
    # an entry of label weight 0 leaves the count and the average
    ignored = GHMC(bins=10, momentum=0)(logits, labels, torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert float(ignored) == pytest.approx(float(bce[:3].sum() / 3), rel=1e-5)
