"""``detcore benchmark CONFIG [CHECKPOINT]``: inference images/s of a config's model, fp32 and/or bf16."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="inference speed (images/s) of a config's model in fp32 and bf16",
        description="Time the model of CONFIG (CHECKPOINT's weights if given) on the first images of its "
        "[data.test] (or random --size images), prepared beforehand; each batch runs through every "
        "precision in turn, so the ratio holds on a loaded machine.",
    )
    p.add_argument("config", help="the model's TOML config")
    p.add_argument("checkpoint", nargs="?", default=None, help="checkpoint file (default: initial weights)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "both"),
        default="both",
        help="precision(s) to time (default: both, interleaved, with the bf16/fp32 ratio)",
    )
    p.add_argument("--images", type=int, default=20, help="timed images (default: 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed images first (default: 2)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--size", metavar="WxH", help="random images of this size instead of data.test")
    p.add_argument("--no-fuse", action="store_true", help="keep BatchNorm unfolded (fuse_conv_bn off)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.tools.benchmark import benchmark

    size = None
    if args.size:
        try:
            width, height = (int(x) for x in args.size.lower().split("x"))
        except ValueError:
            raise SystemExit(
                f"detcore benchmark: error: --size must be WxH (e.g. 1333x800), got {args.size!r}"
            ) from None
        size = (height, width)
    precisions = ("fp32", "bf16") if args.precision == "both" else (args.precision,)
    report = benchmark(
        args.config, args.checkpoint, precisions, images=args.images, warmup=args.warmup,
        batch_size=args.batch_size, device=args.device, size=size, fuse_conv_bn=not args.no_fuse,
        cfg_options=args.overrides,
    )
    print(f"{report['images']} images ({report['source']}), batch {report['batch_size']}, "
          f"{report['fused_conv_bn']} Conv-BN pairs folded")
    figures = report["precisions"]
    for name, fig in figures.items():
        ran = "" if fig["ran"] == name else f" (ran {fig['ran']}: no native bf16)"
        print(f"{name}: {fig['images_per_s']:.2f} images/s, {fig['median_batch_s']:.3f} s/batch median{ran}")
    if "fp32" in figures and "bf16" in figures:
        print(f"bf16 / fp32: {figures['bf16']['images_per_s'] / figures['fp32']['images_per_s']:.2f}x")
    return 0
