"""``detcore report CONFIG RESULTS [--out report.html] [--log LOG.json]``: one self-contained HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML page of `detcore test --out` results (metrics, curves, images)",
        description="Write one HTML file with every picture embedded: COCO box metrics, AP per class, "
        "precision-recall curves, the confusion matrix, the worst and best images with predictions "
        "beside ground truth, and the training curves of --log.",
    )
    p.add_argument("config", help="the config whose [data.test] the results are of")
    p.add_argument("results", help="JSON written by `detcore test CONFIG CKPT --out results.json`")
    p.add_argument("--out", default="report.html", help="the page to write (default: report.html)")
    p.add_argument("--log", nargs="+", default=[], metavar="LOG", help="training JSON logs for the curves")
    p.add_argument("--topk", type=int, default=6, help="worst and best images shown (default: 6)")
    p.add_argument("--score-thr", type=float, default=0.3, help="score threshold for pictures and matrix")
    p.add_argument("--title", default=None, help="page title (default: the config's name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.tools.report import build_report
    from detcore.tools.results import image_file, load_pairs

    dataset, pairs = load_pairs(args.config, args.results, args.overrides)
    files = {result.img_id: image_file(dataset, result, truth) for result, truth in pairs}
    title = args.title or f"{Path(args.config).stem}: results"
    page = build_report(title, pairs, list(dataset.CLASSES), files, args.log, args.topk, args.score_thr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out} ({len(page) / 1e6:.1f} MB, {len(pairs)} images)")
    return 0
