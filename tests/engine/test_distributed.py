"""Two processes under torchrun (gloo, CPU): replicas stay equal, rank 0 logs and checkpoints once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import tomli_w
import torch

HERE = Path(__file__).parent


def _processes_with_marker(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker`` (torchrun's workers run in sessions of their
    own, so a process-group kill of torchrun misses them when it dies first)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def run_torchrun(cmd: list[str], env: dict, timeout: float, log_dir: Path) -> subprocess.CompletedProcess:
    """Run ``cmd`` with its output in files (an orphaned worker holding a pipe cannot block the test) and,
    whatever happens, kill every process it started, found by a marker in their environment."""
    marker = f"DETCORE_TEST_RUN={uuid.uuid4().hex}"
    key, value = marker.split("=")
    out_path, err_path = log_dir / "torchrun.out", log_dir / "torchrun.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, env={**env, key: value}, stdout=out, stderr=err, text=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            for pid in _processes_with_marker(marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    stdout, stderr = out_path.read_text(), err_path.read_text()
    if proc.returncode == -signal.SIGKILL:
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path, tiny_plugin):
    cfg = tiny_plugin.base_config(
        tmp_path / "work",
        log_config={"interval": 1},
        data={"val": {"type": "TinyBoxes", "num_samples": 5, "seed": 1, "test_mode": True}},
    )
    config = tmp_path / "dist.toml"
    config.write_text(tomli_w.dumps(cfg))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(HERE / "run_tiny.py"),
        str(config),
        "--dump",
        str(tmp_path / "final.pt"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = run_torchrun(cmd, env, timeout=180, log_dir=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "final.rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "final.rank1.pt", weights_only=True)
    params = [k for k in r0["state_dict"] if not k.split(".")[-1].startswith(("running_", "num_batches"))]
    assert len(params) == 6
    for key in params:  # BN running statistics are per-replica under DDP (buffers sync at each forward)
        assert torch.equal(r0["state_dict"][key], r1["state_dict"][key]), key
    # 8 samples / (2 processes x batch 2) = 2 iterations per epoch, 2 epochs
    assert r0["iter"] == 4 and r0["metrics"] == r1["metrics"]
    assert r0["metrics"]["count"] == 5.0  # the sampler's padding is cut when results are gathered
    work = tmp_path / "work"
    logs = list(work.glob("*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    train_lines = [line.split(" - ")[-1] for line in text.splitlines() if "Epoch [" in line]
    assert len(train_lines) == 4 and len(set(train_lines)) == 4
    assert text.count("Epoch(val)") == 2
    records = [json.loads(line) for line in next(work.glob("*.log.json")).read_text().splitlines()]
    assert [r["mode"] for r in records] == ["train", "train", "val", "train", "train", "val"]
    assert sorted(p.name for p in work.glob("*.pth")) == ["epoch_1.pth", "epoch_2.pth", "latest.pth"]
    assert len(torch.load(work / "epoch_2.pth", weights_only=True)["rng"]) == 2
    assert proc.stdout.count("Epoch(val) [2]") == 1
