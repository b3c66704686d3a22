"""The Python API: build a detector from a config and run it on images.

>>> model = init_detector("configs/retinanet/retinanet_r50_fpn_1x_coco.toml", "retinanet.pth")
>>> result = inference_detector(model, "demo.jpg")      # Instances: bboxes (N, 4) xyxy, scores, labels
>>> results = inference_detector(model, [img_a, img_b], batch_size=2)   # BGR uint8 (H, W, 3) arrays

Boxes come back in original-image pixel coordinates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch
from torch import nn

from detcore.config import Config, apply_override, load_config, validate_config
from detcore.errors import config_sources

ImageInput = Union[str, Path, np.ndarray]


def init_detector(
    config: str | Path | Config,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    cfg_options: list[str] | None = None,
    precision: str | None = None,
    fuse_conv_bn: bool = False,
    channels_last: bool | None = None,
) -> nn.Module:
    """Build the ``[model]`` of ``config`` (a path or a merged :class:`Config`) in eval mode on ``device``.

    ``checkpoint`` (a path or URL) may be a detcore checkpoint or any file with a ``state_dict``
    entry (or a bare state dict) whose keys match the model. ``cfg_options`` are ``--set``-style
    overrides (``"model.test_cfg.score_thr=0.3"``). The model gets ``cfg`` (the Config) and
    ``CLASSES`` (from the checkpoint's meta, the config's ``classes`` or the test dataset).

    ``precision`` (``"fp32"`` / ``"bf16"``; default: the config's top-level ``precision``, else fp32)
    is set with :func:`detcore.models.precision.set_precision` (bf16 falls back to fp32 with a warning
    where the device lacks native bfloat16); ``model.precision`` says which runs. The inference fast
    path (``detcore infer`` and ``detcore benchmark`` turn both on): ``fuse_conv_bn`` folds eval
    BatchNorm into the preceding convolutions when the result matches the unfused model within float
    tolerance (``model.fused_conv_bn``: how many pairs; the state dict then lacks those BatchNorms, so the
    default keeps the checkpoint's layout); ``channels_last`` (default: with bf16 only) stores the
    convolution weights channels-last, faster on CPUs also in fp32 (same results within float tolerance).
    """
    from detcore.engine.checkpoint import (
        extract_state_dict,
        load_checkpoint_file,
        load_weights,
        resolve_checkpoint_path,
    )
    from detcore.models.fusion import inference_fast_path
    from detcore.models.precision import precision_of, set_precision
    from detcore.registry import build

    if isinstance(config, Config):
        cfg = Config(config.to_dict(), dict(config.provenance), config.filename)
        for option in cfg_options or []:
            apply_override(cfg.data, cfg.provenance, option)
    elif isinstance(config, (str, Path)):
        cfg = load_config(config, cfg_options or [])
    else:
        raise TypeError(
            f"init_detector: config must be a path or a detcore Config, got {type(config).__name__}"
        )
    validate_config(cfg)  # the whole config: schedule checks need [runner]'s length of training
    if "model" not in cfg:
        raise ValueError(f"init_detector: {cfg.filename or 'the config'} has no [model] table")
    with config_sources(cfg.source_of):  # build errors name the file and key path of the table
        model = build("detector", cfg["model"], where="model")
    model.cfg = cfg
    classes = None
    if checkpoint is not None:
        ckpt = load_checkpoint_file(resolve_checkpoint_path(str(checkpoint)), map_location="cpu")
        report = load_weights(model, extract_state_dict(ckpt))
        model.load_report = report
        if not report.clean:
            import warnings

            warnings.warn(
                f"init_detector: checkpoint '{checkpoint}' does not fully match the model:\n"
                f"{report.format()}",
                stacklevel=2,
            )
        meta = ckpt.get("meta") or {}
        classes = meta.get("classes") or meta.get("CLASSES")
    model.CLASSES = tuple(classes or cfg.get("classes") or _dataset_classes(cfg) or ())
    requested = precision_of(cfg, precision)  # a bad value fails before the weights load
    model.to(device)
    model.eval()
    if fuse_conv_bn:
        return inference_fast_path(
            model, requested, device, channels_last=channels_last, where="init_detector"
        )
    model.fused_conv_bn = 0
    set_precision(model, requested, device, channels_last=channels_last, where="init_detector")
    return model


def _dataset_classes(cfg: Config) -> Sequence[str] | None:
    table = cfg.get("data.test") or cfg.get("data.val")
    if not isinstance(table, Mapping):
        return None
    if table.get("classes"):
        return table["classes"]
    from detcore.registry import get_registry

    try:
        factory = get_registry().get("dataset", table["type"]).factory
    except Exception:  # noqa: BLE001 - class names are optional information
        return None
    return getattr(factory, "CLASSES", None)


class LoadImageFromArray:
    """Pipeline step for in-memory images: what ``LoadImageFromFile`` sets, from ``results["img"]``.

    The array is a ``uint8`` BGR ``(H, W, 3)`` image (or ``(H, W)`` grayscale), as images are read from files.
    """

    def __init__(self, to_float32: bool = False) -> None:
        self.to_float32 = to_float32

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        img = results["img"]
        if self.to_float32:
            img = img.astype(np.float32)
        results["img"] = img
        results["filename"] = None
        results["ori_filename"] = None
        results["img_shape"] = img.shape
        results["ori_shape"] = img.shape
        results["img_fields"] = ["img"]
        return results


def _test_pipeline(cfg: Config, from_array: bool) -> Any:
    from detcore.data.transforms.compose import Compose

    pipeline = cfg.get("data.test.pipeline")
    if not pipeline:
        raise ValueError(f"{cfg.filename or 'the config'}: data.test.pipeline is needed for inference")
    steps: list[Any] = []
    for step in pipeline:
        kind = str(step.get("type", "")).rpartition(":")[2]
        if kind in ("LoadAnnotations", "LoadProposals"):
            continue  # no annotations at inference time
        if kind == "LoadImageFromFile" and from_array:
            steps.append(LoadImageFromArray(to_float32=bool(step.get("to_float32", False))))
        else:
            steps.append(step)
    return Compose(steps)


def _sample(image: ImageInput, index: int) -> dict[str, Any]:
    sample: dict[str, Any] = {"img_prefix": None, "bbox_fields": [], "mask_fields": [], "seg_fields": []}
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise ValueError(
                f"inference_detector: image {index} must be (H, W) or (H, W, C), got {image.shape}"
            )
        sample["img"] = image
        sample["img_info"] = {
            "filename": None,
            "height": image.shape[0],
            "width": image.shape[1],
            "id": index,
        }
    elif isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"inference_detector: image {index} '{image}' does not exist")
        sample["img_info"] = {"filename": str(image), "id": index}
    else:
        raise TypeError(
            f"inference_detector: image {index} must be a path or an ndarray, got {type(image).__name__}"
        )
    return sample


@torch.no_grad()
def inference_detector(
    model: nn.Module,
    images: ImageInput | Sequence[ImageInput],
    batch_size: int = 1,
    precision: str | None = None,
) -> Any:
    """Detect objects in one image (-> ``Instances``) or a list of images (-> ``list[Instances]``).

    Images are file paths or BGR ``uint8`` arrays; the config's ``data.test.pipeline`` prepares them
    (its ``LoadImageFromFile`` is replaced by an in-memory loader for arrays). Each result has
    ``bboxes`` (N, 4) xyxy in original-image pixels, ``scores`` (N,), ``labels`` (N,) (and
    ``masks`` for instance-segmentation models); every floating output is float32, in either precision.
    ``batch_size`` images run as one padded batch. ``precision`` (``"fp32"`` / ``"bf16"``) changes the
    model's precision (:func:`detcore.models.precision.set_precision`) before it runs; default: as it is.
    """
    from detcore.data import collate
    from detcore.engine.loops import to_device
    from detcore.models.precision import check_precision, set_precision

    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, Config):
        raise ValueError("inference_detector: the model has no .cfg; build it with init_detector")
    single = isinstance(images, (str, Path, np.ndarray))
    items = [images] if single else list(images)
    if batch_size < 1:
        raise ValueError(f"inference_detector: batch_size must be >= 1, got {batch_size}")
    pipelines = {}
    device = next(model.parameters()).device
    if precision is not None and check_precision(precision, "inference_detector") != getattr(
        model, "precision", "fp32"
    ):
        set_precision(model, precision, device, where="inference_detector")
    divisor = int(cfg.get("data.pad_size_divisor", 1))
    was_training = model.training
    model.eval()
    results: list[Any] = []
    for start in range(0, len(items), batch_size):
        samples = []
        for i, image in enumerate(items[start : start + batch_size], start):
            from_array = isinstance(image, np.ndarray)
            if from_array not in pipelines:
                pipelines[from_array] = _test_pipeline(cfg, from_array)
            sample = pipelines[from_array](_sample(image, i))
            if sample is None:
                raise ValueError(f"inference_detector: the test pipeline dropped image {i}")
            samples.append(sample)
        batch = to_device(collate(samples, pad_size_divisor=divisor), device)
        results.extend(model(**batch))
    model.train(was_training)
    return results[0] if single else results
