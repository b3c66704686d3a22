"""Pictures of training samples after the pipeline, to check annotations and augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detcore.config import Config
from detcore.visualization import show_result


def denormalize(img: Any, img_norm_cfg: dict | None) -> tuple[np.ndarray, bool]:
    """A packed ``Tensor[3, H, W]`` back to a ``uint8`` HWC array; returns ``(array, is_bgr)``."""
    array = img.detach().cpu().numpy().transpose(1, 2, 0).astype(np.float32)
    is_bgr = True
    if img_norm_cfg:
        array = array * np.asarray(img_norm_cfg["std"], np.float32) + np.asarray(
            img_norm_cfg["mean"], np.float32
        )
        is_bgr = not img_norm_cfg.get("to_rgb", False)
    return np.clip(array, 0, 255).round().astype(np.uint8), is_bgr


def browse_dataset(
    cfg: Config, out_dir: str | Path, num_samples: int = 8, split: str = "train"
) -> list[Path]:
    """Write ``num_samples`` pictures of ``data.<split>`` samples (after the pipeline) into ``out_dir``."""
    from detcore.config import validate_config
    from detcore.data import build_dataset

    validate_config(cfg)
    dataset = build_dataset(cfg["data"][split])
    class_names = list(getattr(dataset, "CLASSES", None) or [])
    out_dir = Path(out_dir)
    written = []
    for index in range(min(num_samples, len(dataset))):
        sample = dataset[index]
        if isinstance(sample, list):  # test-time augmentation: show the first view
            sample = sample[0]
        meta = sample["img_meta"]
        image, is_bgr = denormalize(sample["img"], meta.get("img_norm_cfg"))
        gt = sample["gt_instances"]
        name = Path(str(meta.get("filename", f"sample_{index}"))).stem
        path = out_dir / f"{index:04d}_{name}.png"
        show_result(image, gt, class_names, score_thr=0.0, out_file=path, bgr=is_bgr)
        written.append(path)
    return written
