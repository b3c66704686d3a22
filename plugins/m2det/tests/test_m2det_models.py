"""The M2Det configs: they validate and build, their parameter counts are the SSD VGG backbone plus
the hand-counted MLFPN and SSD head, train mode returns SSD's losses, 30 iterations of the shapes
recipe lower the loss, and eval mode returns valid detections."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import detcore
from detcore.testing import check_detections, fake_batch, load_validated_config

pytest.importorskip("det_plugin_m2det", reason="det-plugin-m2det is not installed")
pytest.importorskip("det_plugin_ssd", reason="det-plugin-ssd is not installed")

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "m2det"


def config(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()


def ssd_head_count(channels: int, levels: int, anchors: int, num_classes: int) -> int:
    """One 3x3 conv (with bias) per level for ``anchors * (num_classes + 1)`` logits, one for
    ``anchors * 4`` deltas."""
    per_level = (channels * 9 + 1) * anchors * (num_classes + 1) + (channels * 9 + 1) * anchors * 4
    return levels * per_level


def test_m2det512_vgg16_layout_and_parameter_count():
    cfg = config("m2det512_vgg16_coco")
    assert cfg["plugins"] == ["ssd", "m2det"]
    with torch.device("meta"):
        model = detcore.build("detector", cfg["model"])
        vgg = detcore.build("backbone", cfg["model"]["backbone"])
    assert type(model.neck).__name__ == "MLFPN" and len(model.neck.tums) == 8
    assert model.bbox_head.num_anchors == [6] * 6 and model.bbox_head.in_channels == (1024,) * 6
    head = ssd_head_count(1024, 6, 6, 80)
    assert sum(p.numel() for p in model.bbox_head.parameters()) == head == 28_204_020
    backbone = sum(p.numel() for p in vgg.parameters())
    # 52_037_504: test_m2det_modules' hand count of the paper's MLFPN
    assert sum(p.numel() for p in model.parameters()) == backbone + 52_037_504 + head == 100_725_428
    assert model.bbox_head.test_cfg["nms"]["type"] == "soft_nms"
    # the six levels' feature sizes at 512 x 512 (strides 8 .. 256) and their anchor counts
    sizes = [64, 32, 16, 8, 4, 2]
    assert [s[0] for s in model.bbox_head.prior_generator.strides] == [512 // s for s in sizes]


def shapes_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = detcore.build("detector", config("m2det_shapes")["model"])
    model.init_weights()
    return model


def test_shapes_model_count_and_losses():
    model = shapes_model()
    # neck: FFMv1 (64 -> 32 3x3, 128 -> 64 1x1), 4 FFMv2 (96 -> 16), 4 TUMs (32 planes, 16 outputs),
    # SFAM (64 channels, reduction 4); head: 6 levels of 64 channels, 6 anchors, 3 classes
    from test_m2det_modules import mlfpn_count

    neck = mlfpn_count(64, 128, (32, 64), 16, 32, 16, 4, 6, 4)
    assert sum(p.numel() for p in model.neck.parameters()) == neck
    assert sum(p.numel() for p in model.bbox_head.parameters()) == ssd_head_count(64, 6, 6, 3)
    assert sum(p.numel() for p in model.parameters()) == 913_416
    model.train()
    losses = model(**fake_batch(num_images=2, img_size=(300, 300), num_classes=3, boxes_per_image=2))
    assert set(losses) == {"loss_cls", "loss_bbox"}
    assert all(torch.isfinite(v).all() for vs in losses.values() for v in vs)


def test_thirty_iterations_on_shapes_lower_the_loss_then_eval_gives_detections():
    """The shapes recipe (pipeline, optimizer, clipping) on 16 shapes images, batch 2."""
    from detcore.data import build_dataloader, build_dataset
    from detcore.engine.optim import build_optimizer

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    cfg = config("m2det_shapes")
    model = shapes_model()
    model.train()
    loader = build_dataloader(build_dataset({**cfg["data"]["train"], "num_images": 16}), 2, 0, shuffle=True,
                              seed=0)  # fmt: skip
    optimizer = build_optimizer(model, cfg["optimizer"])
    history: list[float] = []
    while len(history) < 30:
        for batch in loader:
            loss = sum(sum(v) for v in model(**batch).values())
            optimizer.zero_grad()
            loss.backward()
            max_norm = cfg["optimizer_config"]["grad_clip"]["max_norm"]
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            history.append(float(loss.detach()))
            if len(history) == 30:
                break
    assert all(np.isfinite(history))
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    assert last < 0.75 * first, f"loss did not fall: first 5 {history[:5]}, last 5 {history[-5:]}"

    model.eval()
    test = build_dataset({**cfg["data"]["test"], "num_images": 2})
    from detcore.data import collate

    batch = collate([test[0], test[1]], pad_size_divisor=1)
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
    check_detections(results, batch["img_metas"], max_per_img=model.bbox_head.test_cfg["max_per_img"],
                     num_classes=3)  # fmt: skip
