"""A tiny test plugin for the engine: a one-box detector, a synthetic dataset, a metric, hooks, a loop.

Registered as plugin ``enginetest`` by ``tests/engine/conftest.py`` (in-process) and by
``tests/engine/run_tiny.py`` (subprocess runs).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from detcore.engine import Hook, ValLoop
from detcore.hookspecs import RUN_EVENTS, hookimpl
from detcore.structures.instances import Instances

PLUGIN_NAME = "enginetest"


class TinyBoxes(torch.utils.data.Dataset):
    """``num_samples`` images (3, size, size) with one bright box each; packed-sample items."""

    CLASSES = ("a", "b", "c")

    def __init__(
        self,
        num_samples: int = 8,
        size: int = 16,
        seed: int = 0,
        test_mode: bool = False,
        pipeline: list | None = None,
    ) -> None:
        """``pipeline`` is accepted (for inference configs) but the items are generated already packed."""
        rng = np.random.RandomState(seed)
        self.size = size
        self.test_mode = test_mode
        self.boxes = []
        self.labels = rng.randint(0, len(self.CLASSES), size=num_samples)
        for _ in range(num_samples):
            x1, y1 = rng.randint(0, size // 2, size=2)
            w, h = rng.randint(3, size // 2, size=2)
            self.boxes.append([float(x1), float(y1), float(x1 + w), float(y1 + h)])
        self.flag = np.zeros(num_samples, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        x1, y1, x2, y2 = (int(v) for v in self.boxes[idx])
        img = torch.zeros(3, self.size, self.size)
        img[int(self.labels[idx]), y1:y2, x1:x2] = 1.0
        meta = {
            "img_id": idx,
            "filename": None,
            "ori_shape": (self.size, self.size, 3),
            "img_shape": (self.size, self.size, 3),
            "pad_shape": (self.size, self.size, 3),
            "scale_factor": [1.0, 1.0, 1.0, 1.0],
            "flip": False,
            "flip_direction": None,
        }
        gt = Instances(bboxes=torch.tensor([self.boxes[idx]]), labels=torch.tensor([int(self.labels[idx])]))
        return {
            "img": img,
            "img_meta": meta,
            "gt_instances": gt,
            "gt_ignored_instances": Instances(bboxes=torch.zeros(0, 4)),
        }


class TinyDetector(nn.Module):
    """conv-BN-ReLU-pool-dropout-linear predicting one box and one class per image."""

    def __init__(
        self, num_classes: int = 3, hidden: int = 8, dropout: float = 0.2, nan_after: int | None = None
    ):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 4 + num_classes)
        self.num_classes = num_classes
        self.nan_after = nan_after
        self.train_calls = 0

    def forward(self, imgs, img_metas, gt_instances=None, gt_ignored_instances=None, **extra):
        feat = self.backbone(imgs).mean(dim=(2, 3))
        out = self.head(self.dropout(feat))
        h, w = imgs.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=out.dtype, device=out.device)
        boxes = out[:, :4].sigmoid() * scale
        logits = out[:, 4:]
        if self.training:
            self.train_calls += 1
            gt_boxes = torch.stack([g.bboxes[0] for g in gt_instances]).to(out.dtype)
            gt_labels = torch.stack([g.labels[0] for g in gt_instances])
            loss_bbox = (boxes - gt_boxes).abs().div(scale).mean()
            loss_cls = nn.functional.cross_entropy(logits.float(), gt_labels)
            if self.nan_after is not None and self.train_calls > self.nan_after:
                loss_cls = loss_cls * float("nan")
            acc = (logits.argmax(1) == gt_labels).float().mean()
            return {"loss_cls": loss_cls, "loss_bbox": [loss_bbox, 0.5 * loss_bbox], "acc": acc}
        probs = logits.float().softmax(1)
        results = []
        for i, meta in enumerate(img_metas):
            sf = torch.tensor(meta["scale_factor"], dtype=torch.float32, device=out.device)
            results.append(
                Instances(
                    bboxes=boxes[i : i + 1].float() / sf,
                    scores=probs[i].max().view(1),
                    labels=probs[i].argmax().view(1),
                )
            )
        return results


class TinyMetric:
    """Mean IoU of the predicted box with the image's box, and label accuracy."""

    def __init__(self, dataset: TinyBoxes) -> None:
        self.dataset = dataset
        self.results: list[dict[str, float]] = []

    def process(self, img_metas: list[dict], predictions: list[Instances]) -> None:
        for meta, pred in zip(img_metas, predictions):
            gt = torch.tensor(self.dataset.boxes[meta["img_id"]])
            box = pred.bboxes[0].detach().cpu()
            lt = torch.maximum(box[:2], gt[:2])
            rb = torch.minimum(box[2:], gt[2:])
            inter = (rb - lt).clamp(min=0).prod()
            union = (box[2:] - box[:2]).prod() + (gt[2:] - gt[:2]).prod() - inter
            self.results.append(
                {
                    "img_id": int(meta["img_id"]),
                    "iou": float(inter / union),
                    "correct": float(int(pred.labels[0]) == int(self.dataset.labels[meta["img_id"]])),
                }
            )

    def compute(self, results: list[dict[str, float]]) -> dict[str, float]:
        return {
            "mIoU": float(np.mean([r["iou"] for r in results])),
            "acc": float(np.mean([r["correct"] for r in results])),
            "count": float(len(results)),
        }


