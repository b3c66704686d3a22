"""``detcore checkpoint upgrade IN OUT`` and ``detcore checkpoint publish IN OUT``."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("checkpoint", help="upgrade reference checkpoints; publish trained weights")
    sub = p.add_subparsers(dest="checkpoint_command", metavar="ACTION", required=True)
    up = sub.add_parser(
        "upgrade",
        help="convert an older reference checkpoint (1.x, pre-2.14 SSD) to the current layout",
        description="Rename keys of older layouts (1.x two-stage heads, pre-2.14 SSD, 0.5 RetinaNet) and "
        "move the softmax background class of 1.x heads from the first to the last channel.",
    )
    up.add_argument("input", help="the old checkpoint")
    up.add_argument("output", help="where to write the upgraded checkpoint")
    up.add_argument("--num-classes", type=int, help="foreground classes (default: read from the weights)")
    shift = up.add_mutually_exclusive_group()
    shift.add_argument(
        "--shift-background",
        dest="shift_background",
        action="store_const",
        const=True,
        help="the file is from 1.x (background first): move it last (default: from meta or the layout)",
    )
    shift.add_argument(
        "--no-shift-background",
        dest="shift_background",
        action="store_const",
        const=False,
        help="leave the class channels as they are",
    )
    up.set_defaults(func=run_upgrade)
    pub = sub.add_parser(
        "publish",
        help="strip training state, keep CPU weights, append the sha256 prefix to the name",
    )
    pub.add_argument("input", help="a training checkpoint")
    pub.add_argument("output", help="the published file's name before the hash suffix (e.g. model.pth)")
    pub.set_defaults(func=run_publish)


def run_upgrade(args: argparse.Namespace) -> int:
    from detcore.migration.checkpoint_upgrade import upgrade_checkpoint

    report = upgrade_checkpoint(args.input, args.output, args.num_classes, args.shift_background)
    print(f"{args.output}: {report.layout} layout, {len(report.changes)} change(s)")
    for change in report.changes:
        print(f"  {change}")
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from detcore.migration.checkpoint_publish import publish_checkpoint

    print(publish_checkpoint(args.input, args.output))
    return 0
