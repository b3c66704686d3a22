// Device-independent outer loop of the deformable convolutions, shared by the CPU and CUDA entry points.
//
// Per image, the forward pass is the device's deformable im2col followed by a grouped GEMM with the weight;
// the backward pass is a GEMM to the column gradient, the device's col2im (input gradient) and col2im_coord
// (offset and mask gradients), then im2col again and a GEMM for the weight gradient. `Kernels` supplies the
// three per-image kernels for one device:
//
//   template <typename T> void im2col(const T* input, const T* offset, const T* mask, const DeformShape& s,
//                                     T* columns) const;
//   template <typename T> void col2im(const T* grad_cols, const T* offset, const T* mask, const DeformShape& s,
//                                     T* grad_input) const;
//   template <typename T> void col2im_coord(const T* grad_cols, const T* input, const T* offset, const T* mask,
//                                           const DeformShape& s, T* grad_offset, T* grad_mask) const;
//
// with `mask` and `grad_mask` null for DCNv1. Columns are (C * kh * kw, Ho * Wo) for one image.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "common/deform_common.h"

namespace detcore {

// Contiguous operands and the geometry of one deformable convolution call.
struct DeformProblem {
  at::Tensor input, weight, offset, mask;  // mask undefined for DCNv1
  DeformShape shape;
  int64_t groups;

  DeformProblem(const at::Tensor& input_, const at::Tensor& weight_, const at::Tensor& offset_,
                const c10::optional<at::Tensor>& mask_, int64_t stride_h, int64_t stride_w, int64_t pad_h,
                int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups_, int64_t deform_groups)
      : input(input_.contiguous()), weight(weight_.contiguous()), offset(offset_.contiguous()), groups(groups_) {
    if (mask_.has_value() && mask_->defined()) mask = mask_->contiguous();
    shape.channels = input.size(1);
    shape.height = input.size(2);
    shape.width = input.size(3);
    shape.out_h = offset.size(2);
    shape.out_w = offset.size(3);
    shape.kernel_h = weight.size(2);
    shape.kernel_w = weight.size(3);
    shape.stride_h = stride_h;
    shape.stride_w = stride_w;
    shape.pad_h = pad_h;
    shape.pad_w = pad_w;
    shape.dil_h = dil_h;
    shape.dil_w = dil_w;
    shape.deform_groups = deform_groups;
  }

  bool has_mask() const { return mask.defined(); }
  int64_t taps() const { return shape.kernel_h * shape.kernel_w; }
  int64_t positions() const { return shape.out_h * shape.out_w; }
  // Rows of one group's column matrix: (C / groups) * kh * kw.
  int64_t group_rows() const { return (shape.channels / groups) * taps(); }

  template <typename T>
  const T* mask_of(int64_t b) const {
    return has_mask() ? mask[b].data_ptr<T>() : nullptr;
  }
};

template <typename Kernels>
at::Tensor deform_conv2d_forward(const DeformProblem& p, const c10::optional<at::Tensor>& bias,
                                 const Kernels& kernels) {
  const int64_t batch = p.input.size(0), c_out = p.weight.size(0), L = p.positions();
  at::Tensor out = at::zeros({batch, c_out, p.shape.out_h, p.shape.out_w}, p.input.options());
  if (out.numel() > 0 && p.input.numel() > 0) {
    at::Tensor columns = at::empty({p.shape.channels * p.taps(), L}, p.input.options());
    const at::Tensor w = p.weight.view({p.groups, c_out / p.groups, p.group_rows()});
    AT_DISPATCH_FLOATING_TYPES(p.input.scalar_type(), "detcore_deform_conv2d", [&] {
      for (int64_t b = 0; b < batch; ++b) {
        kernels.im2col(p.input[b].data_ptr<scalar_t>(), p.offset[b].data_ptr<scalar_t>(), p.mask_of<scalar_t>(b),
                       p.shape, columns.data_ptr<scalar_t>());
        at::Tensor ob = out[b].view({p.groups, c_out / p.groups, L});
        at::bmm_out(ob, w, columns.view({p.groups, p.group_rows(), L}));
      }
    });
  }
  if (bias.has_value() && bias->defined()) out.add_(bias->view({1, c_out, 1, 1}));
  return out;
}

// Returns (grad_input, grad_weight, grad_offset, grad_mask, grad_bias); grad_mask is empty for DCNv1.
template <typename Kernels>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward(
    const at::Tensor& grad_, const DeformProblem& p, const Kernels& kernels) {
  const at::Tensor grad = grad_.contiguous();
  const int64_t batch = p.input.size(0), c_out = p.weight.size(0), L = p.positions(), rows = p.group_rows();
  at::Tensor grad_input = at::zeros_like(p.input);
  at::Tensor grad_offset = at::zeros_like(p.offset);
  at::Tensor grad_mask = p.has_mask() ? at::zeros_like(p.mask) : at::zeros({0}, p.input.options());
  at::Tensor grad_weight = at::zeros_like(p.weight);
  at::Tensor grad_bias = at::zeros({c_out}, p.input.options());
  if (grad.numel() == 0 || p.input.numel() == 0) return {grad_input, grad_weight, grad_offset, grad_mask, grad_bias};
  grad_bias = grad.sum({0, 2, 3});
  at::Tensor columns = at::empty({p.shape.channels * p.taps(), L}, p.input.options());
  at::Tensor grad_cols = at::empty({p.shape.channels * p.taps(), L}, p.input.options());
  const at::Tensor w = p.weight.view({p.groups, c_out / p.groups, rows});
  at::Tensor gw = grad_weight.view({p.groups, c_out / p.groups, rows});
  AT_DISPATCH_FLOATING_TYPES(p.input.scalar_type(), "detcore_deform_conv2d_backward", [&] {
    for (int64_t b = 0; b < batch; ++b) {
      const at::Tensor gb = grad[b].view({p.groups, c_out / p.groups, L});
      at::Tensor gcv = grad_cols.view({p.groups, rows, L});
      at::bmm_out(gcv, w.transpose(1, 2), gb);
      const scalar_t* input = p.input[b].data_ptr<scalar_t>();
      const scalar_t* offset = p.offset[b].data_ptr<scalar_t>();
      const scalar_t* mask = p.mask_of<scalar_t>(b);
      kernels.col2im(grad_cols.data_ptr<scalar_t>(), offset, mask, p.shape, grad_input[b].data_ptr<scalar_t>());
      kernels.col2im_coord(grad_cols.data_ptr<scalar_t>(), input, offset, mask, p.shape,
                           grad_offset[b].data_ptr<scalar_t>(),
                           p.has_mask() ? grad_mask[b].data_ptr<scalar_t>() : nullptr);
      kernels.im2col(input, offset, mask, p.shape, columns.data_ptr<scalar_t>());
      gw.baddbmm_(gb, columns.view({p.groups, rows, L}).transpose(1, 2));
    }
  });
  return {grad_input, grad_weight, grad_offset, grad_mask, grad_bias};
}

}  // namespace detcore
