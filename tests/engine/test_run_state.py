"""Resume state: what RunState saves and restores, and an iteration-based run resumed exactly from it."""

from __future__ import annotations

import torch

from detcore.engine import IterBasedTrainLoop, RunState, load_checkpoint_file
from detcore.engine.seed import get_rng_state, set_random_seed


class RecordingLoop:
    """Stands in for a training loop: a fixed state to save, and what ``load_state_dict`` received."""

    def __init__(self, state=None):
        self.state = state or {}
        self.loaded = None

    def state_dict(self):
        return dict(self.state)

    def load_state_dict(self, meta, rng):
        self.loaded = (dict(meta), rng)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_run_state_round_trip_restores_every_part():
    model = _model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()  # a momentum buffer to restore
    position = {"epoch": 1, "iter": 7, "inner_iter": 3, "epoch_rng": {"x": 1}}
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)  # what float16 AMP runs keep
    saved = RunState(model, optimizer, grad_scaler=scaler, loop=RecordingLoop(position)).to_checkpoint(
        {"seed": 5}
    )
    assert saved["meta"] == {**position, "seed": 5}
    assert len(saved["rng"]) == 1 and torch.equal(saved["rng"][0]["torch"], get_rng_state()["torch"])
    assert saved["grad_scaler"]["scale"] == 8.0
    assert "grad_scaler" not in RunState(model).to_checkpoint({})

    other = _model(1)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    loop = RecordingLoop()
    other_scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    warnings = RunState(other, other_opt, grad_scaler=other_scaler, loop=loop).restore(saved)
    assert warnings == [] and other_scaler.get_scale() == 8.0
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
    buffers = [other_opt.state[p]["momentum_buffer"] for p in other.parameters()]
    assert all(
        torch.equal(b, optimizer.state[p]["momentum_buffer"]) for b, p in zip(buffers, model.parameters())
    )
    meta, rng = loop.loaded
    assert {k: meta[k] for k in position} == position
    assert torch.equal(rng["torch"], saved["rng"][0]["torch"])


def test_restore_with_another_number_of_processes_warns_and_picks_rank_states():
    model = _model(0)
    states = [
        {"torch": torch.tensor([1], dtype=torch.uint8)},
        {"torch": torch.tensor([2], dtype=torch.uint8)},
    ]
    checkpoint = {"state_dict": model.state_dict(), "meta": {"iter": 4}, "rng": states}
    loop = RecordingLoop()
    warnings = RunState(_model(1), loop=loop).restore(checkpoint, rank=1, world_size=3)
    assert warnings == [
        "the checkpoint was written by 2 process(es), this run has 3: RNG states are not restored exactly"
    ]
    assert loop.loaded[1] is states[1]
    RunState(_model(1), loop=loop).restore(checkpoint, rank=2, world_size=3)
    assert loop.loaded[1] is states[0]  # a rank the checkpoint did not have: process 0's states


def test_iter_based_run_resumes_exactly_mid_pass(make_runner, tmp_path):
    """10 iterations over passes of 4 batches; resumed from iteration 6 (batch 2 of the second pass).

    Dropout draws from torch's RNG and the data order from (seed, epoch): both must continue exactly.
    """
    common = dict(
        runner={"_replace": True, "type": "IterBasedRunner", "max_iters": 10},
        checkpoint_config={"interval": 3},
        evaluation={"interval": 5},
        lr_config={
            "_replace": True,
            "policy": "cosine",
            "by_epoch": False,
            "warmup": "linear",
            "warmup_iters": 3,
        },
        custom_hooks=[{"type": "EMAHook", "momentum": 0.1}],
    )
    ref = make_runner(work_dir=tmp_path / "ref", **common)
    assert isinstance(ref.train_loop, IterBasedTrainLoop)
    ref_metrics = ref.train()
    ckpt = load_checkpoint_file(tmp_path / "ref" / "iter_6.pth")
    assert {k: ckpt["meta"][k] for k in ("epoch", "iter", "inner_iter")} == {
        "epoch": 1,
        "iter": 6,
        "inner_iter": 2,
    }

    set_random_seed(123)  # whatever the process did before, the resumed run restores its own streams
    resumed = make_runner(work_dir=tmp_path / "resumed", **common)
    resumed.resume(tmp_path / "ref" / "iter_6.pth")
    assert resumed.train_loop.position == {"epoch": 1, "iter": 6, "inner_iter": 2}
    metrics = resumed.train()
    assert (resumed.iter, resumed.epoch, resumed.inner_iter) == (10, 2, 2)
    for key, value in ref.unwrapped_model.state_dict().items():
        assert torch.equal(resumed.unwrapped_model.state_dict()[key], value), key
    assert metrics == ref_metrics
    ema_ref = load_checkpoint_file(tmp_path / "ref" / "iter_10.pth")["ema_state_dict"]
    ema_res = load_checkpoint_file(tmp_path / "resumed" / "iter_10.pth")["ema_state_dict"]
    for key, value in ema_ref.items():
        assert torch.equal(ema_res[key], value), key
    # the resumed run wrote only the checkpoints after iteration 6
    assert sorted(p.name for p in (tmp_path / "resumed").glob("iter_*.pth")) == ["iter_10.pth", "iter_9.pth"]
