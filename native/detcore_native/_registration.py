"""Fake kernels (shape propagation for torch.compile / torch.export) and autograd for torch.ops.detcore."""

from __future__ import annotations

import torch
from torch.library import register_autograd, register_fake

ops = torch.ops.detcore


# ---------------------------------------------------------------- fake kernels
@register_fake("detcore::nms")
def _nms_fake(boxes, scores, iou_threshold):
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4, lambda: "nms: boxes must have shape (N, 4)")
    ctx = torch.library.get_ctx()
    n = ctx.new_dynamic_size()
    return boxes.new_empty((n,), dtype=torch.long)


@register_fake("detcore::soft_nms")
def _soft_nms_fake(boxes, scores, iou_threshold, sigma, min_score, method):
    ctx = torch.library.get_ctx()
    n = ctx.new_dynamic_size()
    return boxes.new_empty((n, 5)), boxes.new_empty((n,), dtype=torch.long)


@register_fake("detcore::roi_align")
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: "roi_align: rois must have shape (K, 5)")
    return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))


@register_fake("detcore::_roi_align_backward")
def _roi_align_backward_fake(grad, rois, spatial_scale, ph, pw, batch, channels, height, width, sr, aligned):
    return grad.new_empty((batch, channels, height, width))


@register_fake("detcore::roi_pool")
def _roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.long)


@register_fake("detcore::_roi_pool_backward")
def _roi_pool_backward_fake(grad, rois, argmax, spatial_scale, ph, pw, batch, channels, height, width):
    return grad.new_empty((batch, channels, height, width))


@register_fake("detcore::deform_conv2d")
def _deform_conv2d_fake(input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups, deform_groups):
    return input.new_empty((input.shape[0], weight.shape[0], offset.shape[2], offset.shape[3]))


@register_fake("detcore::_deform_conv2d_backward")
def _deform_conv2d_backward_fake(grad, input, weight, offset, mask, bias, *args):
    grad_mask = torch.empty_like(mask) if mask is not None else input.new_empty((0,))
    return (
        torch.empty_like(input),
        torch.empty_like(weight),
        torch.empty_like(offset),
        grad_mask,
        input.new_empty((weight.shape[0],)),
    )


@register_fake("detcore::sigmoid_focal_loss")
def _focal_fake(logits, targets, weight, gamma, alpha):
    return torch.empty_like(logits)


@register_fake("detcore::_sigmoid_focal_loss_backward")
def _focal_backward_fake(grad, logits, targets, weight, gamma, alpha):
    return torch.empty_like(logits)


@register_fake("detcore::box_overlaps")
def _box_overlaps_fake(bboxes1, bboxes2, mode, aligned, eps):
    shape = (bboxes1.shape[0],) if aligned else (bboxes1.shape[0], bboxes2.shape[0])
    return bboxes1.new_empty(shape)


@register_fake("detcore::deform_roi_pool")
def _deform_roi_pool_fake(input, rois, offset, spatial_scale, pooled_height, pooled_width, sr, gamma):
    torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: "deform_roi_pool: rois must be (K, 5)")
    return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))


@register_fake("detcore::_deform_roi_pool_backward")
def _deform_roi_pool_backward_fake(grad, input, rois, offset, *args):
    grad_offset = torch.empty_like(offset) if offset is not None else input.new_empty((0,))
    return torch.empty_like(input), grad_offset


@register_fake("detcore::ps_roi_pool")
def _ps_roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: "ps_roi_pool: rois must have shape (K, 5)")
    out_dim = input.shape[1] // (pooled_height * pooled_width)
    return input.new_empty((rois.shape[0], out_dim, pooled_height, pooled_width))


@register_fake("detcore::_ps_roi_pool_backward")
def _ps_roi_pool_backward_fake(grad, rois, spatial_scale, ph, pw, batch, channels, height, width):
    return grad.new_empty((batch, channels, height, width))


# ---------------------------------------------------------------- autograd
def _roi_align_setup(ctx, inputs, output):
    input, rois, spatial_scale, ph, pw, sr, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scale, ph, pw, *input.shape, sr, aligned)


def _roi_align_backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    scale, ph, pw, b, c, h, w, sr, aligned = ctx.args
    grad_input = ops._roi_align_backward(grad, rois, scale, ph, pw, b, c, h, w, sr, aligned)
    return grad_input, None, None, None, None, None, None


register_autograd("detcore::roi_align", _roi_align_backward, setup_context=_roi_align_setup)


def _roi_pool_setup(ctx, inputs, output):
    input, rois, spatial_scale, ph, pw = inputs
    ctx.save_for_backward(rois, output[1])
    ctx.args = (spatial_scale, ph, pw, *input.shape)
    ctx.mark_non_differentiable(output[1])


def _roi_pool_backward(ctx, grad, _grad_argmax):
    rois, argmax = ctx.saved_tensors
    scale, ph, pw, b, c, h, w = ctx.args
    return ops._roi_pool_backward(grad, rois, argmax, scale, ph, pw, b, c, h, w), None, None, None, None


register_autograd("detcore::roi_pool", _roi_pool_backward, setup_context=_roi_pool_setup)


def _deform_setup(ctx, inputs, output):
    input, weight, offset, mask, bias = inputs[:5]
    ctx.save_for_backward(input, weight, offset, mask, bias)
    ctx.args = inputs[5:]
    ctx.has_mask = mask is not None
    ctx.has_bias = bias is not None


def _deform_backward(ctx, grad):
    input, weight, offset, mask, bias = ctx.saved_tensors
    gi, gw, go, gm, gb = ops._deform_conv2d_backward(grad, input, weight, offset, mask, bias, *ctx.args)
    return (
        gi,
        gw,
        go,
        gm if ctx.has_mask else None,
        gb if ctx.has_bias else None,
        *([None] * len(ctx.args)),
    )


register_autograd("detcore::deform_conv2d", _deform_backward, setup_context=_deform_setup)


def _focal_setup(ctx, inputs, output):
    logits, targets, weight, gamma, alpha = inputs
    ctx.save_for_backward(logits, targets, weight)
    ctx.args = (gamma, alpha)


def _focal_backward(ctx, grad):
    logits, targets, weight = ctx.saved_tensors
    grad_logits = ops._sigmoid_focal_loss_backward(grad, logits, targets, weight, *ctx.args)
    return grad_logits, None, None, None, None


register_autograd("detcore::sigmoid_focal_loss", _focal_backward, setup_context=_focal_setup)


def _deform_roi_pool_setup(ctx, inputs, output):
    input, rois, offset = inputs[:3]
    ctx.save_for_backward(input, rois, offset)
    ctx.args = inputs[3:]
    ctx.has_offset = offset is not None


def _deform_roi_pool_backward(ctx, grad):
    input, rois, offset = ctx.saved_tensors
    grad_input, grad_offset = ops._deform_roi_pool_backward(grad, input, rois, offset, *ctx.args)
    return grad_input, None, grad_offset if ctx.has_offset else None, *([None] * len(ctx.args))


register_autograd("detcore::deform_roi_pool", _deform_roi_pool_backward, setup_context=_deform_roi_pool_setup)


def _ps_roi_pool_setup(ctx, inputs, output):
    input, rois, spatial_scale, ph, pw = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scale, ph, pw, *input.shape)


def _ps_roi_pool_backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    return ops._ps_roi_pool_backward(grad, rois, *ctx.args), None, None, None, None


register_autograd("detcore::ps_roi_pool", _ps_roi_pool_backward, setup_context=_ps_roi_pool_setup)
