"""``detcore train CONFIG``: train a detector from a TOML config."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a config",
        description="Train the [model] of CONFIG on [data.train], validating on [data.val] as [evaluation] "
        "says. Under torchrun each process trains one replica (DistributedDataParallel).",
    )
    parser.add_argument("config", help="TOML config file")
    parser.add_argument(
        "--work-dir", help="directory for logs and checkpoints (default: the config's work_dir)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="resume from PATH, or without PATH from the latest checkpoint in the work dir",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set optimizer.lr=0.01 runner.max_epochs=1",
    )
    parser.add_argument(
        "--amp", action="store_true", help="mixed precision (float16 on GPU, bfloat16 on CPU)"
    )
    parser.add_argument(
        "--auto-scale-lr",
        action="store_true",
        help="scale the learning rate linearly by the total batch size (auto_scale_lr)",
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
    from detcore.engine import NonFiniteLossError, Runner

    cfg = load_config(args.config, args.overrides)
    if args.auto_scale_lr:
        cfg.data.setdefault("auto_scale_lr", {})["enable"] = True
    runner = Runner.from_config(
        cfg, work_dir=args.work_dir, resume=args.resume, amp=True if args.amp else None, device=args.device,
        precision=getattr(args, "precision", None),
    )
    try:
        metrics = runner.train()
    except KeyboardInterrupt:
        print("detcore train: interrupted; the checkpoint above resumes the run (--resume)", file=sys.stderr)
        return 130
    except NonFiniteLossError as exc:
        print(f"detcore train: error: {exc}", file=sys.stderr)
        return 1
    if metrics and runner.rank == 0:
        print(
            "final metrics: "
            + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        )
    return 0
