"""NaN guard, Ctrl-C checkpoint, bf16 autocast on CPU, EMA of weights."""

from __future__ import annotations

import math

import pytest
import torch

from detcore.engine import Hook, NonFiniteLossError


def test_nan_loss_stops_with_iteration_terms_and_last_checkpoint(make_runner):
    runner = make_runner(
        model={"type": "TinyDetector", "nan_after": 2}, checkpoint_config={"interval": 1, "by_epoch": False}
    )
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    msg = str(info.value)
    assert "iteration 3" in msg and "loss_cls=nan" in msg and "loss_bbox=" in msg
    assert str(runner.work_dir / "iter_2.pth") in msg
    assert not (runner.work_dir / "iter_3.pth").exists()


def test_nan_loss_skip_mode(make_runner):
    runner = make_runner(
        model={"type": "TinyDetector", "nan_after": 5}, optimizer_config={"nonfinite": "skip"}
    )
    before = None

    class Snapshot(Hook):
        def after_train_iter(self, runner):
            nonlocal before
            if runner.iter == 4:
                before = {k: v.clone() for k, v in runner.unwrapped_model.state_dict().items()}

    runner.register_hook(Snapshot(priority=95))
    runner.train()
    hook = next(h for h in runner.hooks if type(h).__name__ == "OptimizerHook")
    assert hook.skipped == 3  # iterations 6, 7, 8
    params = dict(runner.unwrapped_model.named_parameters())
    for name, p in params.items():
        assert torch.isfinite(p).all()
        assert torch.equal(p, before[name]), f"{name} changed although its steps were skipped"


def test_keyboard_interrupt_saves_checkpoint(make_runner):
    runner = make_runner()

    class Interrupt(Hook):
        def after_train_iter(self, runner):
            if runner.iter == 2:
                raise KeyboardInterrupt

    runner.register_hook(Interrupt(priority=95))  # after the optimizer step of iteration 3
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    ckpt = torch.load(runner.work_dir / "iter_3.pth", weights_only=True)
    assert (ckpt["meta"]["iter"], ckpt["meta"]["inner_iter"]) == (3, 3)
    assert (runner.work_dir / "latest.pth").read_text().strip() == "iter_3.pth"


def test_amp_bf16_on_cpu(make_runner):
    runner = make_runner(amp={"enabled": True})
    dtypes = []
    runner.unwrapped_model.backbone[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    metrics = runner.train()
    assert runner.amp_dtype == torch.bfloat16 and runner.grad_scaler is None
    assert set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in runner.unwrapped_model.parameters())
    assert math.isfinite(metrics["mIoU"])


def test_ema_matches_hand_computed_average(make_runner):
    runner = make_runner(custom_hooks=[{"type": "EMAHook", "momentum": 0.25}], evaluation={"interval": 5})
    snapshots = []

    class Capture(Hook):  # after the step (30), before the EMA update (49)
        def after_train_iter(self, runner):
            snapshots.append({k: v.detach().clone() for k, v in runner.unwrapped_model.named_parameters()})

    runner.register_hook(Capture(priority=45))
    initial = {k: v.detach().clone() for k, v in runner.unwrapped_model.named_parameters()}
    runner.train()
    ema = next(h for h in runner.hooks if type(h).__name__ == "EMAHook")
    for name, value in initial.items():
        expected = value.double()
        for snap in snapshots:
            expected = 0.75 * expected + 0.25 * snap[name].double()
        assert torch.allclose(ema.ema[name].double(), expected, atol=1e-6), name
    saved = torch.load(runner.work_dir / "epoch_2.pth", weights_only=True)
    assert torch.equal(saved["ema_state_dict"]["head.weight"], ema.ema["head.weight"])
    assert torch.equal(saved["state_dict"]["head.weight"], runner.unwrapped_model.head.weight.detach())
