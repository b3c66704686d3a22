"""Logging backends: TensorBoard events, MLflow (file store) and W&B (offline) runs read back and compared
with the run's own JSON log."""

from __future__ import annotations

import json

import pytest


def json_records(work_dir, mode):
    (log,) = list(work_dir.glob("*.log.json"))
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["mode"] == mode]


def test_tensorboard_events_hold_the_logged_scalars(make_runner, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runner = make_runner(log_config={"interval": 2, "tensorboard": True})
    runner.train()
    train = json_records(runner.work_dir, "train")
    events = EventAccumulator(str(runner.work_dir / "tf_logs"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [r["iter"] for r in train] == [2, 4, 6, 8]
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    val = events.Scalars("val/acc") if "val/acc" in events.Tags()["scalars"] else None
    assert val is not None and len(val) == 2  # one evaluation per epoch


def test_mlflow_run_in_a_file_store(make_runner, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # newer MLflow wants a database otherwise
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    runner = make_runner(custom_hooks=[{"type": "MlflowLoggerHook", "exp_name": "tiny", "tracking_uri": uri,
                                        "interval": 2, "tags": {"team": "detcore"}}])  # fmt: skip
    runner.train()
    (hook,) = [h for h in runner.hooks if type(h).__name__ == "MlflowLoggerHook"]
    client = MlflowClient(uri)
    run = client.get_run(hook.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["team"] == "detcore"
    assert run.data.params["optimizer.lr"] == "0.05"
    history = client.get_metric_history(hook.run_id, "train/loss")
    train = json_records(runner.work_dir, "train")
    assert [m.step for m in history] == [r["iter"] for r in train]
    assert [m.value for m in history] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    assert [m.value for m in client.get_metric_history(hook.run_id, "train/lr")] == pytest.approx(
        [r["lr"] for r in train]
    )
    val = json_records(runner.work_dir, "val")
    assert [m.value for m in client.get_metric_history(hook.run_id, "val/acc")] == pytest.approx(
        [r["acc"] for r in val]
    )
    artifacts = [a.path for a in client.list_artifacts(hook.run_id)]
    assert "config.toml" in artifacts


def test_wandb_offline_run(make_runner, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from detcore.engine.hooks.trackers import WandbLoggerHook

    monkeypatch.setenv("WANDB_SILENT", "true")
    seen = {}
    finish = WandbLoggerHook._finish

    def snapshot_then_finish(self, runner):  # the run's summary: the last value logged of each key
        seen.update({k: self.run.summary[k] for k in ("train/loss", "train/lr", "val/acc")})
        finish(self, runner)

    monkeypatch.setattr(WandbLoggerHook, "_finish", snapshot_then_finish)
    runner = make_runner(custom_hooks=[{"type": "WandbLoggerHook", "project": "tiny", "mode": "offline",
                                        "interval": 2}])  # fmt: skip
    runner.train()
    train, val = json_records(runner.work_dir, "train"), json_records(runner.work_dir, "val")
    assert seen["train/loss"] == pytest.approx(train[-1]["loss"], rel=1e-6)
    assert seen["train/lr"] == pytest.approx(train[-1]["lr"])
    assert seen["val/acc"] == pytest.approx(val[-1]["acc"])
    (run_dir,) = list((runner.work_dir / "wandb").glob("offline-run-*"))
    (events,) = list(run_dir.glob("run-*.wandb"))  # what `wandb sync` uploads later
    assert events.stat().st_size > 0


def test_a_tracker_without_its_package_is_off_and_the_run_goes_on(make_runner, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError("No module named 'mlflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    monkeypatch.delitem(__import__("sys").modules, "mlflow", raising=False)
    runner = make_runner(custom_hooks=[{"type": "MlflowLoggerHook"}])
    runner.train()
    (hook,) = [h for h in runner.hooks if type(h).__name__ == "MlflowLoggerHook"]
    assert not hook.active and hook.run_id is None
    captured = capsys.readouterr()
    assert "'mlflow' package is not installed" in captured.out + captured.err  # the run's log
    assert len(json_records(runner.work_dir, "train")) == 4  # the run itself is unaffected
