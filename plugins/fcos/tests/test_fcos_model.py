"""The FCOS detector end to end: train-mode losses, eval-mode instances, and a short training run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import Config
from detcore.structures.instances import Instances
from detcore.testing import load_validated_config, two_image_batch

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "fcos"


def load(name: str) -> Config:
    return load_validated_config(CONFIGS / f"{name}.toml")


def tiny_model(name: str = "fcos_shapes", **head) -> torch.nn.Module:
    """The shapes config's model (optionally with head overrides), initialised with a fixed seed."""
    model_cfg = load(name).to_dict()["model"]
    model_cfg["bbox_head"].update(head)
    torch.manual_seed(0)
    model = detcore.build("detector", model_cfg)
    model.init_weights()
    return model


@pytest.mark.parametrize("tricks", [False, True])
def test_train_forward_returns_reference_losses(tricks):
    head = (
        dict(
            center_sampling=True,
            norm_on_bbox=True,
            centerness_on_reg=True,
            conv_bias=True,
            loss_bbox={"type": "GIoULoss", "loss_weight": 1.0},
        )
        if tricks
        else {}
    )
    model = tiny_model(**head)
    model.train()
    losses = model(**two_image_batch())
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_centerness"}
    for value in losses.values():
        assert value.dim() == 0 and torch.isfinite(value)
    # focal loss at the prior 0.01 is small but positive; -log IoU and BCE are positive
    assert all(v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.bbox_head.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_eval_forward_gives_instances_in_original_coordinates():
    model = tiny_model()
    model.bbox_head.test_cfg.update(score_thr=0.0, max_per_img=7)
    model.eval()
    batch = two_image_batch()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
        unscaled = model.predict(batch["imgs"], batch["img_metas"], rescale=False)
    assert len(results) == 2
    for res, raw, meta in zip(results, unscaled, batch["img_metas"]):
        assert isinstance(res, Instances)
        assert set(res.keys()) == {"bboxes", "scores", "labels"}
        assert 0 < len(res) <= 7
        assert res.bboxes.shape == (len(res), 4) and res.labels.dtype == torch.long
        assert torch.all(res.scores[:-1] >= res.scores[1:])  # sorted by score
        assert torch.all((res.labels >= 0) & (res.labels < 3))
        # boxes in original-image pixels: the network-input boxes divided by the scale factor
        assert torch.allclose(res.bboxes, raw.bboxes / torch.tensor(meta["scale_factor"]))
        h, w = meta["ori_shape"][:2]
        assert torch.all(res.bboxes >= 0) and torch.all(res.bboxes[:, [0, 2]] <= w + 1e-4)
        assert torch.all(res.bboxes[:, [1, 3]] <= h + 1e-4)
    # scores are sigmoid(cls) * sigmoid(centerness): at most the best product of any point
    with torch.no_grad():
        cls_scores, _, cent = model.bbox_head(model.extract_feat(batch["imgs"]))
    best = max(float((c[0].sigmoid() * z[0].sigmoid()).max()) for c, z in zip(cls_scores, cent))
    assert results[0].scores[0].item() == pytest.approx(best, rel=1e-5)


def test_default_test_cfg_caps_detections_at_100():
    model = tiny_model()
    model.bbox_head.test_cfg.update(score_thr=0.0)
    model.eval()
    batch = two_image_batch()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
    assert [len(r) for r in results] == [100, 100]


def _shapes_batches(tmp_path: Path) -> list:
    """Two batches of four 128x128 shapes images."""
    from detcore.data import ShapesDataset, collate

    pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "LoadAnnotations", "with_bbox": True},
        {"type": "Resize", "img_scale": [128, 128], "keep_ratio": True},
        {
            "type": "Normalize",
            "mean": [123.675, 116.28, 103.53],
            "std": [58.395, 57.12, 57.375],
            "to_rgb": True,
        },
        {"type": "Pad", "size_divisor": 32},
        {"type": "PackDetInputs"},
    ]
    dataset = ShapesDataset(
        split="train",
        root=str(tmp_path / "shapes"),
        num_images=8,
        image_size=(128, 128),
        pipeline=pipeline,
        num_val=2,
    )
    return [collate([dataset[i] for i in range(j, j + 4)], pad_size_divisor=32) for j in (0, 4)]


def _train(batches: list, iterations: int, autocast: bool = False) -> list[float]:
    model = tiny_model()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    history = []
    for it in range(iterations):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses = model(**batches[it % 2])
        assert all(v.dtype == torch.float32 for v in losses.values()), {k: v.dtype for k, v in losses.items()}
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35)
        optimizer.step()
        history.append(total.item())
    assert all(math.isfinite(v) for v in history)
    return history


def test_thirty_iterations_on_shapes_lower_the_loss(tmp_path):
    from detcore.testing import check_loss_falls, shapes_batches

    batches = shapes_batches(tmp_path / "shapes", num_batches=2, batch_size=4, image_size=128)
    check_loss_falls(tiny_model(), batches, iterations=30, lr=0.01, window=4, ratio=0.8,
                     weight_decay=1e-4, clip_grad=35)


def test_bfloat16_autocast_training_lowers_the_loss(tmp_path):
    """`detcore train --amp` on the CPU: convs run in bfloat16, the focal loss (native or reference) gets
    bfloat16 logits and computes in float32; before that policy the native kernel refused bfloat16."""
    history = _train(_shapes_batches(tmp_path), 20, autocast=True)
    first, last = sum(history[:4]) / 4, sum(history[-4:]) / 4
    assert last < 0.8 * first, history
