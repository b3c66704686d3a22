"""The demo's automatic precision: bf16 where the CPU computes it natively, else fp32; an explicit setting
(``--precision`` arrives as the config key) wins."""

from __future__ import annotations

from detcore.config import load_config
from detcore.models import precision as P
from detcore.tools.demo import DEFAULT_CONFIG, auto_precision, print_summary


def test_auto_precision_follows_the_cpu(monkeypatch):
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.get("precision") is None  # the demo config leaves it to the machine
    monkeypatch.setattr(P, "bf16_supported", lambda device="cpu": True)
    assert auto_precision(cfg) == ("bf16", "auto")
    monkeypatch.setattr(P, "bf16_supported", lambda device="cpu": False)
    assert auto_precision(cfg) == ("fp32", "auto")
    assert auto_precision(load_config(DEFAULT_CONFIG, ['precision="bf16"'])) == ("bf16", "config")
    assert auto_precision(load_config(DEFAULT_CONFIG, ['precision="fp32"'])) == ("fp32", "config")


def test_summary_says_which_precision_ran(capsys):
    summary = {"metrics": {"bbox_mAP": 0.5}, "config": "c", "total_seconds": 1, "train_seconds": 1,
               "first_loss": None, "checkpoint": "x", "metrics_file": "m", "curves": None, "pictures": [],
               "detections": "d", "work_dir": "w"}  # fmt: skip
    print_summary({**summary, "precision": "fp32", "precision_chosen_by": "auto"})
    assert "precision:    fp32 (automatic: this CPU has no native bf16)" in capsys.readouterr().out
    print_summary({**summary, "precision": "bf16", "precision_chosen_by": "auto"})
    assert "precision:    bf16 (automatic: native bf16 on this CPU)" in capsys.readouterr().out
    print_summary({**summary, "precision": "fp32", "precision_chosen_by": "config"})
    assert "precision:    fp32 (as asked)" in capsys.readouterr().out
