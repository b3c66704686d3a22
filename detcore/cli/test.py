"""``detcore test CONFIG CHECKPOINT``: evaluate a checkpoint on ``[data.test]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from detcore.engine.hook import Hook


class ResultCollector(Hook):
    """Collects every test prediction; on rank 0 writes them as JSON and/or draws them on the images."""

    default_priority = "LOW"

    def __init__(
        self, out: str | None = None, show_dir: str | None = None, score_thr: float = 0.3, classes: Any = None
    ) -> None:
        super().__init__()
        self.out = out
        self.show_dir = show_dir
        self.score_thr = score_thr
        self.classes = list(classes or [])
        self.rows: list[dict[str, Any]] = []
        self._warned = False

    def after_test_iter(self, runner: Any, batch: Any, outputs: list) -> None:
        for meta, pred in zip(batch["img_metas"], outputs):
            pred = pred.to("cpu")
            row = {
                "img_id": meta.get("img_id"),
                "filename": meta.get("filename"),
                "bboxes": pred.bboxes.tolist(),
                "scores": pred.scores.tolist(),
                "labels": pred.labels.tolist(),
            }
            self.rows.append(row)
            if self.show_dir:
                self._draw(row)

    def after_test_epoch(self, runner: Any, metrics: dict) -> None:
        from detcore.engine.dist import collect_results

        rows = collect_results(self.rows, len(runner.test_dataloader.dataset))
        if runner.rank != 0 or not self.out:
            return
        Path(self.out).parent.mkdir(parents=True, exist_ok=True)
        Path(self.out).write_text(json.dumps({"metrics": metrics, "results": rows}))
        runner.logger.info(f"wrote {len(rows)} results to {self.out}")

    def _draw(self, row: dict[str, Any]) -> None:
        from PIL import Image, ImageDraw

        filename = row["filename"]
        if not filename or not Path(filename).is_file():
            if not self._warned:
                print(
                    "detcore test: --show-dir needs image files; samples without one are not drawn",
                    file=sys.stderr,
                )
                self._warned = True
            return
        from detcore.data.image_io import imread

        image = Image.fromarray(imread(filename, channel_order="rgb"))  # decoded as the pipeline does
        draw = ImageDraw.Draw(image)
        for box, score, label in zip(row["bboxes"], row["scores"], row["labels"]):
            if score < self.score_thr:
                continue
            name = self.classes[label] if label < len(self.classes) else str(label)
            draw.rectangle(box, outline=(0, 255, 0), width=2)
            draw.text((box[0] + 2, box[1] + 1), f"{name} {score:.2f}", fill=(0, 255, 0))
        out = Path(self.show_dir) / Path(filename).name
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "test",
        help="evaluate a checkpoint on the test data",
        description="Run the [model] of CONFIG with the weights of CHECKPOINT over [data.test] and compute "
        "the [evaluator]'s metrics.",
    )
    parser.add_argument("config", help="TOML config file")
    parser.add_argument("checkpoint", help="checkpoint file or URL")
    parser.add_argument("--out", help="write the metrics and every prediction to this JSON file")
    parser.add_argument("--show-dir", help="draw the predictions on the test images into this directory")
    parser.add_argument("--show-score-thr", type=float, default=0.3, help="score threshold for --show-dir")
    parser.add_argument("--work-dir", help="directory for the log (default: the config's work_dir)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set model.test_cfg.score_thr=0.05",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="fp32, or bf16: bfloat16 convolutions and linears, float32 boxes (fp32 with a warning "
        "where the CPU has no native bf16); default: the config's precision, else fp32",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from detcore.config import load_config
    from detcore.engine import Runner

    cfg = load_config(args.config, args.overrides)
    runner = Runner.from_config(
        cfg, work_dir=args.work_dir, device=args.device, precision=getattr(args, "precision", None)
    )
    classes = (
        getattr(runner.unwrapped_model, "CLASSES", None)
        or cfg.get("classes")
        or getattr(runner.test_dataloader.dataset, "CLASSES", None)
    )
    runner.register_hook(ResultCollector(args.out, args.show_dir, args.show_score_thr, classes))
    metrics = runner.test(args.checkpoint)
    if runner.rank == 0:
        print(json.dumps(metrics, indent=2))
    return 0
