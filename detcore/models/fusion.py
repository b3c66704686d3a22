"""Inference-time folding of eval-mode BatchNorm into the convolution before it (``fuse_conv_bn``).

An eval BatchNorm is the affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` per channel, so a
``Conv2d`` followed by it equals one ``Conv2d`` with weight ``W * s`` and bias ``(b - mean) * s + beta``
(``s = gamma / sqrt(var + eps)``). The pairs are found in registration order (a plain ``nn.Conv2d``
child directly followed by a ``_BatchNorm`` child of matching width, as ResNet blocks, downsample
``Sequential``\\ s and ``ConvModule`` register them); :func:`fuse_detector_conv_bn` only keeps the fused
model when its features and dense-head outputs match the original's on a probe input.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: parts whose outputs the probe compares (the only ones fused)
PROBED_PARTS = ("backbone", "neck", "bbox_head", "rpn_head")


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and not conv._forward_pre_hooks
        and not hasattr(conv, "parametrizations")
        and isinstance(bn, _BatchNorm)
        and not bn.training
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv2d, bn: _BatchNorm) -> None:
    """Fold the eval-mode ``bn`` (applied to ``conv``'s output) into ``conv``'s weight and bias in place."""
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    conv.weight.copy_(weight.to(conv.weight.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(bias.to(conv.bias.dtype))


def fuse_conv_bn(module: nn.Module) -> int:
    """Fold every (Conv2d, eval BatchNorm) child pair of ``module`` and its descendants in place; the
    BatchNorm becomes ``nn.Identity``. Returns the number of pairs folded."""
    count = 0
    last_conv: nn.Module | None = None
    for name, child in list(module.named_children()):
        if last_conv is not None and _foldable(last_conv, child):
            fold_bn_into_conv(last_conv, child)
            setattr(module, name, nn.Identity())
            count += 1
            last_conv = None
            continue
        count += fuse_conv_bn(child)
        last_conv = child if type(child) is nn.Conv2d else None
    return count


def _probe_outputs(model: nn.Module, imgs: torch.Tensor) -> list[torch.Tensor]:
    feats = model.extract_feat(imgs)
    outs: list[Any] = list(feats)
    for name in ("bbox_head", "rpn_head"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module) and hasattr(head, "predict_by_feat"):
            outs.append(head(feats))
    flat: list[torch.Tensor] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            flat.append(obj.float())
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                walk(o)

    walk(outs)
    return flat


@torch.no_grad()
def fuse_detector_conv_bn(
    model: nn.Module, probe_size: int = 128, rtol: float = 1e-4
) -> tuple[nn.Module, int]:
    """``(model, n)``: a copy of the eval-mode detector ``model`` with ``n`` Conv-BN pairs of its
    backbone, neck and dense heads folded, or ``model`` itself (``n = 0``) when nothing folds or the
    copy's features / dense-head outputs on a seeded ``(1, 3, probe_size, probe_size)`` input differ
    from the original's by more than ``rtol`` of each output's largest magnitude."""
    if model.training:
        raise ValueError("fuse_detector_conv_bn: the model is in training mode (BatchNorm uses batch stats)")
    fused = copy.deepcopy(model)
    count = sum(fuse_conv_bn(getattr(fused, name)) for name in PROBED_PARTS if hasattr(fused, name))
    if count == 0:
        return model, 0
    param = next(model.parameters())
    generator = torch.Generator().manual_seed(0)
    imgs = torch.randn(1, 3, probe_size, probe_size, generator=generator).to(param.device)
    try:
        before, after = _probe_outputs(model, imgs), _probe_outputs(fused, imgs)
    except Exception:  # noqa: BLE001 - a model the probe cannot run stays as it is
        return model, 0
    for a, b in zip(before, after):
        if a.shape != b.shape or (a - b).abs().max() > rtol * a.abs().max() + 1e-6:
            return model, 0
    return fused, count


def inference_fast_path(
    model: nn.Module,
    precision: Any = "fp32",
    device: str | torch.device | None = None,
    fuse: bool = True,
    channels_last: bool | None = True,
    where: str = "inference",
) -> nn.Module:
    """The eval-mode detector every inference entry point runs (``detcore infer``, ``detcore test``,
    ``detcore benchmark``, the demo's pictures, ``init_detector(fuse_conv_bn=True)``).

    ``fuse`` folds the Conv-BN pairs (:func:`fuse_detector_conv_bn`: only when the result matches within
    float tolerance; the folded model is a copy and ``model`` keeps its precision); then
    :func:`detcore.models.precision.set_precision` sets ``precision`` with ``channels_last`` (``None``:
    with bf16 only). The folding
    probe runs in fp32, so a ``model`` that already computes in bf16 is probed without its bf16 regions.
    The result has ``fused_conv_bn`` (pairs folded) and ``precision`` (what runs). When nothing folds the
    result is ``model`` itself with its precision and layout changed.
    """
    from detcore.models.precision import set_precision

    model.eval()
    count = 0
    if fuse:
        original, had_regions = model, bool(getattr(model, "_precision_handles", None))
        if had_regions:
            was = original.precision
            set_precision(original, "fp32", device, channels_last=False, where=where)  # probe in fp32
        model, count = fuse_detector_conv_bn(original)
        if had_regions and model is not original:
            set_precision(original, was, device, where=where)  # the caller's model back as it was
    set_precision(model, precision, device, channels_last=channels_last, where=where)
    model.fused_conv_bn = count
    return model
