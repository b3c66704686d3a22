"""Inference speed of a config's model (``detcore benchmark``): images/s in fp32 and/or bf16.

The images are the first ``images + warmup`` of the config's test data (or random ``size`` images when
``size`` is given or the test data cannot be read), prepared by the test pipeline beforehand; only the
model call is timed (forward and post-processing, batch ``batch_size``). With several precisions each
batch runs through every precision's model in turn, so a changing machine load affects them alike.
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from detcore.config import Config


def _prepared_batches(
    model: torch.nn.Module, count: int, batch_size: int, size: tuple[int, int] | None
) -> tuple[list[dict[str, Any]], str]:
    """``count`` images as collated batches, and where they came from."""
    from detcore.api import _sample, _test_pipeline
    from detcore.data import collate

    cfg: Config = model.cfg
    samples: list[dict[str, Any]] = []
    source = ""
    if size is None:
        try:
            from detcore.data import build_dataset

            dataset = build_dataset(dict(cfg["data"]["test"]), where="data.test")
            for i in range(min(count, len(dataset))):
                samples.append(dataset[i])
            source = f"the first {len(samples)} images of data.test"
        except Exception as exc:  # noqa: BLE001 - fall back to random images, said in the report
            source = f"random 1333x800 images (data.test unreadable: {type(exc).__name__}: {exc})"
            size = (800, 1333)
    if size is not None:
        pipeline = _test_pipeline(cfg, from_array=True)
        gen = np.random.default_rng(0)
        for i in range(count):
            image = gen.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
            samples.append(pipeline(_sample(image, i)))
        source = source or f"random {size[1]}x{size[0]} images"
    if not samples:
        raise ValueError("detcore benchmark: data.test has no images")
    divisor = int(cfg.get("data.pad_size_divisor", 1))
    starts = range(0, len(samples), batch_size)
    batches = [collate(samples[i : i + batch_size], pad_size_divisor=divisor) for i in starts]
    return batches, source


def benchmark(
    config: str | Path | Config,
    checkpoint: str | None = None,
    precisions: Sequence[str] = ("fp32", "bf16"),
    images: int = 20,
    warmup: int = 2,
    batch_size: int = 1,
    device: str = "cpu",
    size: tuple[int, int] | None = None,
    fuse_conv_bn: bool = True,
    cfg_options: list[str] | None = None,
) -> dict[str, Any]:
    """``{"precisions": {requested: {"ran": precision, "images_per_s", "median_batch_s"}}, "source",
    "images", "batch_size"}`` for the model of ``config`` (``checkpoint``'s weights if given)."""
    from detcore.api import init_detector
    from detcore.engine.loops import to_device
    from detcore.models.precision import check_precision, set_precision

    if images < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(
            f"detcore benchmark: --images ({images}) and --batch-size ({batch_size}) must be >= 1, "
            f"--warmup ({warmup}) >= 0"
        )
    wanted = [check_precision(p, "--precision") for p in precisions]
    base = init_detector(
        config, checkpoint, device=device, cfg_options=cfg_options, fuse_conv_bn=fuse_conv_bn,
        precision="fp32",
    )
    channels_last = fuse_conv_bn  # the fast path as detcore infer runs it; --no-fuse times the plain model
    models = {}
    for p in wanted:
        m = copy.deepcopy(base)
        set_precision(m, p, device, channels_last=channels_last or p == "bf16", where="detcore benchmark")
        models[p] = m
    num_warmup_batches = -(-warmup // batch_size)
    batches, source = _prepared_batches(base, images + num_warmup_batches * batch_size, batch_size, size)
    times: dict[str, list[float]] = {p: [] for p in wanted}
    counted = 0
    with torch.no_grad():  # as the API and the eval loop (autocast caches its bf16 weights here)
        for index, batch in enumerate(batches):
            batch = to_device(batch, device)
            for p, m in models.items():
                start = time.perf_counter()
                m(**batch)
                elapsed = time.perf_counter() - start
                if index >= num_warmup_batches:
                    times[p].append(elapsed)
            if index >= num_warmup_batches:
                counted += batch["imgs"].shape[0]
    figures = {
        p: {
            "ran": models[p].precision,
            "images_per_s": counted / sum(t) if t else float("nan"),
            "median_batch_s": statistics.median(t) if t else float("nan"),
        }
        for p, t in times.items()
    }
    return {"precisions": figures, "source": source, "images": counted, "batch_size": batch_size,
            "fused_conv_bn": base.fused_conv_bn}
