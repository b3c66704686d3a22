"""The run loops used directly, selected from a config, and refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detcore.data import build_dataloader
from detcore.engine import loops
from detcore.engine.seed import get_rng_state
from detcore.errors import DetcoreError


def _box_iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_val_loop_used_directly_on_its_own_data_and_metric(make_runner, tiny_plugin):
    runner = make_runner(
        custom_hooks=[{"type": "RecorderHook", "tag": "r"}],
        evaluation={"enabled": False},
        optimizer={"lr": 0.2},
        runner={"max_epochs": 6},
    )
    runner.train()  # boxes that overlap the targets, so that the IoU below is not trivially 0
    tiny_plugin.CALLS.clear()
    dataset = tiny_plugin.TinyBoxes(num_samples=5, seed=7, test_mode=True)
    loader = build_dataloader(dataset, 2, 0, shuffle=False)
    loop = loops.ValLoop(runner, dataloader=loader, evaluator={"type": "TinyMetric"})
    runner.unwrapped_model.train()
    rng_before = get_rng_state()
    metrics = loop.run()
    rng_after = get_rng_state()
    assert runner.unwrapped_model.training  # back in train mode

    # the expectation: the model applied image by image, IoU and label accuracy computed here
    model = runner.unwrapped_model
    model.eval()
    ious, correct = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            sample = dataset[i]
            pred = model(sample["img"][None], [sample["img_meta"]])[0]
            ious.append(_box_iou(pred.bboxes[0].tolist(), dataset.boxes[i]))
            correct.append(float(int(pred.labels[0]) == int(dataset.labels[i])))
    assert metrics["count"] == 5.0
    assert metrics["mIoU"] == pytest.approx(np.mean(ious), abs=1e-6)
    assert metrics["acc"] == pytest.approx(np.mean(correct))
    assert metrics["mIoU"] > 0  # overlapping boxes: the comparison above is not 0 == 0
    assert runner.last_metrics == {}  # a loop run directly returns its metrics, the runner keeps none
    # 5 images in batches of 2: 3 iterations between the epoch events
    events = [e for t, e in tiny_plugin.CALLS if t == "r"]
    assert events == ["before_val_epoch"] + ["before_val_iter", "after_val_iter"] * 3 + ["after_val_epoch"]
    assert torch.equal(rng_after["torch"], rng_before["torch"]) and rng_after["numpy"] == rng_before["numpy"]


def test_iter_based_train_loop_given_to_a_runner(make_runner, tiny_plugin):
    """max_iters = 6 over passes of 4 batches: one full pass (one after_train_epoch), then 2 batches."""
    runner = make_runner(
        runner={"_replace": True, "type": "IterBasedRunner", "max_iters": 100},
        checkpoint_config={"interval": 3},
        evaluation={"enabled": False},
        custom_hooks=[{"type": "RecorderHook", "tag": "r"}],
    )
    loop = loops.IterBasedTrainLoop(runner, max_iters=6)
    runner.train_loop = loop
    limits = (runner.by_epoch, runner.max_epochs, runner.max_iters, runner.iters_per_epoch)
    assert limits == (False, None, 6, 4)
    runner.train()
    assert (loop.iter, loop.epoch, loop.inner_iter) == (6, 1, 2)
    assert (runner.iter, runner.epoch) == (6, 1)
    events = [e for t, e in tiny_plugin.CALLS if t == "r"]
    assert events.count("before_train_epoch") == 2 and events.count("after_train_epoch") == 1
    assert events.count("after_train_iter") == 6
    # the hooks count the loop's iterations: checkpoints every 3 of them, the last one at 6
    assert sorted(p.name for p in runner.work_dir.glob("*_*.pth")) == ["iter_3.pth", "iter_6.pth"]
    assert loop.state_dict()["iter"] == 6 and loop.position == {"epoch": 1, "iter": 6, "inner_iter": 2}


def test_epoch_based_train_loop_on_its_own_dataloader(make_runner, tiny_plugin):
    runner = make_runner(evaluation={"enabled": False})
    loader = build_dataloader(tiny_plugin.TinyBoxes(num_samples=12), 4, 0, seed=0)
    runner.train_loop = loops.EpochBasedTrainLoop(runner, max_epochs=2, dataloader=loader)
    assert (runner.iters_per_epoch, runner.max_iters) == (3, 6)
    runner.train()
    assert (runner.epoch, runner.iter, runner.inner_iter) == (2, 6, 0)
    assert runner.unwrapped_model.train_calls == 6


def test_config_selects_a_plugin_loop(make_runner, tiny_plugin):
    runner = make_runner(val_loop={"type": "CountingValLoop", "tag": "x"})
    assert isinstance(runner.val_loop, tiny_plugin.CountingValLoop) and runner.val_loop.tag == "x"
    assert isinstance(runner.test_loop, loops.TestLoop)
    assert isinstance(runner.train_loop, loops.EpochBasedTrainLoop)
    metrics = runner.train()
    assert runner.val_loop.passes == 2 and metrics["count"] == 6.0  # evaluation.interval = 1, 2 epochs


def test_iter_based_runner_name_ignores_an_inherited_max_epochs(make_runner):
    # base_config's [runner] has max_epochs; merging an IterBasedRunner table over it keeps that key
    runner = make_runner(runner={"type": "IterBasedRunner", "max_iters": 5})
    assert isinstance(runner.train_loop, loops.IterBasedTrainLoop) and runner.max_iters == 5


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"runner": {"max_epochs": 0}}, r"runner: max_epochs must be a positive int, got 0"),
        (
            {"runner": {"_replace": True, "type": "IterBasedRunner"}},
            r"runner: loop 'IterBasedTrainLoop' .* needs key\(s\) 'max_iters'",
        ),
        (
            {"runner": {"type": "EpochBasedTrainLop"}},
            r"unknown loop 'EpochBasedTrainLop'.*'EpochBasedTrainLoop'",
        ),
        (
            {"runner": {"_replace": True, "type": "ValLoop"}},
            r"runner.type: 'ValLoop' builds a ValLoop, not a",
        ),
        ({"val_loop": {"type": "CountingValLoop", "tga": "x"}}, r"val_loop.tga: unknown key 'tga'.*'tag'"),
    ],
)
def test_bad_loop_tables_are_refused_with_where_and_what(make_runner, overrides, message):
    with pytest.raises(DetcoreError, match=message):  # ConfigError; ComponentError for an unknown name
        make_runner(**overrides)


def test_loops_are_registered_components():
    from detcore.registry import get_registry

    registry = get_registry()
    assert {"EpochBasedTrainLoop", "IterBasedTrainLoop", "ValLoop", "TestLoop"} <= set(registry.names("loop"))
    assert registry.get("loop", "ValLoop").plugin == "detcore.engine"
