"""``detcore infer CONFIG CHECKPOINT INPUTS... --out DIR``: pictures and COCO-style JSON of detections."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("infer", help="detect objects in images, folders or videos")
    p.add_argument("config", help="the model's TOML config")
    p.add_argument("checkpoint", help="checkpoint file (detcore's or a reference state_dict file)")
    p.add_argument("inputs", nargs="+", help="images, folders of images, or videos (videos need OpenCV)")
    p.add_argument("--out", required=True, help="output folder for pictures and detections.json")
    p.add_argument("--score-thr", type=float, default=0.3, help="draw and record detections above this score")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="fp32, or bf16: bfloat16 convolutions and linears, float32 boxes (fp32 with a warning "
        "where the CPU has no native bf16); default: the config's precision, else fp32",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.api import init_detector
    from detcore.tools.infer import run_inference

    model = init_detector(
        args.config, args.checkpoint, device=args.device, cfg_options=args.overrides,
        precision=args.precision, fuse_conv_bn=True, channels_last=True,  # the inference fast path
    )
    summary = run_inference(
        model, args.inputs, args.out, score_thr=args.score_thr, batch_size=args.batch_size
    )
    print(f"{summary['num_detections']} detections in {len(summary['pictures'])} inputs")
    print(f"pictures: {args.out}")
    print(f"detections: {summary['json']}")
    if summary.get("bad_data"):
        counts = ", ".join(f"{k}={v}" for k, v in summary["bad_data"].items())
        print(f"skipped inputs: {counts}; every item in {summary['bad_data_file']}")
    return 0
