"""RetinaNet learns: 30 SGD iterations on a few shapes images lower the loss (tiny model, 128 px)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import load_config

pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "retinanet" / "retinanet_shapes.toml"


def test_thirty_iterations_on_shapes_lower_the_loss(tmp_path):
    from detcore.data import build_dataloader, build_dataset

    torch.manual_seed(0)
    cfg = load_config(CONFIG).to_dict()
    train = cfg["data"]["train"]
    train.update(root=str(tmp_path / "shapes"), num_images=8, num_val=2, image_size=[128, 128])
    for step in train["pipeline"]:
        if step["type"] == "Resize":
            step["img_scale"] = [128, 128]
        if step["type"] == "RandomFlip":
            step["flip_ratio"] = 0.0
    dataset = build_dataset(train)
    loader = build_dataloader(dataset, batch_size=2, num_workers=0, shuffle=True, seed=0, pad_size_divisor=32)

    model = detcore.build("detector", cfg["model"])
    model.init_weights()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    history = []
    while len(history) < 30:
        for batch in loader:
            losses = model(**batch)
            loss = sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if "loss" in k)
            assert torch.isfinite(loss)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=35)
            optimizer.step()
            history.append(float(loss.detach()))
            if len(history) == 30:
                break
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last < 0.88 * first, f"loss did not fall: first {history[:5]}, last {history[-5:]}"
