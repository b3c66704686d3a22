"""``detcore confusion-matrix CONFIG RESULTS [--out-dir DIR]``: detections vs. ground truth by class."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "confusion-matrix",
        help="confusion matrix (picture + JSON) of `detcore test --out` results",
        description="Count, per ground-truth class, which class (or background) the detections of RESULTS "
        "give, against CONFIG's [data.test] annotations; writes confusion_matrix.json and .png.",
    )
    p.add_argument("config", help="the config whose [data.test] the results are of")
    p.add_argument("results", help="JSON written by `detcore test CONFIG CKPT --out results.json`")
    p.add_argument("--out-dir", default=".", help="where to write the matrix (default: .)")
    p.add_argument("--score-thr", type=float, default=0.3, help="drop detections under this score (0.3)")
    p.add_argument("--tp-iou-thr", type=float, default=0.5, help="IoU for a detection to hit a box (0.5)")
    p.add_argument("--nms-iou-thr", type=float, default=None, help="class-wise NMS first at this IoU")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.tools.confusion_matrix import confusion_matrix, save_confusion_matrix
    from detcore.tools.results import load_pairs

    dataset, pairs = load_pairs(args.config, args.results, args.overrides)
    classes = list(dataset.CLASSES)
    matrix = confusion_matrix(pairs, len(classes), args.score_thr, args.tp_iou_thr, args.nms_iou_thr)
    settings = {"score_thr": args.score_thr, "tp_iou_thr": args.tp_iou_thr, "nms_iou_thr": args.nms_iou_thr}
    json_path, png_path = save_confusion_matrix(matrix, classes, args.out_dir, settings)
    print(f"{len(pairs)} images; true positives {int(matrix.diagonal()[:-1].sum())}, "
          f"background false positives {int(matrix[-1].sum())}, missed boxes {int(matrix[:-1, -1].sum())}")
    print(f"wrote {json_path}" + (f" and {png_path}" if png_path else " (no matplotlib: no picture)"))
    return 0
