"""Checkpoint contents, atomic writes, resume, weight loading with a report, URL cache."""

from __future__ import annotations

import hashlib

import pytest
import tomllib
import torch

from detcore import __version__
from detcore.engine import load_checkpoint_file, save_atomic
from detcore.engine.checkpoint import find_latest
from detcore.engine.download import download_to_cache


def test_checkpoint_contents_and_resume_roundtrip(make_runner, tmp_path):
    runner = make_runner(runner={"type": "EpochBasedRunner", "max_epochs": 1})
    runner.train()
    path = find_latest(runner.work_dir)
    assert path.name == "epoch_1.pth"
    raw = torch.load(path, weights_only=True)  # plain types and tensors only
    assert set(raw) >= {"state_dict", "optimizer", "scheduler", "meta", "rng"}
    meta = raw["meta"]
    assert (meta["epoch"], meta["iter"], meta["inner_iter"]) == (1, 4, 0)
    assert meta["detcore_version"] == __version__ and meta["plugins"]["enginetest"] == "0.0.1"
    assert tomllib.loads(meta["config"])["model"] == {"type": "TinyDetector"}
    assert meta["seed"] == 0 and isinstance(raw["rng"], list) and len(raw["rng"]) == 1
    for key, value in runner.unwrapped_model.state_dict().items():
        assert torch.equal(raw["state_dict"][key], value)
    assert (runner.work_dir / "config.toml").is_file()

    resumed = make_runner(runner={"type": "EpochBasedRunner", "max_epochs": 1}, resume=True)
    resumed._prepare_start()
    assert (resumed.epoch, resumed.iter) == (1, 4)
    for key, value in runner.unwrapped_model.state_dict().items():
        assert torch.equal(resumed.unwrapped_model.state_dict()[key], value)
    a, b = runner.optimizer.state_dict(), resumed.optimizer.state_dict()
    for idx, state in a["state"].items():
        assert torch.equal(state["momentum_buffer"], b["state"][idx]["momentum_buffer"])


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pth"
    save_atomic({"w": torch.ones(3)}, target)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_atomic({"w": torch.zeros(3)}, target)
    assert torch.equal(load_checkpoint_file(target)["w"], torch.ones(3))
    assert not (tmp_path / "ckpt.pth.tmp").exists()


def test_max_keep_and_save_best(make_runner):
    runner = make_runner(
        checkpoint_config={"interval": 1, "by_epoch": False, "max_keep_ckpts": 2, "save_best": "acc"}
    )
    runner.train()
    names = sorted(p.name for p in runner.work_dir.glob("*.pth"))
    iters = [n for n in names if n.startswith("iter_")]
    assert iters == ["iter_7.pth", "iter_8.pth"]
    best = [n for n in names if n.startswith("best_acc_")]
    assert len(best) == 1
    assert find_latest(runner.work_dir).name == "iter_8.pth"
    hook = next(h for h in runner.hooks if type(h).__name__ == "CheckpointHook")
    assert load_checkpoint_file(runner.work_dir / best[0])["meta"]["best_score"] == hook.best_score


def test_load_from_reports_shape_mismatch(make_runner, tmp_path, tiny_plugin):
    source = tiny_plugin.TinyDetector(num_classes=5)
    torch.save({"state_dict": source.state_dict(), "meta": {}}, tmp_path / "other.pth")
    runner = make_runner(
        load_from=str(tmp_path / "other.pth"), runner={"type": "EpochBasedRunner", "max_epochs": 1}
    )
    ckpt = runner.load_weights_from(tmp_path / "other.pth")
    assert ckpt is not None
    report = runner.load_report
    assert [k for k, _, _ in report.shape_mismatch] == ["head.weight", "head.bias"]
    assert report.shape_mismatch[0][1:] == ((9, 8), (7, 8))
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(runner.unwrapped_model.backbone[0].weight, source.backbone[0].weight)
    assert not torch.equal(runner.unwrapped_model.head.bias[:3], source.head.bias[:3])


def test_url_download_with_checksum(tmp_path):
    src = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.arange(4.0)}}, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    cached = download_to_cache(src.as_uri(), tmp_path / "cache", sha256=digest)
    assert cached.parent == tmp_path / "cache" and cached.read_bytes() == src.read_bytes()
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        download_to_cache(src.as_uri(), tmp_path / "cache2", sha256="0" * 64)
    assert not list((tmp_path / "cache2").iterdir())
