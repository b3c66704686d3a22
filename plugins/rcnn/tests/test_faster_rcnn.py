"""Faster and Fast R-CNN: the train/eval forward contract, images without ground truth, given proposals,
a checkpoint with a wrong head shape, and 30 training iterations on shapes lowering every loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import load_config
from detcore.structures.instances import Instances
from detcore.testing import two_image_batch

pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")

ROOT = Path(__file__).resolve().parents[3]
SHAPES = ROOT / "configs" / "faster_rcnn" / "faster_rcnn_shapes.toml"
LOSSES = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "acc", "loss_bbox"}


#: every test on one torch thread (the ``one_thread`` fixture of detcore's pytest plugin)
pytestmark = pytest.mark.usefixtures("one_thread")


def shapes_model_table() -> dict:
    return load_config(SHAPES).to_dict()["model"]


def tiny_faster(**rcnn_test) -> torch.nn.Module:
    table = shapes_model_table()
    table["test_cfg"]["rcnn"].update(rcnn_test)
    torch.manual_seed(0)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def total(losses: dict) -> torch.Tensor:
    return sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if "loss" in k)


def test_train_forward_returns_the_reference_losses():
    model = tiny_faster()
    model.train()
    losses = model(**two_image_batch())
    assert set(losses) == LOSSES
    for name in ("loss_rpn_cls", "loss_rpn_bbox"):
        assert len(losses[name]) == 5 and all(torch.isfinite(v) for v in losses[name])  # per FPN level
    for name in ("loss_cls", "acc", "loss_bbox"):
        assert torch.isfinite(losses[name]).all(), name
    # fresh fc_cls (std 0.01): softmax over 4 classes is ~uniform, so loss_cls ~ log(4)
    assert abs(float(losses["loss_cls"].detach()) - torch.log(torch.tensor(4.0))) < 0.05
    total(losses).backward()
    assert model.rpn_head.rpn_conv.weight.grad.abs().sum() > 0
    assert model.roi_head.bbox_head.fc_cls.weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_eval_outputs_are_well_formed_in_original_coordinates():
    model = tiny_faster(score_thr=0.0, max_per_img=20)
    model.eval()
    batch = two_image_batch()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
        raw = model.predict(batch["imgs"], batch["img_metas"], rescale=False)
    assert len(results) == 2
    for res, meta in zip(results, batch["img_metas"]):
        assert isinstance(res, Instances) and 0 < len(res) <= 20
        assert res.bboxes.shape == (len(res), 4) and res.scores.shape == (len(res),)
        assert res.labels.dtype == torch.long and res.labels.min() >= 0 and res.labels.max() < 3
        h, w = meta["ori_shape"][:2]
        assert res.bboxes[:, 0::2].min() >= 0 and res.bboxes[:, 0::2].max() <= w + 1e-4
        assert res.bboxes[:, 1::2].min() >= 0 and res.bboxes[:, 1::2].max() <= h + 1e-4
        assert bool((res.scores[:-1] >= res.scores[1:]).all())
    torch.testing.assert_close(raw[0].bboxes / 2, results[0].bboxes)  # image 0 was resized 2x


def test_an_image_without_ground_truth_trains():
    model = tiny_faster()
    model.train()
    batch = two_image_batch()
    batch["gt_instances"][0] = Instances(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    losses = model(**batch)
    assert set(losses) == LOSSES and torch.isfinite(total(losses))
    total(losses).backward()
    # a batch whose only image has no ground truth: only negatives, and the box losses are zero
    single = {k: v[:1] for k, v in batch.items()}
    losses = model(**single)
    assert float(losses["loss_bbox"].detach()) == 0.0 and float(sum(losses["loss_rpn_bbox"]).detach()) == 0.0
    assert torch.isfinite(total(losses))
    total(losses).backward()


def test_given_proposals_replace_the_rpn_and_fast_rcnn_needs_them():
    model = tiny_faster(score_thr=0.0)
    model.eval()
    batch = two_image_batch()
    proposals = [
        Instances(bboxes=torch.tensor([[10.0, 20.0, 60.0, 90.0]])),
        Instances(bboxes=torch.tensor([[5.0, 5.0, 40.0, 40.0], [0.0, 0.0, 30.0, 30.0]])),
    ]
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"], proposals=proposals)
    # at most one detection per proposal and class
    assert len(results[0]) <= 3 and len(results[1]) <= 6

    table = shapes_model_table()
    fast = dict(type="FastRCNN", backbone=table["backbone"], neck=table["neck"], roi_head=table["roi_head"],
                train_cfg={"rcnn": table["train_cfg"]["rcnn"]},
                test_cfg={"rcnn": table["test_cfg"]["rcnn"]})  # fmt: skip
    torch.manual_seed(0)
    fast_model = detcore.build("detector", fast)
    fast_model.init_weights()
    assert not any(k.startswith("rpn_head") for k in fast_model.state_dict())
    fast_model.train()
    losses = fast_model(**batch, proposals=proposals)
    assert set(losses) == {"loss_cls", "acc", "loss_bbox"} and torch.isfinite(total(losses))
    with pytest.raises(ValueError, match="proposals"):
        fast_model(**batch)
    fast_model.eval()
    with torch.no_grad():
        results = fast_model(batch["imgs"], batch["img_metas"], proposals=proposals)
    assert len(results) == 2 and all(r.bboxes.shape[1] == 4 for r in results)


def test_a_checkpoint_with_a_wrong_head_shape_names_the_key_and_both_shapes(tmp_path):
    from detcore.models.checkpoint_io import load_checkpoint

    model = tiny_faster()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(81, 256)  # an 80-class checkpoint
    path = tmp_path / "faster_80_classes.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(RuntimeError) as err:
        load_checkpoint(model, str(path))
    message = str(err.value)
    assert "roi_head.bbox_head.fc_cls.weight" in message
    assert "(81, 256)" in message and "(4, 256)" in message


def fixed_proposals(gt_instances: list[Instances]) -> list[Instances]:
    """Proposals that do not depend on the model: each gt box shifted by 4 px, plus a grid of 32 px boxes."""
    grid = torch.tensor([[x, y, x + 32.0, y + 32.0] for x in range(0, 96, 24) for y in range(0, 96, 24)])
    return [Instances(bboxes=torch.cat([g.bboxes + 4.0, grid])) for g in gt_instances]


def measured_losses(model: torch.nn.Module, batch: dict) -> dict[str, float]:
    """Every loss of ``batch`` with the same sampling (seeded) and, for the RoI stage, fixed proposals:
    a before/after comparison then measures learning, not a change of the proposals."""
    with torch.no_grad():
        torch.manual_seed(123)
        feats = model.extract_feat(batch["imgs"])
        rpn = model.rpn_head.loss(feats, batch["gt_instances"], batch["img_metas"])
        roi = model.roi_head.loss(feats, fixed_proposals(batch["gt_instances"]), batch["gt_instances"],
                                  batch["img_metas"])  # fmt: skip
    out = {k: float(sum(v)) for k, v in rpn.items()}
    out.update({k: float(v) for k, v in roi.items() if k != "acc"})
    return out


def test_thirty_iterations_on_shapes_lower_every_loss(tmp_path):
    """30 AdamW steps on 8 shapes images (128 px, batches of 4) lower each of the four losses, measured
    on one batch before and after with the same sampling. The RoI stage trains on proposals that do not
    change with the RPN (see :func:`fixed_proposals`): with the RPN's own proposals the share of
    positive RoIs grows as the RPN learns, and loss_bbox (averaged over all sampled RoIs) with it."""
    from detcore.data import build_dataloader, build_dataset

    torch.manual_seed(0)
    cfg = load_config(SHAPES).to_dict()
    train = cfg["data"]["train"]
    train.update(root=str(tmp_path / "shapes"), num_images=8, num_val=2, image_size=[128, 128])
    for step in train["pipeline"]:
        if step["type"] == "Resize":
            step["img_scale"] = [128, 128]
        if step["type"] == "RandomFlip":
            step["flip_ratio"] = 0.0
    loader = build_dataloader(build_dataset(train), batch_size=4, num_workers=0, shuffle=True, seed=0,
                              pad_size_divisor=32)  # fmt: skip
    model = detcore.build("detector", cfg["model"])
    model.init_weights()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    probe = next(iter(loader))
    before = measured_losses(model, probe)
    assert set(before) == LOSSES - {"acc"}
    steps = 0
    while steps < 30:
        for batch in loader:
            feats = model.extract_feat(batch["imgs"])
            losses = dict(model.rpn_head.loss(feats, batch["gt_instances"], batch["img_metas"]))
            losses.update(model.roi_head.loss(feats, fixed_proposals(batch["gt_instances"]),
                                              batch["gt_instances"], batch["img_metas"]))  # fmt: skip
            loss = total(losses)
            assert torch.isfinite(loss)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=35)
            optimizer.step()
            steps += 1
            if steps == 30:
                break
    after = measured_losses(model, probe)
    for name in before:
        assert after[name] < 0.95 * before[name], f"{name}: {before[name]:.4f} -> {after[name]:.4f}"


def test_fast_rcnn_through_the_data_pipeline_with_a_proposals_file(tmp_path):
    """LoadProposals reads a JSON proposals file keyed by image id; the proposals follow the resize into
    the batch (``proposals``) and Fast R-CNN trains and predicts on them."""
    import json

    from detcore.data import build_dataloader, build_dataset

    cfg = load_config(SHAPES).to_dict()
    train = cfg["data"]["train"]
    train.update(root=str(tmp_path / "shapes"), num_images=4, num_val=2, image_size=[128, 128])
    for step in train["pipeline"]:
        if step["type"] == "RandomFlip":
            step["flip_ratio"] = 0.0
    ids = [info["id"] for info in build_dataset({**train, "pipeline": []}).data_infos]
    path = tmp_path / "proposals.json"
    path.write_text(json.dumps({str(i): [[4, 4, 60, 60, 0.9], [30, 30, 100, 110, 0.5]] for i in ids}))
    train["pipeline"].insert(1, {"type": "LoadProposals", "num_max_proposals": 100,
                                 "proposal_file": str(path)})  # fmt: skip
    loader = build_dataloader(build_dataset(train), batch_size=2, num_workers=0, shuffle=False, seed=0,
                              pad_size_divisor=32)  # fmt: skip
    batch = next(iter(loader))
    scale = batch["img_metas"][0]["scale_factor"][0]  # 128 px images resized to 320
    torch.testing.assert_close(batch["proposals"][0].bboxes[0], torch.tensor([4.0, 4.0, 60.0, 60.0]) * scale)
    table = cfg["model"]
    torch.manual_seed(0)
    fast = dict(type="FastRCNN", backbone=table["backbone"], neck=table["neck"], roi_head=table["roi_head"],
                train_cfg={"rcnn": table["train_cfg"]["rcnn"]},
                test_cfg={"rcnn": table["test_cfg"]["rcnn"]})  # fmt: skip
    model = detcore.build("detector", fast)
    model.init_weights()
    model.train()
    losses = model(**batch)
    assert set(losses) == {"loss_cls", "acc", "loss_bbox"} and torch.isfinite(total(losses))
    model.eval()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"], proposals=batch["proposals"])
    assert len(results) == 2 and all(len(r) <= 2 * 3 for r in results)  # <= one per proposal and class
    # a proposals file that does not match the dataset is an error naming the image
    path.write_text(json.dumps({"12345": [[0, 0, 5, 5]]}))
    loader = build_dataloader(build_dataset(train), batch_size=2, num_workers=0, shuffle=False, seed=0)
    with pytest.raises(ValueError, match=r"no proposals for image \d+ \(\S+\.jpg\)"):
        next(iter(loader))
