"""Convert a reference (MMDetection 1.x / 2.x / 3.x) Python config into one detcore TOML config.

:func:`import_config` reads the file with :func:`detcore.migration.pyconfig.read_py_config` (no code
runs), then maps what detcore spells differently:

- ``model``: 1.x/2.x top-level ``train_cfg`` / ``test_cfg`` move into it; ``pretrained`` becomes the
  backbone's ``init_cfg``; ``nms`` tables' ``iou_thr`` -> ``iou_threshold``; 1.x heads' anchor and
  target keys -> ``anchor_generator`` / ``bbox_coder``, 1.x ``num_classes`` (with background) - 1;
  the pre-2.14 SSD (extra layers and L2 norm in ``SSDVGG``) -> ``SSDVGG`` + ``SSDNeck``; 3.x
  ``data_preprocessor`` -> ``Normalize`` / ``Pad`` steps in the pipelines.
- ``data`` (``samples_per_gpu``/``imgs_per_gpu`` -> ``batch_size``, ``workers_per_gpu`` ->
  ``num_workers``) or 3.x ``*_dataloader``; pipelines: ``DefaultFormatBundle``/``ImageToTensor``/
  ``ToTensor``/``Transpose`` dropped, ``Collect`` -> ``PackDetInputs``; 3.x ``Resize(scale)`` ->
  ``img_scale``, ``RandomFlip(prob)`` -> ``flip_ratio``, ``data_prefix`` -> ``img_prefix``.
- ``evaluation`` (its ``metric`` becomes the ``[evaluator]`` table) or 3.x ``val_evaluator`` /
  ``val_interval``; ``optimizer``/``optimizer_config`` or 3.x ``optim_wrapper``; ``lr_config`` or
  3.x ``param_scheduler``; ``runner``/``total_epochs`` or 3.x ``train_cfg`` loops; ``checkpoint_config``,
  ``log_config`` or 3.x ``default_hooks``; ``fp16`` -> ``[amp]``.

Every ``type`` is looked up in the installed plugins; those that no plugin registers are reported
with the distribution to install. Keys detcore has no use for are listed in the result's notes.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detcore.errors import ConfigError
from detcore.migration.pyconfig import read_py_config

#: the reference's ``open-mmlab://`` model names -> the addresses detcore's configs use
OPEN_MMLAB_URLS = {
    "detectron/resnet50_caffe": "https://download.openmmlab.com/pretrain/third_party/resnet50_caffe-788b5fa3.pth",
    "detectron2/resnet50_caffe": "https://download.openmmlab.com/pretrain/third_party/resnet50_msra-5891d200.pth",
    "vgg16_caffe": "https://download.openmmlab.com/pretrain/third_party/vgg16_caffe-292e1171.pth",
    "resnext101_32x4d": "https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d-a5af3160.pth",
    "resnext101_64x4d": "https://download.openmmlab.com/pretrain/third_party/resnext101_64x4d-ee2c6f71.pth",
}

#: reference pipeline steps whose work detcore's ``PackDetInputs`` does
_FORMAT_STEPS = {"DefaultFormatBundle", "ImageToTensor", "ToTensor", "Transpose", "ToDataContainer"}

#: top-level reference keys with no detcore counterpart (helper variables and runtime settings)
_UNUSED_KEYS = {
    "dataset_type",
    "data_root",
    "img_norm_cfg",
    "train_pipeline",
    "test_pipeline",
    "dist_params",
    "log_level",
    "workflow",
    "opencv_num_threads",
    "mp_start_method",
    "backend_args",
    "env_cfg",
    "vis_backends",
    "visualizer",
    "log_processor",
    "default_scope",
    "launcher",
    "gpu_ids",
    "file_client_args",
    "val_cfg",
    "test_cfg",
    "resume_from",
    "resume",
    "evaluation",
}

#: reference run hooks whose work detcore does without a hook
_BUILT_IN_CHECKS = {
    "NumClassCheckHook": "a reference check of num_classes against the dataset's classes; no detcore hook",
}

_V3_KEYS = {
    "train_dataloader",
    "val_dataloader",
    "test_dataloader",
    "optim_wrapper",
    "param_scheduler",
    "val_evaluator",
    "test_evaluator",
    "default_hooks",
}


@dataclass
class ImportResult:
    """The detcore config (``data``), the reference style it was read as, and what was not mapped."""

    data: dict[str, Any]
    style: str
    source: str
    notes: list[str] = field(default_factory=list)
    unknown_types: list[tuple[str, str]] = field(default_factory=list)  # (type, where)

    def install_hints(self) -> list[str]:
        """One line per unknown type: where it is used and the distribution that may offer it."""
        return [
            f"{where}: type '{name}' is registered by no installed plugin "
            f"(pip install det-plugin-{plugin_guess(name)})"
            for name, where in self.unknown_types
        ]

    def to_toml(self) -> str:
        """The config as TOML, headed by comments saying where it came from and what was left out."""
        from detcore.migration.toml_writer import dumps

        lines = [f"# Imported by `detcore config import` from {self.source} (reference {self.style} style)."]
        lines += [f"# note: {n}" for n in self.notes]
        lines += [f"# missing: {h}" for h in self.install_hints()]
        return "\n".join(lines) + "\n\n" + dumps(self.data)


def plugin_guess(type_name: str) -> str:
    """A likely plugin name for a component type: ``ATSSHead`` -> ``atss``, ``YOLOV3`` -> ``yolov3``."""
    bare = type_name.rpartition(":")[2]
    for suffix in ("Head", "Neck", "Detector", "Loss", "Assigner", "Hook"):
        if bare.endswith(suffix) and len(bare) > len(suffix):
            bare = bare[: -len(suffix)]
            break
    return re.sub(r"[^0-9a-z]+", "_", bare.lower()).strip("_")


def import_config(path: str | Path, style: str = "auto", registry: Any | None = None) -> ImportResult:
    """Read the reference config at ``path`` and map it to detcore's layout.

    ``style``: ``auto`` (detected from the keys), ``1.x``, ``2.x`` or ``3.x``. ``registry`` (default:
    the installed plugins') decides which ``type`` names are known.
    """
    ref = read_py_config(path)
    if style == "auto":
        style = detect_style(ref)
    if style not in ("1.x", "2.x", "3.x"):
        raise ConfigError(f"config import: style must be auto, 1.x, 2.x or 3.x, got {style!r}")
    converter = _Converter(ref, style, str(path))
    data = converter.convert()
    result = ImportResult(_to_toml_values(data), style, str(path), converter.notes)
    if registry is None:
        from detcore.registry import get_registry

        registry = get_registry()
    plugins, unknown = _plugins_and_unknown(result.data, registry)
    result.unknown_types = unknown
    if plugins:
        result.data = {"plugins": plugins, **result.data}
    return result


def detect_style(ref: dict[str, Any]) -> str:
    """``3.x`` (dataloaders, optim_wrapper, loops), ``1.x`` (``imgs_per_gpu``, anchors in the heads)
    or ``2.x``."""
    train_cfg = ref.get("train_cfg")
    if _V3_KEYS & set(ref) or (
        isinstance(train_cfg, dict) and str(train_cfg.get("type", "")).endswith("Loop")
    ):
        return "3.x"
    data = ref.get("data") if isinstance(ref.get("data"), dict) else {}
    if "imgs_per_gpu" in data or _has_key(ref.get("model"), ("anchor_strides", "anchor_ratios")):
        return "1.x"
    return "2.x"


def _has_key(node: Any, keys: tuple[str, ...]) -> bool:
    if isinstance(node, dict):
        return any(k in node for k in keys) or any(_has_key(v, keys) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_has_key(v, keys) for v in node)
    return False


class _Converter:
    def __init__(self, ref: dict[str, Any], style: str, source: str) -> None:
        self.ref = copy.deepcopy(ref)
        self.style = style
        self.source = source
        self.notes: list[str] = []
        self.norm: dict[str, Any] | None = None  # 3.x data_preprocessor -> pipeline steps
        self.save_best: Any = None  # 2.x evaluation.save_best

    def convert(self) -> dict[str, Any]:
        ref, out = self.ref, {}
        for key in ("work_dir", "seed", "deterministic"):
            if ref.get(key) is not None:
                out[key] = ref[key]
        out["load_from"] = ref.get("load_from") or ""
        if "model" in ref:
            out["model"] = self.model(ref["model"])
        data = self.data()
        if data:
            out["data"] = data
        out.update(self.evaluation())
        out.update(self.optimizer())
        lr = self.lr_config()
        if lr:
            out["lr_config"] = lr
        out.update(self.runner())
        out.update(self.runtime())
        used = {
            "model",
            "data",
            "optimizer",
            "optimizer_config",
            "lr_config",
            "runner",
            "total_epochs",
            "checkpoint_config",
            "log_config",
            "custom_hooks",
            "load_from",
            "fp16",
            "auto_scale_lr",
            "work_dir",
            "seed",
            "deterministic",
            "train_cfg",
            *_V3_KEYS,
        }
        unused = [k for k in ref if k not in used and not (k.startswith("__") or k in _UNUSED_KEYS)]
        if unused:
            self.notes.append(f"not imported (no detcore counterpart): {', '.join(unused)}")
        if ref.get("resume_from"):
            self.notes.append("resume_from: use `detcore train --resume` instead")
        return out

    # -- model ------------------------------------------------------------------------------------

    def model(self, model: dict[str, Any]) -> dict[str, Any]:
        model = dict(model)
        if self.style != "3.x":
            for key in ("train_cfg", "test_cfg"):
                if isinstance(self.ref.get(key), dict) and key not in model:
                    model[key] = self.ref[key]
        pretrained = model.pop("pretrained", None)
        if pretrained and isinstance(model.get("backbone"), dict) and "init_cfg" not in model["backbone"]:
            model["backbone"] = {
                **model["backbone"],
                "init_cfg": {"type": "Pretrained", "checkpoint": pretrained},
            }
        preprocessor = model.pop("data_preprocessor", None)
        if isinstance(preprocessor, dict):
            self.norm = preprocessor
        if self.style == "1.x":
            model = self._ssd_neck(model)
        return self._components(model, "model")

    def _components(self, node: Any, where: str) -> Any:
        if isinstance(node, (list, tuple)):
            return [self._components(v, f"{where}[{i}]") for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        node = {k: self._components(v, f"{where}.{k}") for k, v in node.items()}
        if node.get("type") in ("nms", "soft_nms") and "iou_thr" in node:
            node["iou_threshold"] = node.pop("iou_thr")
        if "nms_thr" in node and "nms" not in node:  # a 1.x / early 2.x RPN proposal table
            node["nms"] = {"type": "nms", "iou_threshold": node.pop("nms_thr")}
            if "max_num" in node:
                node["max_per_img"] = node.pop("max_num")
            node.pop("nms_post", None)
            node.pop("nms_across_levels", None)
        if node.get("type") == "FPN" and node.get("add_extra_convs") is True:
            # the 1.x / early 2.x spelling: True + extra_convs_on_inputs (default True)
            node["add_extra_convs"] = "on_input" if node.pop("extra_convs_on_inputs", True) else "on_output"
        if self.style == "1.x":
            node = self._v1_head(node, where)
        init = node.get("init_cfg")
        if isinstance(init, dict) and isinstance(init.get("checkpoint"), str):
            node["init_cfg"] = {**init, "checkpoint": self._checkpoint_url(init["checkpoint"], where)}
        return node

    def _checkpoint_url(self, name: str, where: str) -> str:
        if name.startswith("open-mmlab://"):
            key = name[len("open-mmlab://") :]
            if key in OPEN_MMLAB_URLS:
                return OPEN_MMLAB_URLS[key]
            self.notes.append(f"{where}.init_cfg: {name} is kept as is (no known download address)")
        return name

    def _v1_head(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        """1.x heads: ``num_classes`` counted the background; anchors and targets were head keys."""
        if "num_classes" in node and str(node.get("type", "")).endswith("Head"):
            node["num_classes"] = int(node["num_classes"]) - 1
            self.notes.append(
                f"{where}.num_classes: 1.x counted the background class; now {node['num_classes']}"
            )
        keys = (
            "anchor_strides",
            "anchor_ratios",
            "anchor_scales",
            "anchor_base_sizes",
            "basesize_ratio_range",
        )
        if not any(k in node for k in keys) or "anchor_generator" in node:
            return node
        is_ssd = "basesize_ratio_range" in node
        gen: dict[str, Any] = {"type": "SSDAnchorGenerator" if is_ssd else "AnchorGenerator"}
        if is_ssd:
            gen.update(
                scale_major=False,
                input_size=node.pop("input_size", 300),
                basesize_ratio_range=node.pop("basesize_ratio_range"),
            )
        for old, new in (
            ("octave_base_scale", "octave_base_scale"),
            ("scales_per_octave", "scales_per_octave"),
            ("anchor_scales", "scales"),
            ("anchor_ratios", "ratios"),
            ("anchor_strides", "strides"),
            ("anchor_base_sizes", "base_sizes"),
        ):
            if old in node:
                gen[new] = node.pop(old)
        node["anchor_generator"] = gen
        coder = {"type": "DeltaXYWHBBoxCoder"}
        for key in ("target_means", "target_stds"):
            if key in node:
                coder[key] = node.pop(key)
        node["bbox_coder"] = coder
        return node

    def _ssd_neck(self, model: dict[str, Any]) -> dict[str, Any]:
        """Before 2.14 the SSD extra layers and L2 norm lived in ``SSDVGG``; now in ``SSDNeck``."""
        backbone = model.get("backbone")
        if not (
            isinstance(backbone, dict) and backbone.get("type") == "SSDVGG" and model.get("neck") is None
        ):
            return model
        backbone = dict(backbone)
        size = int(backbone.pop("input_size", 300))
        scale = backbone.pop("l2_norm_scale", 20.0)
        if size == 512:
            neck = {
                "out_channels": [512, 1024, 512, 256, 256, 256, 256],
                "level_strides": [2, 2, 2, 2, 1],
                "level_paddings": [1, 1, 1, 1, 1],
                "last_kernel_size": 4,
            }
        elif size == 300:
            neck = {
                "out_channels": [512, 1024, 512, 256, 256, 256],
                "level_strides": [2, 2, 1, 1],
                "level_paddings": [1, 1, 0, 0],
            }
        else:
            raise ConfigError(
                f"{self.source}: model.backbone: SSDVGG input_size {size} (only 300 and 512 known)"
            )
        model = dict(model, backbone=backbone)
        model["neck"] = {"type": "SSDNeck", "in_channels": [512, 1024], **neck, "l2_norm_scale": scale}
        self.notes.append("model.backbone: the pre-2.14 SSDVGG extra layers now form model.neck (SSDNeck)")
        return model

    # -- data -------------------------------------------------------------------------------------

    def data(self) -> dict[str, Any]:
        if self.style == "3.x":
            return self._data_v3()
        ref = self.ref.get("data")
        if not isinstance(ref, dict):
            return {}
        out: dict[str, Any] = {}
        for old, new in (
            ("samples_per_gpu", "batch_size"),
            ("imgs_per_gpu", "batch_size"),
            ("workers_per_gpu", "num_workers"),
            ("persistent_workers", "persistent_workers"),
        ):
            if old in ref:
                out[new] = ref[old]
        for split in ("train", "val", "test"):
            if isinstance(ref.get(split), dict):
                dataset = dict(ref[split])
                for key in ("samples_per_gpu", "imgs_per_gpu"):
                    if key in dataset and split != "train":
                        out[f"{split}_batch_size"] = dataset.pop(key)
                    dataset.pop(key, None)
                dataset.pop("workers_per_gpu", None)
                if split != "train":  # the reference builds val/test datasets with test_mode=True
                    dataset.setdefault("test_mode", True)
                out[split] = self._dataset(dataset, f"data.{split}")
        return out

    def _data_v3(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for split in ("train", "val", "test"):
            loader = self.ref.get(f"{split}_dataloader")
            if not isinstance(loader, dict):
                continue
            if split == "train":
                for key in ("batch_size", "num_workers", "persistent_workers"):
                    if key in loader:
                        out[key] = loader[key]
            elif "batch_size" in loader:
                out[f"{split}_batch_size"] = loader["batch_size"]
            if isinstance(loader.get("dataset"), dict):
                out[split] = self._dataset(dict(loader["dataset"]), f"{split}_dataloader.dataset")
        return out

    def _dataset(self, ds: dict[str, Any], where: str) -> dict[str, Any]:
        for key in ("dataset", "datasets"):  # RepeatDataset / ConcatDataset / ClassBalancedDataset
            if isinstance(ds.get(key), dict):
                ds[key] = self._dataset(dict(ds[key]), f"{where}.{key}")
            elif isinstance(ds.get(key), (list, tuple)):
                ds[key] = [self._dataset(dict(d), f"{where}.{key}[{i}]") for i, d in enumerate(ds[key])]
        prefix = ds.pop("data_prefix", None)
        if isinstance(prefix, dict):
            for old, new in (("img", "img_prefix"), ("img_path", "img_prefix"), ("seg", "seg_prefix")):
                if old in prefix:
                    ds[new] = prefix[old]
        filter_cfg = ds.pop("filter_cfg", None)
        if isinstance(filter_cfg, dict):
            for key in ("filter_empty_gt", "min_size"):
                if key in filter_cfg:
                    ds[key] = filter_cfg[key]
        metainfo = ds.pop("metainfo", None)
        if isinstance(metainfo, dict) and "classes" in metainfo:
            ds["classes"] = list(metainfo["classes"])
        for key in ("backend_args", "file_client_args"):
            ds.pop(key, None)
        if isinstance(ds.get("pipeline"), (list, tuple)):
            ds["pipeline"] = self._pipeline(ds["pipeline"], f"{where}.pipeline", top=True)
        return ds

    def _pipeline(self, steps: Any, where: str, top: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, step in enumerate(steps):
            if not isinstance(step, dict) or "type" not in step:
                raise ConfigError(
                    f"{self.source}: {where}[{i}]: a pipeline step must be a dict with a 'type'"
                )
            step = dict(step)
            kind = step["type"]
            ratio_range = step.get("ratio_range")
            for key in ("file_client_args", "backend_args"):
                step.pop(key, None)
            if kind in _FORMAT_STEPS:
                continue
            if kind == "Collect":
                meta = step.get("meta_keys")
                step = {"type": "PackDetInputs"}
                if meta:
                    self.notes.append(
                        f"{where}[{i}]: Collect meta_keys dropped (PackDetInputs keeps its own)"
                    )
            elif kind == "PackDetInputs":
                step = {"type": "PackDetInputs"}
            elif kind == "Resize" and "scale" in step:
                step["img_scale"] = step.pop("scale")
            elif kind == "RandomResize":  # 3.x: a range of scales, or one scale times a ratio
                scale = step.pop("scale")
                step = {"type": "Resize", "img_scale": scale, "keep_ratio": step.get("keep_ratio", False)}
                if ratio_range is not None:
                    step["ratio_range"] = list(ratio_range)
                else:
                    step["multiscale_mode"] = "range"
            elif kind == "RandomChoiceResize":  # 3.x: one of the scales
                step = {
                    "type": "Resize",
                    "img_scale": step["scales"],
                    "multiscale_mode": "value",
                    "keep_ratio": step.get("keep_ratio", False),
                }
            elif kind == "RandomFlip" and "prob" in step:
                step["flip_ratio"] = step.pop("prob")
            elif kind == "MultiScaleFlipAug":
                if "scale" in step:
                    step["img_scale"] = step.pop("scale")
                step["transforms"] = self._pipeline(
                    step.get("transforms", []), f"{where}[{i}].transforms", False
                )
                out.append(step)
                continue
            if step["type"] == "PackDetInputs" and self.norm is not None:
                out.extend(self._preprocessor_steps(out))
            out.append(step)
        return out

    def _preprocessor_steps(self, before: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """3.x normalises and pads in the model's data_preprocessor; detcore does it in the pipeline."""
        assert self.norm is not None
        steps: list[dict[str, Any]] = []
        kinds = {s["type"] for s in before}
        if "Normalize" not in kinds and "mean" in self.norm:
            steps.append(
                {
                    "type": "Normalize",
                    "mean": list(self.norm["mean"]),
                    "std": list(self.norm.get("std", [1.0] * 3)),
                    "to_rgb": bool(self.norm.get("bgr_to_rgb", False)),
                }
            )
        divisor = int(self.norm.get("pad_size_divisor", 1))
        if "Pad" not in kinds and divisor > 1:
            steps.append({"type": "Pad", "size_divisor": divisor})
        return steps

    # -- evaluation, optimisation, schedule ---------------------------------------------------------

    def evaluation(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.style == "3.x":
            evaluator = self.ref.get("val_evaluator")
            if isinstance(evaluator, dict):
                ev = {k: v for k, v in evaluator.items() if k not in ("backend_args", "format_only")}
                if isinstance(ev.get("metric"), str):
                    ev["metric"] = [ev["metric"]]
                out["evaluator"] = ev
            loop = self.ref.get("train_cfg")
            if isinstance(loop, dict) and "val_interval" in loop:
                out["evaluation"] = {"interval": loop["val_interval"]}
            return out
        ev = self.ref.get("evaluation")
        if not isinstance(ev, dict):
            return out
        ev = dict(ev)
        if "interval" in ev:
            out["evaluation"] = {"interval": ev.pop("interval")}
        metric = ev.pop("metric", None)
        save_best = ev.pop("save_best", None)
        self.save_best = save_best  # goes into checkpoint_config (see runtime)
        if metric is not None:
            metric_type = self._metric_type()
            out["evaluator"] = {
                "type": metric_type,
                "metric": [metric] if isinstance(metric, str) else list(metric),
            }
            for key in ("classwise", "proposal_nums", "iou_thrs", "iou_thr"):
                if key in ev:
                    out["evaluator"]["iou_thrs" if key == "iou_thr" else key] = ev.pop(key)
        if ev:
            self.notes.append(f"evaluation: not imported: {', '.join(ev)}")
        return out

    def _metric_type(self) -> str:
        data = self.ref.get("data", {})
        ds = data.get("val") or data.get("test") or {}
        while isinstance(ds, dict) and isinstance(ds.get("dataset"), dict):
            ds = ds["dataset"]
        kind = str(ds.get("type", "CocoDataset")) if isinstance(ds, dict) else "CocoDataset"
        return "VOCMetric" if "VOC" in kind else "CocoMetric"

    def optimizer(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.style == "3.x":
            wrapper = self.ref.get("optim_wrapper")
            if not isinstance(wrapper, dict):
                return out
            if isinstance(wrapper.get("optimizer"), dict):
                out["optimizer"] = dict(wrapper["optimizer"])
                if isinstance(wrapper.get("paramwise_cfg"), dict):
                    out["optimizer"]["paramwise_cfg"] = wrapper["paramwise_cfg"]
            opt_cfg: dict[str, Any] = {}
            if wrapper.get("clip_grad"):
                opt_cfg["grad_clip"] = wrapper["clip_grad"]
            if int(wrapper.get("accumulative_counts", 1)) > 1:
                opt_cfg["accumulate"] = int(wrapper["accumulative_counts"])
            out["optimizer_config"] = opt_cfg
            if wrapper.get("type") == "AmpOptimWrapper":
                out["amp"] = {"enabled": True, "dtype": "float16"}
            return out
        if isinstance(self.ref.get("optimizer"), dict):
            out["optimizer"] = dict(self.ref["optimizer"])
        oc = self.ref.get("optimizer_config")
        if isinstance(oc, dict):
            opt_cfg = {}
            if oc.get("grad_clip"):
                opt_cfg["grad_clip"] = oc["grad_clip"]
            if int(oc.get("cumulative_iters", 1)) > 1:
                opt_cfg["accumulate"] = int(oc["cumulative_iters"])
            rest = [k for k in oc if k not in ("grad_clip", "cumulative_iters", "type")]
            if rest:
                self.notes.append(f"optimizer_config: not imported: {', '.join(rest)}")
            out["optimizer_config"] = opt_cfg
        return out

    def lr_config(self) -> dict[str, Any]:
        if self.style == "3.x":
            return self._param_scheduler()
        lr = self.ref.get("lr_config")
        if not isinstance(lr, dict):
            return {}
        lr = dict(lr)
        policy = str(lr.get("policy", "step"))
        lr["policy"] = {"CosineAnnealing": "cosine", "Step": "step", "Poly": "poly", "Fixed": "fixed"}.get(
            policy, policy.lower()
        )
        return lr

    def _param_scheduler(self) -> dict[str, Any]:
        schedulers = self.ref.get("param_scheduler")
        if isinstance(schedulers, dict):
            schedulers = [schedulers]
        if not isinstance(schedulers, (list, tuple)):
            return {}
        lr: dict[str, Any] = {}
        for s in schedulers:
            kind = s.get("type")
            if kind in ("LinearLR", "ConstantLR") and not s.get("by_epoch", True):
                lr["warmup"] = "linear" if kind == "LinearLR" else "constant"
                lr["warmup_iters"] = int(s.get("end", 0)) - int(s.get("begin", 0))
                lr["warmup_ratio"] = s.get("start_factor", s.get("factor", 1.0 / 3))
            elif kind == "MultiStepLR":
                lr.update(policy="step", step=list(s["milestones"]), gamma=s.get("gamma", 0.1))
            elif kind == "StepLR":
                lr.update(policy="step", step=s["step_size"], gamma=s.get("gamma", 0.1))
            elif kind == "CosineAnnealingLR":
                lr.update(policy="cosine", min_lr=s.get("eta_min", 0.0))
            elif kind == "PolyLR":
                lr.update(policy="poly", power=s.get("power", 1.0), min_lr=s.get("eta_min", 0.0))
            else:
                self.notes.append(
                    f"param_scheduler: {kind} (by_epoch={s.get('by_epoch', True)}) not imported"
                )
        return lr

    def runner(self) -> dict[str, Any]:
        if self.style == "3.x":
            loop = self.ref.get("train_cfg")
            if not isinstance(loop, dict):
                return {}
            if loop.get("type") == "IterBasedTrainLoop":
                return {"runner": {"type": "IterBasedRunner", "max_iters": loop["max_iters"]}}
            return {"runner": {"type": "EpochBasedRunner", "max_epochs": loop.get("max_epochs", 12)}}
        if isinstance(self.ref.get("runner"), dict):
            return {"runner": dict(self.ref["runner"])}
        if "total_epochs" in self.ref:
            return {"runner": {"type": "EpochBasedRunner", "max_epochs": self.ref["total_epochs"]}}
        return {}

    def runtime(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ref = self.ref
        ckpt = ref.get("checkpoint_config")
        log = ref.get("log_config")
        hooks = ref.get("default_hooks") if isinstance(ref.get("default_hooks"), dict) else {}
        ckpt = hooks.get("checkpoint", ckpt)
        log = hooks.get("logger", log)
        if isinstance(ckpt, dict):
            out["checkpoint_config"] = {
                k: ckpt[k] for k in ("interval", "max_keep_ckpts", "save_best") if ckpt.get(k) is not None
            }
        if self.save_best:
            out.setdefault("checkpoint_config", {})["save_best"] = self.save_best
        if isinstance(log, dict):
            out["log_config"] = {"interval": log.get("interval", 50)}
            names = {h.get("type") for h in log.get("hooks", []) if isinstance(h, dict)}
            out["log_config"]["tensorboard"] = "TensorboardLoggerHook" in names
        if isinstance(ref.get("custom_hooks"), (list, tuple)):
            hooks_out = []
            for h in ref["custom_hooks"]:
                if isinstance(h, dict) and h.get("type") in _BUILT_IN_CHECKS:
                    self.notes.append(f"custom_hooks: {h['type']} dropped ({_BUILT_IN_CHECKS[h['type']]})")
                else:
                    hooks_out.append(dict(h))
            out["custom_hooks"] = hooks_out
        if isinstance(ref.get("fp16"), dict):
            out["amp"] = {"enabled": True, "dtype": "float16"}
        if isinstance(ref.get("auto_scale_lr"), dict):
            out["auto_scale_lr"] = dict(ref["auto_scale_lr"])
        return out


def _to_toml_values(node: Any) -> Any:
    """Tuples -> lists, ``None`` entries dropped (TOML has no null)."""
    if isinstance(node, dict):
        return {str(k): _to_toml_values(v) for k, v in node.items() if v is not None}
    if isinstance(node, (list, tuple)):
        return [_to_toml_values(v) for v in node if v is not None]
    return node


_NOT_COMPONENTS = {"init_cfg", "nms", "runner", "lr_config", "optimizer_config", "amp", "auto_scale_lr"}


def _plugins_and_unknown(data: dict[str, Any], registry: Any) -> tuple[list[str], list[tuple[str, str]]]:
    """The plugins that offer the config's types, and ``(type, where)`` for those none offers."""
    plugins: set[str] = set()
    unknown: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            name = node.get("type")
            if isinstance(name, str):
                entries = registry.find(name)
                if not entries:
                    unknown.append((name, where))
                for e in entries:
                    if not e.plugin.startswith("detcore"):
                        plugins.add(e.plugin)
            for k, v in node.items():
                if k not in _NOT_COMPONENTS:
                    walk(v, f"{where}.{k}" if where else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk({k: v for k, v in data.items() if k not in _NOT_COMPONENTS}, "")
    return sorted(plugins), unknown
