"""TridentNet: the reference layout and parameter count, a reference checkpoint loading, the settings of
the reference config, the ground truth repeated per branch and the scale-aware ranges on hand-made
boxes, the branch merge at test time, the loss names and 30 iterations lowering every loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.structures import Instances
from detcore.testing import (
    check_detections,
    check_reference_checkpoint_loads,
    check_reference_layout,
    fake_batch,
    load_validated_config,
    shapes_batches,
)

pytest.importorskip("det_plugin_tridentnet", reason="det-plugin-tridentnet is not installed")
pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
STANDARD = "tridentnet_r50_caffe_1x_coco"
LOSSES = ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox")


def _cfg(name: str) -> dict:
    return load_validated_config(CONFIGS / "tridentnet" / f"{name}.toml").to_dict()


def test_layout_and_parameter_count_match_the_reference():
    assert check_reference_layout(_cfg(STANDARD)["model"], STANDARD) == 33_844_764


def test_reference_checkpoint_loads(tmp_path):
    check_reference_checkpoint_loads(CONFIGS / "tridentnet" / f"{STANDARD}.toml", STANDARD, tmp_path)


def test_reference_settings():
    model = _cfg(STANDARD)["model"]
    assert model["backbone"]["trident_dilations"] == [1, 2, 3]
    assert model["backbone"]["num_branch"] == model["roi_head"]["num_branch"] == 3
    assert model["backbone"]["test_branch_idx"] == model["roi_head"]["test_branch_idx"] == 1
    assert model["backbone"]["style"] == "caffe" and model["backbone"]["num_stages"] == 3
    assert model["train_cfg"]["rpn_proposal"]["max_per_img"] == 500
    sampler = model["train_cfg"]["rcnn"]["sampler"]
    assert (sampler["num"], sampler["pos_fraction"], sampler["add_gt_as_proposals"]) == (128, 0.5, False)


def _model(**changes) -> torch.nn.Module:
    table = _cfg("tridentnet_shapes")["model"]
    table.update(changes)
    torch.manual_seed(0)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def test_ground_truth_per_branch_and_scale_aware_ranges():
    """Boxes of size sqrt(w h) 20, 100 and 200 with the paper's ranges [0, 90], [30, 160], [90, inf):
    branch 0 keeps the 20 px box, branch 1 the 100 px one, branch 2 the 100 and 200 px ones; the others
    become that branch's ignored boxes. Without ranges every branch gets the whole ground truth."""
    gt = Instances(
        bboxes=torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 400.0, 100.0]]),
        labels=torch.tensor([0, 1, 2]),
    )
    plain = _model()
    gts, ignored = plain.branch_ground_truth([gt, gt[:1]], None)
    assert len(gts) == 6 and ignored is None
    assert [len(g) for g in gts] == [3, 1, 3, 1, 3, 1]  # branch-major: (b0 i0, b0 i1, b1 i0, ...)
    aware = _model(scale_aware_ranges=[[0, 90], [30, 160], [90, -1]])
    gts, ignored = aware.branch_ground_truth([gt], None)
    assert [g.labels.tolist() for g in gts] == [[0], [1], [1, 2]]
    assert [len(i.bboxes) for i in ignored] == [2, 2, 1]
    assert torch.equal(ignored[2].bboxes, gt.bboxes[:1])
    with pytest.raises(ValueError, match="one \\[lo, hi\\] per branch"):
        _model(scale_aware_ranges=[[0, 90]])


def test_branch_merge_keeps_the_best_of_overlapping_detections():
    """test_branch_idx = -1: per image the three branches' detections are NMS-ed together (per class)."""
    head = _model().roi_head
    head.test_cfg = {**head.test_cfg, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 10}

    def det(boxes, scores, labels):
        return Instances(bboxes=torch.tensor(boxes), scores=torch.tensor(scores), labels=torch.tensor(labels))

    box, other = [10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]
    results = [
        det([box], [0.6], [0]),  # branch 0
        det([[11.0, 10.0, 51.0, 50.0], other], [0.9, 0.4], [0, 0]),  # branch 1
        det([box], [0.7], [1]),  # branch 2: same box, other class
    ]
    (merged,) = head.merge_branches(results, num_images=1)
    assert merged.scores.tolist() == pytest.approx([0.9, 0.7, 0.4])
    assert merged.labels.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="3 branches x 2 images"):
        head.merge_branches(results, num_images=2)


