"""``detcore analyze-results CONFIG RESULTS [--topk K] [--show-dir DIR]``: best and worst images by AP."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze-results",
        help="per-image AP of `detcore test --out` results; pictures of the best and worst K images",
        description="Rank the images of RESULTS by their own AP (0.50:0.95) against CONFIG's [data.test], "
        "write per_image_ap.json and, for the best and worst K, ground truth beside the predictions.",
    )
    p.add_argument("config", help="the config whose [data.test] the results are of")
    p.add_argument("results", help="JSON written by `detcore test CONFIG CKPT --out results.json`")
    p.add_argument("--topk", type=int, default=20, help="how many best and worst images to draw (20)")
    p.add_argument("--show-dir", default="analyze_results", help="output folder (default: analyze_results)")
    p.add_argument("--score-thr", type=float, default=0.0, help="score threshold for AP (default: 0)")
    p.add_argument("--show-score-thr", type=float, default=0.3, help="score threshold when drawing (0.3)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.errors import DetcoreError
    from detcore.tools.analyze_results import draw_comparison, rank_images
    from detcore.tools.results import image_file, load_pairs

    if args.topk < 1:
        raise DetcoreError(f"--topk must be at least 1, got {args.topk}")
    dataset, pairs = load_pairs(args.config, args.results, args.overrides)
    classes = list(dataset.CLASSES)
    ranked = rank_images(pairs, len(classes), args.score_thr)
    out = Path(args.show_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "per_image_ap.json").write_text(
        json.dumps([{"img_id": s.img_id, "filename": s.filename, "ap": round(s.ap, 4)} for s in ranked])
    )
    by_id = {result.img_id: (result, truth) for result, truth in pairs}
    k = min(args.topk, len(ranked))
    drawn = 0
    for folder, chosen in (("good", ranked[:k]), ("bad", ranked[::-1][:k])):
        for rank, score in enumerate(chosen, 1):
            result, truth = by_id[score.img_id]
            path = image_file(dataset, result, truth)
            if path is None:
                print(f"analyze-results: no image file for img_id {score.img_id}; not drawn")
                continue
            name = f"{rank:03d}_ap{score.ap:.3f}_{Path(str(path)).stem}.jpg"
            draw_comparison(str(path), result, truth, classes, out / folder / name, args.show_score_thr,
                            title=f"(AP {score.ap:.3f})")  # fmt: skip
            drawn += 1
    if ranked:
        mean = sum(s.ap for s in ranked) / len(ranked)
        print(f"{len(ranked)} images, mean per-image AP {mean:.4f}; "
              f"best {ranked[0].ap:.4f}, worst {ranked[-1].ap:.4f}")  # fmt: skip
    print(f"wrote {out / 'per_image_ap.json'} and {drawn} pictures under {out}/good and {out}/bad")
    return 0
