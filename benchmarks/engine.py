"""Per-iteration overhead of the detcore engine against a bare PyTorch loop, on the tiny test model.

Both loops train the same tiny model (tests/engine/_engine_tiny.py) on the same batches with SGD,
single-threaded on the CPU. The engine runs its default hooks (LR schedule, optimizer, timer,
checkpoint without saves, logger every ``--log-interval`` iterations, text + JSON logs). Each
variant is timed ``--repeats`` times over ``--iters`` iterations after ``--warmup`` iterations; the
report gives the median and the spread (max - min) of the per-iteration times, which is the
resolution of the overhead figure.

usage: python benchmarks/engine.py [--iters 400] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))

import _engine_tiny  # noqa: E402


def bare_loop(loader, iters: int, warmup: int) -> float:
    """Seconds per iteration of a plain loop: forward, sum of losses, backward, step, zero_grad."""
    from detcore.engine.loops import to_device

    torch.manual_seed(0)
    model = _engine_tiny.TinyDetector()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    device = torch.device("cpu")
    done, start = 0, None
    while True:
        for batch in loader:
            if done == warmup:
                start = time.perf_counter()
            batch = to_device(batch, device)
            losses = model(**batch)
            loss = losses["loss_cls"].mean() + sum(v.mean() for v in losses["loss_bbox"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            if done == warmup + iters:
                return (time.perf_counter() - start) / iters


class _Clock(_engine_tiny.Hook):
    def __init__(self, warmup: int) -> None:
        super().__init__("LOWEST")
        self.warmup = warmup
        self.start = self.end = 0.0

    def before_train_iter(self, runner) -> None:
        if runner.iter == self.warmup:
            self.start = time.perf_counter()

    def after_train_iter(self, runner) -> None:
        if runner.iter + 1 == runner.max_iters:
            self.end = time.perf_counter()


def engine_loop(iters: int, warmup: int, log_interval: int, work_dir: Path) -> float:
    from detcore.config import Config
    from detcore.engine import Runner

    cfg = _engine_tiny.base_config(
        work_dir,
        data={"train": {"type": "TinyBoxes", "num_samples": 64}},
        optimizer={"lr": 0.01},
        lr_config={"_replace": True, "policy": "fixed"},
        runner={"_replace": True, "type": "IterBasedRunner", "max_iters": warmup + iters},
        checkpoint_config={"interval": 10**9, "save_last": False},
        log_config={"interval": log_interval},
        evaluation={"enabled": False},
    )
    runner = Runner.from_config(Config(cfg, {}, str(work_dir / "bench.toml")))
    runner.logger.handlers = [
        h
        for h in runner.logger.handlers
        if not isinstance(h, type(runner.logger.handlers[0])) or hasattr(h, "baseFilename")
    ]  # keep the file log, silence the console
    clock = _Clock(warmup)
    runner.register_hook(clock)
    runner.train()
    return (clock.end - clock.start) / iters


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _engine_tiny.register()
    from detcore.data import build_dataloader, build_dataset

    loader = build_dataloader(build_dataset({"type": "TinyBoxes", "num_samples": 64}), 2, 0, seed=0)
    results: dict[str, list[float]] = {
        "bare PyTorch loop": [],
        "engine, log every 50": [],
        "engine, log every iteration": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):  # interleaved so that machine load affects all variants alike
            results["bare PyTorch loop"].append(bare_loop(loader, args.iters, args.warmup))
            results["engine, log every 50"].append(
                engine_loop(args.iters, args.warmup, 50, Path(tmp) / f"a{r}")
            )
            results["engine, log every iteration"].append(
                engine_loop(args.iters, args.warmup, 1, Path(tmp) / f"b{r}")
            )
    bare = statistics.median(results["bare PyTorch loop"])
    print(f"tiny model, batch 2 of 3x16x16, CPU, 1 thread, {args.iters} iterations x {args.repeats} repeats")
    best_bare = min(results["bare PyTorch loop"])
    print(
        f"{'variant':30s} {'median ms/it':>12s} {'min ms/it':>10s} {'spread ms':>10s} "
        f"{'overhead (median)':>18s} {'overhead (min)':>15s}"
    )
    for name, values in results.items():
        med, best = statistics.median(values), min(values)
        spread = max(values) - min(values)
        print(
            f"{name:30s} {med * 1e3:12.3f} {best * 1e3:10.3f} {spread * 1e3:10.3f} "
            f"{(med - bare) * 1e3:18.3f} {(best - best_bare) * 1e3:15.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
