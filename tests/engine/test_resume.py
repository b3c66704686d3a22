"""A run killed with SIGKILL and resumed ends bitwise equal to an uninterrupted run (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
import torch

HERE = Path(__file__).parent


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(tomli_w.dumps(cfg))
    return path


def run(config: Path, *extra: str, wait: bool = True):
    cmd = [sys.executable, str(HERE / "run_tiny.py"), str(config), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if wait:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "runner_cfg, ckpt_cfg",
    [
        (
            {"type": "EpochBasedRunner", "max_epochs": 3},
            {"interval": 3, "by_epoch": False},
        ),  # mid-epoch stops
        ({"type": "IterBasedRunner", "max_iters": 10}, {"interval": 2}),
    ],
)
def test_sigkill_and_resume_is_bitwise_exact(tmp_path, tiny_plugin, runner_cfg, ckpt_cfg):
    common = dict(
        runner=runner_cfg,
        checkpoint_config=ckpt_cfg,
        evaluation={"interval": 2 if runner_cfg["type"] == "EpochBasedRunner" else 4},
        optimizer={"type": "SGD", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
        lr_config={
            "_replace": True,
            "policy": "cosine",
            "by_epoch": False,
            "warmup": "linear",
            "warmup_iters": 3,
        },
        custom_hooks=[{"type": "EMAHook", "momentum": 0.1}],
    )
    ref_cfg = write_config(tmp_path / "ref.toml", tiny_plugin.base_config(tmp_path / "ref", **common))
    run(ref_cfg, "--dump", str(tmp_path / "ref.pt"))

    slow = dict(
        common, custom_hooks=common["custom_hooks"] + [{"type": "SlowHook", "start": 3, "seconds": 0.3}]
    )
    killed_cfg = write_config(tmp_path / "killed.toml", tiny_plugin.base_config(tmp_path / "killed", **slow))
    proc = run(killed_cfg, wait=False)
    first = tmp_path / "killed" / ("iter_3.pth" if runner_cfg["type"] == "EpochBasedRunner" else "iter_2.pth")
    deadline = time.time() + 60
    while not first.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written = sorted(p.name for p in (tmp_path / "killed").glob("iter_*.pth"))
    last_iter = max(int(n[5:-4]) for n in written)
    assert last_iter < (12 if runner_cfg["type"] == "EpochBasedRunner" else 10), (
        "the run finished before the kill"
    )

    resume_cfg = write_config(
        tmp_path / "killed.toml", tiny_plugin.base_config(tmp_path / "killed", **common)
    )
    out = run(resume_cfg, "--resume", "--dump", str(tmp_path / "resumed.pt"))
    assert f"resumed from {tmp_path / 'killed'}" in out.stdout
    ref = torch.load(tmp_path / "ref.pt", weights_only=True)
    res = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert (res["iter"], res["epoch"]) == (ref["iter"], ref["epoch"])
    assert ref["state_dict"].keys() == res["state_dict"].keys()
    for key, value in ref["state_dict"].items():
        assert torch.equal(value, res["state_dict"][key]), key
    assert ref["metrics"] == res["metrics"]
    ema_ref = torch.load(
        tmp_path / "ref" / "latest.pth".replace("latest.pth", find_last(tmp_path / "ref")), weights_only=True
    )["ema_state_dict"]
    ema_res = torch.load(tmp_path / "killed" / find_last(tmp_path / "killed"), weights_only=True)[
        "ema_state_dict"
    ]
    for key, value in ema_ref.items():
        assert torch.equal(value, ema_res[key]), key


def find_last(work_dir: Path) -> str:
    return (work_dir / "latest.pth").read_text().strip()
