"""bbox AP of one fp32-trained checkpoint evaluated in fp32 and in bf16 (issue 16: within 0.5 AP points).

    python benchmarks/precision_accuracy.py CONFIG CHECKPOINT [--emulate-bf16] [--set KEY=VALUE ...]

Both passes run ``detcore test``'s path (``Runner.test``: the inference fast path, Conv-BN folded,
channels-last) over the config's ``[data.test]``. ``--emulate-bf16`` runs bf16 also on a CPU without native
bfloat16 (the capability check is bypassed: PyTorch's generic kernels round to bfloat16 as the native ones
do, but many times slower), so the accuracy figure can be measured on any machine; its time is then not a
speed figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def evaluate(config: str, checkpoint: str, precision: str, overrides: list[str]) -> tuple[dict, float, str]:
    from detcore.config import load_config
    from detcore.engine import Runner

    cfg = load_config(config, overrides)
    with tempfile.TemporaryDirectory() as work_dir:
        runner = Runner.from_config(cfg, work_dir=work_dir, device="cpu", precision=precision)
        start = time.perf_counter()
        metrics = runner.test(checkpoint)
        return metrics, time.perf_counter() - start, runner.precision


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--emulate-bf16", action="store_true", help="bf16 without native hardware support")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    from detcore.models import precision as P

    native = P.bf16_supported("cpu")
    if args.emulate_bf16:
        P.bf16_supported = lambda device="cpu": True  # the accuracy of bf16 rounding, not its speed
    rows = {}
    for precision in ("fp32", "bf16"):
        metrics, seconds, ran = evaluate(args.config, args.checkpoint, precision, args.overrides)
        rows[precision] = {"ran": ran, "seconds": round(seconds, 1), **metrics}
    fp32, bf16 = rows["fp32"]["bbox_mAP"], rows["bf16"]["bbox_mAP"]
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {native}"
          f"{' (bf16 emulated)' if args.emulate_bf16 and not native else ''}")
    print("| precision | ran | bbox AP | AP50 | AP75 | eval time (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for p, row in rows.items():
        print(f"| {p} | {row['ran']} | {row['bbox_mAP']:.4f} | {row.get('bbox_mAP_50', float('nan')):.4f} | "
              f"{row.get('bbox_mAP_75', float('nan')):.4f} | {row['seconds']} |")
    print(f"bf16 - fp32: {100 * (bf16 - fp32):+.2f} AP points")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"native_bf16": native, "emulated": args.emulate_bf16 and not native, "rows": rows}, f)


if __name__ == "__main__":
    main()
