"""SSD learns: 30 SGD iterations of the shapes config (its pipeline, model, optimizer) lower the loss."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import detcore
from detcore.config import load_config

pytest.importorskip("det_plugin_ssd", reason="det-plugin-ssd is not installed")

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "ssd" / "ssd_shapes.toml"


def test_thirty_iterations_on_shapes_lower_the_loss() -> None:
    from detcore.data import build_dataloader, build_dataset
    from detcore.engine.optim import build_optimizer

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    cfg = load_config(CONFIG).to_dict()
    model = detcore.build("detector", cfg["model"])
    model.init_weights()
    model.train()
    dataset = build_dataset({**cfg["data"]["train"], "num_images": 16})
    loader = build_dataloader(dataset, 2, 0, shuffle=True, seed=0)
    optimizer = build_optimizer(model, cfg["optimizer"])
    max_norm = cfg["optimizer_config"]["grad_clip"]["max_norm"]

    history: list[float] = []
    while len(history) < 30:
        for batch in loader:
            losses = model(**batch)
            assert set(losses) == {"loss_cls", "loss_bbox"}
            loss = sum(sum(v) for v in losses.values())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            history.append(float(loss.detach()))
            if len(history) == 30:
                break
    assert all(np.isfinite(history))
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    assert last < 0.75 * first, f"loss did not fall: first 5 {history[:5]}, last 5 {history[-5:]}"


@pytest.mark.parametrize("name, size", [("ssd300_coco", 300), ("ssd512_coco", 512)])
def test_standard_pipelines_give_square_inputs_with_boxes_inside(name: str, size: int) -> None:
    """The COCO configs' train/test pipelines (Expand, MinIoURandomCrop, ...) run on shapes images."""
    from detcore.data import build_dataset

    cfg = load_config(CONFIG.parent / f"{name}.toml").to_dict()
    np.random.seed(0)
    train = build_dataset({"type": "ShapesDataset", "split": "train", "num_images": 16,
                           "pipeline": cfg["data"]["train"]["dataset"]["pipeline"]})
    for i in range(4):
        sample = train[i]
        assert tuple(sample["img"].shape) == (3, size, size)
        boxes = sample["gt_instances"].bboxes
        assert len(boxes) > 0 and boxes.min() >= 0 and boxes.max() <= size
    test = build_dataset({"type": "ShapesDataset", "split": "val", "num_images": 4, "test_mode": True,
                          "pipeline": cfg["data"]["test"]["pipeline"]})
    sample = test[0]
    assert tuple(sample["img"].shape) == (3, size, size)
    assert np.allclose(sample["img_meta"]["scale_factor"], size / 320)  # shapes images are 320x320
