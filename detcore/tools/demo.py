"""The main job: from nothing to a trained detector, its metrics and pictures, on the embedded shapes data.

Steps: generate (or reuse) the synthetic shapes dataset, train the demo config with evaluation every
epoch, save the checkpoint, write the final COCO metrics, draw detections on held-out validation
images, and plot the loss and mAP curves.

Precision: ``--precision`` or the config's ``precision`` if either is given, else automatic: bf16 where the
CPU computes bfloat16 natively (:func:`detcore.models.precision.bf16_supported`), fp32 elsewhere (no
warning). The precision that ran is printed and written to ``metrics.json`` and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from detcore.config import load_config, validate_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo" / "demo_shapes.toml"


def run_demo(
    config: str | Path = DEFAULT_CONFIG,
    out_dir: str | Path = "demo_out",
    epochs: int | None = None,
    num_pictures: int = 8,
    overrides: Sequence[str] = (),
    score_thr: float = 0.15,
) -> dict[str, Any]:
    """Run the whole demo and return a summary (paths, metrics, wall time, losses)."""
    from detcore.api import init_detector
    from detcore.data import build_dataset
    from detcore.engine import Runner
    from detcore.tools.analyze_logs import load_json_log, plot_curves, series
    from detcore.tools.infer import run_inference

    start = time.time()
    out_dir = Path(out_dir).resolve()
    work_dir = out_dir / "work"
    settings = list(overrides)
    if epochs is not None:
        settings.append(f"runner.max_epochs={int(epochs)}")
    cfg = load_config(config, settings)
    precision, chosen_by = auto_precision(cfg)
    if chosen_by == "auto":
        cfg = load_config(config, [*settings, f'precision="{precision}"'])
    validate_config(cfg)

    runner = Runner.from_config(cfg, work_dir=work_dir)
    precision = runner.precision  # what runs (an asked-for bf16 falls back to fp32 with a warning)
    metrics = runner.train()
    train_seconds = time.time() - start
    checkpoint = Path(runner.last_checkpoint) if runner.last_checkpoint else None
    if checkpoint is None:
        checkpoint = Path(runner.save_checkpoint("final.pth"))

    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps({**metrics, "precision": precision}, indent=2))

    logs = sorted(work_dir.glob("*.log.json"))
    records = load_json_log(logs[-1]) if logs else []
    _, losses = series(records, "train", "loss")
    curves = plot_curves(logs[-1:], out_dir / "curves.png", title=Path(config).stem) if logs else None

    val_dataset = build_dataset(cfg["data"]["val"])
    held_out = [
        str(Path(val_dataset.img_prefix) / val_dataset.data_infos[i]["filename"])
        for i in range(min(num_pictures, len(val_dataset)))
    ]
    model = init_detector(  # the inference fast path, as detcore infer runs it
        cfg, str(checkpoint), device="cpu", precision=precision, fuse_conv_bn=True, channels_last=True
    )
    inference = run_inference(model, held_out, out_dir / "pictures", score_thr=score_thr)

    summary = {
        "config": str(config),
        "work_dir": str(work_dir),
        "checkpoint": str(checkpoint),
        "metrics": metrics,
        "precision": precision,
        "precision_chosen_by": chosen_by,
        "metrics_file": str(metrics_path),
        "curves": str(curves) if curves else None,
        "pictures": [str(p) for p in inference["pictures"]],
        "detections": str(inference["json"]),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - start, 1),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def auto_precision(cfg: Any) -> tuple[str, str]:
    """``(precision, chosen_by)``: the config's ``precision`` (``chosen_by = "config"``; ``--precision``
    arrives as that key), else ``"bf16"`` where the CPU has native bfloat16 and ``"fp32"`` elsewhere
    (``chosen_by = "auto"``)."""
    from detcore.models.precision import bf16_supported, check_precision

    if cfg.get("precision") is not None:
        return check_precision(cfg.get("precision"), "config key 'precision'"), "config"
    return ("bf16" if bf16_supported("cpu") else "fp32"), "auto"


def print_summary(summary: dict[str, Any]) -> None:
    metrics = summary["metrics"]
    print("\n=== detcore demo finished ===")
    print(f"config:       {summary['config']}")
    print(
        f"time:         {summary['total_seconds']} s (training and evaluation {summary['train_seconds']} s)"
    )
    if summary.get("precision"):
        how = "as asked"
        if summary.get("precision_chosen_by") == "auto":
            native = summary["precision"] == "bf16"
            how = "automatic: " + ("native bf16 on this CPU" if native else "this CPU has no native bf16")
        print(f"precision:    {summary['precision']} ({how})")
    if summary["first_loss"] is not None:
        print(f"loss:         {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}")
    for key in ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "segm_mAP"):
        if key in metrics:
            print(f"{key + ':':13s} {metrics[key]:.3f}")
    print(f"checkpoint:   {summary['checkpoint']}")
    print(f"metrics:      {summary['metrics_file']}")
    print(f"curves:       {summary['curves']}")
    print(f"pictures:     {Path(summary['pictures'][0]).parent if summary['pictures'] else '-'}")
    print(f"detections:   {summary['detections']}")
    print(f"logs:         {summary['work_dir']}")