def _small_model() -> torch.nn.Module:
    """The shapes model at half its width, with fewer proposals and RoIs, the gt boxes added to them
    (a fast training test)."""
    table = _cfg("tridentnet_shapes")["model"]
    table["backbone"]["base_channels"] = 8  # res4: 128 channels
    table["rpn_head"].update(in_channels=128, feat_channels=128)
    table["roi_head"]["bbox_roi_extractor"]["out_channels"] = 128
    table["roi_head"]["bbox_head"].update(in_channels=128, fc_out_channels=128)
    table["train_cfg"]["rpn_proposal"].update(nms_pre=200, max_per_img=64)
    # gt boxes as proposals: the untrained RPN's proposals alone give the box head too few positives
    table["train_cfg"]["rcnn"]["sampler"].update(num=32, add_gt_as_proposals=True)
    torch.manual_seed(0)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def _fixed_proposals(batch: dict) -> list[Instances]:
    """Per image: every gt box jittered 8 times (up to 20% of its size) plus 16 random boxes, seeded."""
    g = torch.Generator().manual_seed(7)
    h, w = batch["imgs"].shape[-2:]
    out = []
    for gt in batch["gt_instances"]:
        boxes = gt.bboxes.repeat(8, 1)
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        boxes = boxes + (torch.rand(boxes.shape, generator=g) - 0.5) * 0.4 * size
        xy = torch.rand(16, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 6 + torch.rand(16, 2, generator=g) * 24
        out.append(Instances(bboxes=torch.cat([boxes, torch.cat([xy, xy + wh], 1)])))
    return out


def _fixed_losses(model: torch.nn.Module, batch: dict) -> dict[str, float]:
    """Every loss on the same inputs each call: the RPN's on its anchors, the RoI head's on fixed
    proposals (the same for every branch), the samplers seeded."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(100)
        feats = model.extract_feat(batch["imgs"])
        gts, ignored = model.branch_ground_truth(batch["gt_instances"], batch["gt_ignored_instances"])
        metas = list(batch["img_metas"]) * model.num_branch
        losses = model.rpn_head.loss(feats, gts, metas, ignored)
        proposals = _fixed_proposals(batch) * model.num_branch
        losses.update(model.roi_head.loss(feats, proposals, gts, metas, ignored))
    return {k: float(sum(x.sum() for x in v)) if isinstance(v, list) else float(v) for k, v in losses.items()
            if k in LOSSES}  # fmt: skip


def _train_on_fixed_proposals(model: torch.nn.Module, batch: dict, iterations: int) -> None:
    """Adam steps (lr 2e-3, clip 35) of the whole detector through the three branches: the RPN on its
    anchors, the RoI head on :func:`_fixed_proposals` (the RPN's proposals would change the RoI head's
    task as the RPN learns; see the test below)."""
    from detcore.engine.loops import parse_losses

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=2e-3)
    model.train()
    for _ in range(iterations):
        feats = model.extract_feat(batch["imgs"])
        gts, ignored = model.branch_ground_truth(batch["gt_instances"], batch["gt_ignored_instances"])
        metas = list(batch["img_metas"]) * model.num_branch
        losses = dict(model.rpn_head.loss(feats, gts, metas, ignored))
        proposals = _fixed_proposals(batch) * model.num_branch
        losses.update(model.roi_head.loss(feats, proposals, gts, metas, ignored))
        total, _ = parse_losses(losses)
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 35.0)
        optimizer.step()


def test_losses_and_thirty_iterations_lower_every_loss(tmp_path):
    """30 Adam steps on two shapes images (128 px) lower every loss, measured on the same inputs before
    and after (RPN on its anchors, RoI head on fixed proposals, samplers seeded).

    The RoI head trains on the fixed proposals, not the RPN's: trained on the RPN's proposals (plus the
    gt boxes) its positives are mostly the gt boxes themselves (12 of 12-24 here, target 0) and a few
    RPN boxes close to them, so 30 steps teach it nothing about the fixed proposals' +-20 % offsets
    (measured 1.10 -> 1.18 for this model, 1.10 -> 1.15 for a plain C4 Faster R-CNN of the same tables
    and 0.72 -> 0.73 for faster_rcnn_shapes' FPN model under that protocol; after 150 steps 1.10 ->
    0.91 here). Not a defect of the box branch: test_box_targets_loss_and_gradient_by_hand checks it."""
    model = _small_model()
    (batch,) = shapes_batches(tmp_path / "shapes", num_batches=1, batch_size=2, image_size=128)
    model.train()
    losses = model(**batch)
    assert set(losses) == {*LOSSES, "acc"}
    # the RPN and the RoI head see the three branches as 6 images
    assert model.backbone(batch["imgs"])[0].shape[0] == 6
    before = _fixed_losses(model, batch)
    _train_on_fixed_proposals(model, batch, iterations=30)
    after = _fixed_losses(model, batch)
    # measured after / before (init seeds 0-2): rpn_cls 0.05, rpn_bbox 0.60-0.78, cls 0.01, bbox 0.64-0.66
    limits = {"loss_rpn_cls": 0.5, "loss_rpn_bbox": 0.9, "loss_cls": 0.5, "loss_bbox": 0.85}
    for name, limit in limits.items():
        assert after[name] < limit * before[name], f"{name}: {before[name]:.4f} -> {after[name]:.4f}"


def test_box_targets_loss_and_gradient_by_hand():
    """One image, one gt box (20, 16, 84, 64) of class 1, a proposal (24, 12, 88, 72) offset from it
    (IoU 0.71) and a far one: the sampled RoIs are the gt box (added as a proposal), the offset one
    (positives) and the far one (negative); the regression targets are the hand-computed deltas over
    the coder's stds (0.1, 0.1, 0.2, 0.2); loss_bbox is the L1 of the class-1 deltas of the two
    positives over the 3 sampled RoIs (the reference's avg_factor), and its gradient reaches fc_reg's
    class-1 rows only and, through RoIAlign at stride 16, the res4 features."""
    import math

    head = _small_model().roi_head.train()
    gt = Instances(bboxes=torch.tensor([[20.0, 16.0, 84.0, 64.0]]), labels=torch.tensor([1]))
    proposals = [Instances(bboxes=torch.tensor([[24.0, 12.0, 88.0, 72.0], [96.0, 96.0, 120.0, 124.0]]))]
    feats = torch.randn(1, 128, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    meta = {"img_shape": (128, 128, 3), "pad_shape": (128, 128, 3), "scale_factor": [1.0] * 4}
    (res,) = head.sample([feats], proposals, [gt])
    assert res.pos_bboxes.tolist() == [[20.0, 16.0, 84.0, 64.0], [24.0, 12.0, 88.0, 72.0]]
    assert res.pos_is_gt.tolist() == [1, 0] and res.neg_bboxes.tolist() == [[96.0, 96.0, 120.0, 124.0]]
    labels, _, targets, weights = head.bbox_head.get_targets([res])
    assert labels.tolist() == [1, 1, 3] and weights.sum(1).tolist() == [4.0, 4.0, 0.0]
    # proposal: centre (56, 42), size 64 x 60; gt: centre (52, 40), size 64 x 48
    by_hand = [(52 - 56) / 64 / 0.1, (40 - 42) / 60 / 0.1, math.log(64 / 64) / 0.2, math.log(48 / 60) / 0.2]
    torch.testing.assert_close(targets[1], torch.tensor(by_hand))
    assert targets[0].abs().max() < 1e-6 and targets[2].abs().max() == 0
    torch.manual_seed(0)
    losses = head.loss([feats], proposals, [gt], [meta])
    rois = torch.cat([torch.zeros(3, 1), torch.cat([res.pos_bboxes, res.neg_bboxes])], 1)
    bbox_pred = head._bbox_forward([feats], rois)["bbox_pred"].view(3, 3, 4)
    want = (bbox_pred[:2, 1] - targets[:2]).abs().sum() / 3
    torch.testing.assert_close(losses["loss_bbox"], want)
    feats.grad = None
    losses["loss_bbox"].backward()
    grad = head.bbox_head.fc_reg.weight.grad.view(3, 4, -1).abs().sum(-1)
    assert (grad[1] > 0).all() and grad[0].sum() == 0 and grad[2].sum() == 0
    assert feats.grad.abs().sum() > 0


@pytest.mark.parametrize("test_branch_idx", [1, -1])
def test_eval_runs_the_test_branch_or_merges_all(test_branch_idx):
    model = _model()
    model.backbone.test_branch_idx = model.roi_head.test_branch_idx = test_branch_idx
    model.test_branch_idx = test_branch_idx
    for m in model.backbone.modules():
        if hasattr(m, "test_branch_idx"):
            m.test_branch_idx = test_branch_idx
    model.eval()
    batch = fake_batch(num_images=2, img_size=(96, 80), num_classes=3, boxes_per_image=2, scale_factor=2.0)
    with torch.no_grad():
        feats = model.backbone(batch["imgs"])[0]
        results = model(batch["imgs"], batch["img_metas"])
    assert feats.shape[0] == (2 if test_branch_idx == 1 else 6)
    check_detections(results, batch["img_metas"], max_per_img=100, num_classes=3)


def test_mismatched_branches_are_refused():
    table = _cfg("tridentnet_shapes")["model"]
    table["roi_head"]["test_branch_idx"] = 0
    with pytest.raises(Exception, match="test_branch_idx"):
        detcore.build("detector", table)
