"""Run the full default demo and print its wall time and final COCO metrics.

    python benchmarks/demo.py [--out-dir DIR] [--config CONFIG]

Target (issue 8): under 10 minutes on the 2-core CPU machine, bbox AP (0.5:0.95) >= 0.5 on the shapes
val split. Data generation is included in the time when the shapes cache is empty (use a fresh
DETCORE_DATA to measure it).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from detcore.tools.demo import DEFAULT_CONFIG, print_summary, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", default="demo_out")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    args = parser.parse_args()
    start = time.time()
    summary = run_demo(args.config, args.out_dir)
    wall = time.time() - start
    print_summary(summary)
    metrics = summary["metrics"]
    print("\n| figure | value |\n| --- | --- |")
    print(f"| wall time (whole demo) | {wall:.0f} s ({wall / 60:.1f} min) |")
    print(f"| bbox AP (0.5:0.95), shapes val | {metrics.get('bbox_mAP', float('nan')):.3f} |")
    print(
        f"| bbox AP50 / AP75 | {metrics.get('bbox_mAP_50', float('nan')):.3f} / "
        f"{metrics.get('bbox_mAP_75', float('nan')):.3f} |"
    )
    if "segm_mAP" in metrics:
        print(f"| mask AP | {metrics['segm_mAP']:.3f} |")
    print(f"| torch threads / CPUs | {torch.get_num_threads()} / {os.cpu_count()} |")
    print(f"| first picture | {summary['pictures'][0] if summary['pictures'] else '-'} |")


if __name__ == "__main__":
    main()
