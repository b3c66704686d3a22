"""``detcore coco-error-analysis RESULTS ANN [--out-dir DIR]``: per-category COCO error breakdown plots."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "coco-error-analysis",
        help="per-category error breakdown (C75, C50, Loc, Sim, Oth, BG, FN) of COCO results",
        description="Precision-recall curves of RESULTS against the COCO annotation file ANN under "
        "successively more forgiving rules, per category and overall; writes one picture each and "
        "error_analysis.json with the AP of every level.",
    )
    p.add_argument("results", help="COCO results JSON (list of detections) or `detcore test --out` JSON")
    p.add_argument("ann", help="COCO annotation JSON of the same images")
    p.add_argument("--out-dir", default="error_analysis", help="where to write (default: error_analysis)")
    p.add_argument("--types", nargs="+", default=["bbox"], choices=("bbox", "segm"), help="IoU type(s)")
    p.add_argument("--areas", nargs="+", default=["all"], choices=("all", "small", "medium", "large"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pycocotools.coco import COCO

    from detcore.errors import DetcoreError
    from detcore.tools.coco_error_analysis import ERRORS, _quiet, analyze, coco_results_of, plot_breakdown

    if not Path(args.ann).is_file():
        raise DetcoreError(f"{args.ann}: no such annotation file")
    gt = _quiet(COCO, args.ann)
    results = coco_results_of(args.results, gt)
    out = Path(args.out_dir)
    summary: dict[str, dict] = {}
    for iou_type in args.types:
        if iou_type == "segm" and results and "segmentation" not in results[0]:
            raise DetcoreError(f"{args.results}: --types segm needs results with 'segmentation'")
        breakdown = analyze(gt, results, iou_type)
        summary[iou_type] = {area: breakdown.table(area) for area in args.areas}
        pictures = [path for area in args.areas for path in plot_breakdown(breakdown, out / iou_type, area)]
        overall = summary[iou_type][args.areas[0]]["overall"]
        print(f"{iou_type} ({args.areas[0]}): " + ", ".join(f"{e} {overall[e]:.3f}" for e in ERRORS))
        print(f"wrote {len(pictures)} pictures to {out / iou_type}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "error_analysis.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / 'error_analysis.json'}")
    return 0
