"""Subprocess entry for engine tests: train the tiny model from a TOML config.

usage: python run_tiny.py CONFIG [--resume] [--dump OUT.pt]
``--dump`` writes the final model state dict (rank 0) for bitwise comparison.
Works under torchrun (each rank writes OUT.rank<r>.pt).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import _engine_tiny  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--dump")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _engine_tiny.register()
    from detcore.engine import Runner

    runner = Runner.from_config(args.config, resume=args.resume)
    metrics = runner.train()
    if args.dump:
        out = Path(args.dump)
        if runner.world_size > 1:
            out = out.with_name(f"{out.stem}.rank{runner.rank}{out.suffix}")
        torch.save(
            {
                "state_dict": runner.unwrapped_model.state_dict(),
                "metrics": metrics,
                "iter": runner.iter,
                "epoch": runner.epoch,
            },
            out,
        )
    if runner.world_size > 1:
        torch.distributed.barrier()
        # Leave without tearing the gloo process group down: its destructor joins gloo's worker threads,
        # and one may still be freeing an all_gather's tensors and waiting for the GIL this thread holds
        # (a PyTorch deadlock, hit about once in ten runs on a loaded machine). Everything is written by
        # now; flush it and exit.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