#: (tag, event) pairs recorded by RecorderHook instances of this process
CALLS: list[tuple[str, str]] = []


class RecorderHook(Hook):
    """Records every run event it receives into :data:`CALLS` as ``(tag, event)``."""

    def __init__(self, tag: str = "rec", priority: int | str | None = None) -> None:
        super().__init__(priority)
        self.tag = tag
        for event in RUN_EVENTS:
            setattr(self, event, self._recorder(event))

    def _recorder(self, event: str):
        def record(runner):
            CALLS.append((self.tag, event))

        record.__name__ = event
        return record


class SlowHook(Hook):
    """Sleeps ``seconds`` after every training iteration from iteration ``start`` on (for kill tests)."""

    def __init__(self, start: int = 0, seconds: float = 0.2, priority: int | str | None = None) -> None:
        super().__init__(priority)
        self.start = start
        self.seconds = seconds

    def after_train_iter(self, runner) -> None:
        if runner.iter + 1 >= self.start:
            time.sleep(self.seconds)


class CountingValLoop(ValLoop):
    """A validation loop offered by a plugin (selected with ``[val_loop]``): counts its passes."""

    def __init__(self, runner, dataloader=None, evaluator=None, tag: str = "val") -> None:
        super().__init__(runner, dataloader, evaluator)
        self.tag = tag
        self.passes = 0

    def run(self) -> dict[str, float]:
        self.passes += 1
        return super().run()


@hookimpl
def detcore_register_loops():
    return {"CountingValLoop": CountingValLoop}


@hookimpl
def detcore_register_detectors():
    return {"TinyDetector": TinyDetector}


@hookimpl
def detcore_register_datasets():
    return {"TinyBoxes": TinyBoxes}


@hookimpl
def detcore_register_metrics():
    return {"TinyMetric": TinyMetric}


@hookimpl
def detcore_register_run_hooks():
    return {"RecorderHook": RecorderHook, "SlowHook": SlowHook}


def register() -> None:
    """Load this module as plugin ``enginetest`` on the process-wide manager (idempotent)."""
    from detcore import registry
    from detcore.plugins import get_plugin_manager

    manager = get_plugin_manager()
    info = manager.infos.get(PLUGIN_NAME)
    if info is None or not info.loaded or manager.get_plugin(PLUGIN_NAME) is None:
        manager.load_plugin(PLUGIN_NAME, __name__, "detcore-engine-tests", "0.0.1")
        registry.reset_registry()


def base_config(work_dir: str, **overrides: Any) -> dict[str, Any]:
    """A complete config dict for the tiny model (epoch-based, 2 epochs of 4 iterations).

    Tables in ``overrides`` merge into the defaults unless they contain ``_replace = True``.
    """
    cfg: dict[str, Any] = {
        "plugins": [PLUGIN_NAME],
        "work_dir": str(work_dir),
        "seed": 0,
        "device": "cpu",
        "model": {"type": "TinyDetector"},
        "data": {
            "batch_size": 2,
            "num_workers": 0,
            "val_batch_size": 4,
            "train": {"type": "TinyBoxes", "num_samples": 8},
            "val": {"type": "TinyBoxes", "num_samples": 6, "seed": 1, "test_mode": True},
            "test": {"type": "TinyBoxes", "num_samples": 6, "seed": 1, "test_mode": True},
        },
        "evaluator": {"type": "TinyMetric"},
        "optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
        "optimizer_config": {},
        "lr_config": {"policy": "step", "step": [1]},
        "runner": {"type": "EpochBasedRunner", "max_epochs": 2},
        "checkpoint_config": {"interval": 1},
        "log_config": {"interval": 2},
        "evaluation": {"interval": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and value.get("_replace"):
            cfg[key] = {k: v for k, v in value.items() if k != "_replace"}
        elif isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg
