// ATen glue for the CUDA kernels (compiled only when torch has CUDA; see setup.py).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <vector>

#include "../deform_driver.h"
#include "../ops.h"
#include "box_overlaps_kernels.cuh"
#include "deform_kernels.cuh"
#include "deform_roi_pool_kernels.cuh"
#include "focal_kernels.cuh"
#include "nms_kernels.cuh"
#include "roi_kernels.cuh"

namespace detcore {
namespace {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)));
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void check_cuda(const char* op, std::initializer_list<const at::Tensor*> tensors) {
  for (const at::Tensor* t : tensors)
    TORCH_CHECK(!t->defined() || t->is_cuda(), op, ": all tensors must be CUDA tensors, got one on ", t->device());
}

template <typename T>
const T* opt_ptr(const c10::optional<at::Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

}  // namespace

at::Tensor nms_cuda(const at::Tensor& boxes_, const at::Tensor& scores_, double iou_threshold) {
  check_boxes_scores("nms", boxes_, scores_);
  check_cuda("nms", {&boxes_, &scores_});
  const c10::cuda::CUDAGuard guard(boxes_.device());
  const int64_t n = boxes_.size(0);
  if (n == 0) return at::empty({0}, boxes_.options().dtype(at::kLong));
  const at::Tensor order = std::get<1>(scores_.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted = boxes_.index_select(0, order).contiguous();
  const int64_t col_blocks = (n + kNmsBlock - 1) / kNmsBlock;
  at::Tensor mask = at::empty({n * col_blocks}, boxes_.options().dtype(at::kLong));
  const dim3 grid(static_cast<unsigned int>(col_blocks), static_cast<unsigned int>(col_blocks));
  AT_DISPATCH_FLOATING_TYPES(sorted.scalar_type(), "detcore_nms_cuda", [&] {
    nms_mask_kernel<scalar_t><<<grid, kNmsBlock, 0, current_stream()>>>(
        static_cast<int>(n), static_cast<scalar_t>(iou_threshold), sorted.data_ptr<scalar_t>(),
        reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>()));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor mask_cpu = mask.cpu();
  const unsigned long long* m = reinterpret_cast<const unsigned long long*>(mask_cpu.data_ptr<int64_t>());
  std::vector<unsigned long long> removed(col_blocks, 0);
  at::Tensor keep = at::empty({n}, at::TensorOptions().dtype(at::kLong));
  int64_t* kp = keep.data_ptr<int64_t>();
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t blk = i / kNmsBlock, bit = i % kNmsBlock;
    if (removed[blk] & (1ULL << bit)) continue;
    kp[count++] = i;
    const unsigned long long* row = m + i * col_blocks;
    for (int64_t j = blk; j < col_blocks; ++j) removed[j] |= row[j];
  }
  return order.index_select(0, keep.narrow(0, 0, count).to(order.device()));
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(const at::Tensor& boxes_, const at::Tensor& scores_,
                                                 double iou_threshold, double sigma, double min_score,
                                                 int64_t method) {
  check_boxes_scores("soft_nms", boxes_, scores_);
  check_cuda("soft_nms", {&boxes_, &scores_});
  TORCH_CHECK(method >= 0 && method <= 2, "soft_nms: method must be 0, 1 or 2, got ", method);
  const c10::cuda::CUDAGuard guard(boxes_.device());
  const int64_t n = boxes_.size(0);
  const at::Tensor boxes = boxes_.contiguous();
  at::Tensor work = scores_.contiguous().clone();
  at::Tensor alive = at::empty({n}, boxes.options().dtype(at::kByte));
  at::Tensor picked = at::empty({n}, boxes.options().dtype(at::kLong));
  at::Tensor picked_scores = at::empty({n}, boxes.options());
  at::Tensor count = at::zeros({1}, boxes.options().dtype(at::kInt));
  if (n > 0) {
    constexpr int threads = 512;
    AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "detcore_soft_nms_cuda", [&] {
      const size_t smem = threads * (sizeof(scalar_t) + sizeof(int));
      soft_nms_kernel<scalar_t><<<1, threads, smem, current_stream()>>>(
          static_cast<int>(n), boxes.data_ptr<scalar_t>(), work.data_ptr<scalar_t>(), alive.data_ptr<uint8_t>(),
          static_cast<scalar_t>(iou_threshold), static_cast<scalar_t>(sigma), static_cast<scalar_t>(min_score),
          static_cast<int>(method), picked.data_ptr<int64_t>(), picked_scores.data_ptr<scalar_t>(),
          count.data_ptr<int>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const int64_t k = count.item<int>();
  const at::Tensor keep = picked.narrow(0, 0, k);
  const at::Tensor dets = at::cat({boxes.index_select(0, keep), picked_scores.narrow(0, 0, k).unsqueeze(1)}, 1);
  return {dets, keep};
}

at::Tensor roi_align_cuda(const at::Tensor& input_, const at::Tensor& rois_, double spatial_scale, int64_t pooled_h,
                          int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  check_rois("roi_align", input_, rois_);
  check_cuda("roi_align", {&input_, &rois_});
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, "roi_align: output size must be positive");
  const c10::cuda::CUDAGuard guard(input_.device());
  const at::Tensor input = input_.contiguous(), rois = rois_.contiguous();
  at::Tensor out = at::zeros({rois.size(0), input.size(1), pooled_h, pooled_w}, input.options());
  const int64_t total = out.numel();
  if (total == 0 || input.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_roi_align_cuda", [&] {
    roi_align_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), input.size(0),
        input.size(1), input.size(2), input.size(3), pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale),
        sampling_ratio, aligned);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad_, const at::Tensor& rois_, double spatial_scale,
                                   int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels,
                                   int64_t height, int64_t width, int64_t sampling_ratio, bool aligned) {
  check_cuda("roi_align backward", {&grad_, &rois_});
  const c10::cuda::CUDAGuard guard(grad_.device());
  const at::Tensor grad = grad_.contiguous(), rois = rois_.contiguous();
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad.options());
  const int64_t total = grad.numel();
  if (total == 0 || grad_input.numel() == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detcore_roi_align_backward_cuda", [&] {
    roi_align_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, grad.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), batch,
        channels, height, width, pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale), sampling_ratio, aligned);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cuda(const at::Tensor& input_, const at::Tensor& rois_,
                                                 double spatial_scale, int64_t pooled_h, int64_t pooled_w) {
  check_rois("roi_pool", input_, rois_);
  check_cuda("roi_pool", {&input_, &rois_});
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, "roi_pool: output size must be positive");
  const c10::cuda::CUDAGuard guard(input_.device());
  const at::Tensor input = input_.contiguous(), rois = rois_.contiguous();
  at::Tensor out = at::zeros({rois.size(0), input.size(1), pooled_h, pooled_w}, input.options());
  at::Tensor argmax = at::full(out.sizes(), -1, input.options().dtype(at::kLong));
  const int64_t total = out.numel();
  if (total == 0 || input.numel() == 0) return {out, argmax};
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_roi_pool_cuda", [&] {
    roi_pool_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
        argmax.data_ptr<int64_t>(), input.size(0), input.size(1), input.size(2), input.size(3), pooled_h, pooled_w,
        static_cast<scalar_t>(spatial_scale));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, argmax};
}

at::Tensor roi_pool_backward_cuda(const at::Tensor& grad_, const at::Tensor& rois_, const at::Tensor& argmax_,
                                  double /*spatial_scale*/, int64_t pooled_h, int64_t pooled_w, int64_t batch,
                                  int64_t channels, int64_t height, int64_t width) {
  check_cuda("roi_pool backward", {&grad_, &rois_, &argmax_});
  const c10::cuda::CUDAGuard guard(grad_.device());
  const at::Tensor grad = grad_.contiguous(), rois = rois_.contiguous(), argmax = argmax_.contiguous();
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad.options());
  const int64_t total = grad.numel();
  if (total == 0 || grad_input.numel() == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detcore_roi_pool_backward_cuda", [&] {
    roi_pool_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, grad.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), argmax.data_ptr<int64_t>(),
        grad_input.data_ptr<scalar_t>(), batch, channels, height, width, pooled_h, pooled_w);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

namespace {

// The per-image kernels the shared driver (deform_driver.h) launches on the current stream.
struct CudaDeformKernels {
  template <typename T>
  void im2col(const T* input, const T* offset, const T* mask, const DeformShape& s, T* columns) const {
    const int64_t total = s.channels * s.kernel_h * s.kernel_w * s.out_h * s.out_w;
    deform_im2col_kernel<T><<<blocks_for(total), kThreads, 0, current_stream()>>>(total, input, offset, mask, s,
                                                                                   columns);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <typename T>
  void col2im(const T* grad_cols, const T* offset, const T* mask, const DeformShape& s, T* grad_input) const {
    const int64_t total = s.channels * s.kernel_h * s.kernel_w * s.out_h * s.out_w;
    deform_col2im_kernel<T><<<blocks_for(total), kThreads, 0, current_stream()>>>(total, grad_cols, offset, mask,
                                                                                   s, grad_input);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <typename T>
  void col2im_coord(const T* grad_cols, const T* input, const T* offset, const T* mask, const DeformShape& s,
                    T* grad_offset, T* grad_mask) const {
    const int64_t total = s.deform_groups * s.kernel_h * s.kernel_w * s.out_h * s.out_w;
    deform_col2im_coord_kernel<T><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, grad_cols, input, offset, mask, s, grad_offset, grad_mask);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace

at::Tensor deform_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                              const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& bias,
                              int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                              int64_t dil_w, int64_t groups, int64_t deform_groups) {
  check_deform_args("deform_conv2d", input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h,
                    dil_w, groups, deform_groups);
  check_cuda("deform_conv2d", {&input, &weight, &offset});
  const c10::cuda::CUDAGuard guard(input.device());
  const DeformProblem p(input, weight, offset, mask, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                        deform_groups);
  return deform_conv2d_forward(p, bias, CudaDeformKernels{});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward_cuda(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
    const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
    int64_t deform_groups) {
  check_deform_args("deform_conv2d backward", input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                    dil_h, dil_w, groups, deform_groups);
  check_cuda("deform_conv2d backward", {&grad, &input, &weight, &offset});
  const c10::cuda::CUDAGuard guard(input.device());
  const DeformProblem p(input, weight, offset, mask, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                        deform_groups);
  return deform_conv2d_backward(grad, p, CudaDeformKernels{});
}

at::Tensor sigmoid_focal_loss_cuda(const at::Tensor& logits_, const at::Tensor& targets_,
                                   const c10::optional<at::Tensor>& weight, double gamma, double alpha) {
  check_focal_args("sigmoid_focal_loss", logits_, targets_, weight);
  check_cuda("sigmoid_focal_loss", {&logits_, &targets_});
  const c10::cuda::CUDAGuard guard(logits_.device());
  const at::Tensor logits = logits_.contiguous(), targets = targets_.contiguous();
  const c10::optional<at::Tensor> w =
      (weight.has_value() && weight->defined()) ? c10::optional<at::Tensor>(weight->contiguous()) : c10::nullopt;
  at::Tensor out = at::empty_like(logits);
  const int64_t total = logits.numel();
  if (total == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "detcore_focal_cuda", [&] {
    focal_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, logits.size(1), logits.data_ptr<scalar_t>(), targets.data_ptr<int64_t>(), opt_ptr<scalar_t>(w),
        static_cast<scalar_t>(gamma), static_cast<scalar_t>(alpha), out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor sigmoid_focal_loss_backward_cuda(const at::Tensor& grad_, const at::Tensor& logits_,
                                            const at::Tensor& targets_, const c10::optional<at::Tensor>& weight,
                                            double gamma, double alpha) {
  check_focal_args("sigmoid_focal_loss backward", logits_, targets_, weight);
  check_cuda("sigmoid_focal_loss backward", {&grad_, &logits_, &targets_});
  const c10::cuda::CUDAGuard guard(logits_.device());
  const at::Tensor grad = grad_.contiguous(), logits = logits_.contiguous(), targets = targets_.contiguous();
  const c10::optional<at::Tensor> w =
      (weight.has_value() && weight->defined()) ? c10::optional<at::Tensor>(weight->contiguous()) : c10::nullopt;
  at::Tensor out = at::empty_like(logits);
  const int64_t total = logits.numel();
  if (total == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "detcore_focal_backward_cuda", [&] {
    focal_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, logits.size(1), grad.data_ptr<scalar_t>(), logits.data_ptr<scalar_t>(), targets.data_ptr<int64_t>(),
        opt_ptr<scalar_t>(w), static_cast<scalar_t>(gamma), static_cast<scalar_t>(alpha), out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor box_overlaps_cuda(const at::Tensor& bboxes1_, const at::Tensor& bboxes2_, int64_t mode, bool aligned,
                             double eps) {
  check_box_overlaps_args("box_overlaps", bboxes1_, bboxes2_, mode, aligned);
  check_cuda("box_overlaps", {&bboxes1_, &bboxes2_});
  const c10::cuda::CUDAGuard guard(bboxes1_.device());
  const at::Tensor bboxes1 = bboxes1_.contiguous(), bboxes2 = bboxes2_.contiguous();
  const int64_t m = bboxes1.size(0), n = bboxes2.size(0);
  at::Tensor out = aligned ? at::empty({m}, bboxes1.options()) : at::empty({m, n}, bboxes1.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(bboxes1.scalar_type(), "detcore_box_overlaps_cuda", [&] {
    box_overlaps_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, current_stream()>>>(
        m, n, aligned, bboxes1.data_ptr<scalar_t>(), bboxes2.data_ptr<scalar_t>(), mode, static_cast<scalar_t>(eps),
        out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor deform_roi_pool_cuda(const at::Tensor& input_, const at::Tensor& rois_,
                                const c10::optional<at::Tensor>& offset_, double spatial_scale, int64_t pooled_h,
                                int64_t pooled_w, int64_t sampling_ratio, double gamma) {
  check_deform_roi_pool_args("deform_roi_pool", input_, rois_, offset_, pooled_h, pooled_w);
  const bool has_offset = offset_.has_value() && offset_->defined();
  const at::Tensor offset = has_offset ? offset_->contiguous() : at::Tensor();
  check_cuda("deform_roi_pool", {&input_, &rois_, &offset});
  const c10::cuda::CUDAGuard guard(input_.device());
  const at::Tensor input = input_.contiguous(), rois = rois_.contiguous();
  at::Tensor out = at::zeros({rois.size(0), input.size(1), pooled_h, pooled_w}, input.options());
  const int64_t total = out.numel();
  if (total == 0 || input.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_deform_roi_pool_cuda", [&] {
    deform_roi_pool_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
        has_offset ? offset.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), input.size(0), input.size(1),
        input.size(2), input.size(3), pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale), sampling_ratio,
        static_cast<scalar_t>(gamma));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> deform_roi_pool_backward_cuda(const at::Tensor& grad_, const at::Tensor& input_,
                                                                 const at::Tensor& rois_,
                                                                 const c10::optional<at::Tensor>& offset_,
                                                                 double spatial_scale, int64_t pooled_h,
                                                                 int64_t pooled_w, int64_t sampling_ratio,
                                                                 double gamma) {
  check_deform_roi_pool_args("deform_roi_pool backward", input_, rois_, offset_, pooled_h, pooled_w);
  const bool has_offset = offset_.has_value() && offset_->defined();
  const at::Tensor offset = has_offset ? offset_->contiguous() : at::Tensor();
  check_cuda("deform_roi_pool backward", {&grad_, &input_, &rois_, &offset});
  const c10::cuda::CUDAGuard guard(input_.device());
  const at::Tensor grad = grad_.contiguous(), input = input_.contiguous(), rois = rois_.contiguous();
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == input.size(1) &&
                  grad.size(2) == pooled_h && grad.size(3) == pooled_w,
              "deform_roi_pool backward: grad has shape ", grad.sizes());
  at::Tensor grad_input = at::zeros_like(input);
  at::Tensor grad_offset = has_offset ? at::zeros_like(offset) : at::zeros({0}, input.options());
  const int64_t total = grad.numel();
  if (total == 0 || input.numel() == 0) return {grad_input, grad_offset};
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_deform_roi_pool_backward_cuda", [&] {
    deform_roi_pool_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, grad.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
        has_offset ? offset.data_ptr<scalar_t>() : nullptr, grad_input.data_ptr<scalar_t>(),
        has_offset ? grad_offset.data_ptr<scalar_t>() : nullptr, input.size(0), input.size(1), input.size(2),
        input.size(3), pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale), sampling_ratio,
        static_cast<scalar_t>(gamma));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_input, grad_offset};
}

at::Tensor ps_roi_pool_cuda(const at::Tensor& input_, const at::Tensor& rois_, double spatial_scale,
                            int64_t pooled_h, int64_t pooled_w) {
  check_ps_roi_pool_args("ps_roi_pool", input_, rois_, pooled_h, pooled_w);
  check_cuda("ps_roi_pool", {&input_, &rois_});
  const c10::cuda::CUDAGuard guard(input_.device());
  const at::Tensor input = input_.contiguous(), rois = rois_.contiguous();
  at::Tensor out =
      at::zeros({rois.size(0), input.size(1) / (pooled_h * pooled_w), pooled_h, pooled_w}, input.options());
  const int64_t total = out.numel();
  if (total == 0 || input.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_ps_roi_pool_cuda", [&] {
    ps_roi_pool_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), input.size(0),
        input.size(1), input.size(2), input.size(3), pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor ps_roi_pool_backward_cuda(const at::Tensor& grad_, const at::Tensor& rois_, double spatial_scale,
                                     int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels,
                                     int64_t height, int64_t width) {
  check_cuda("ps_roi_pool backward", {&grad_, &rois_});
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0 && channels % (pooled_h * pooled_w) == 0,
              "ps_roi_pool backward: channels ", channels, " must divide by ", pooled_h, "x", pooled_w);
  const c10::cuda::CUDAGuard guard(grad_.device());
  const at::Tensor grad = grad_.contiguous(), rois = rois_.contiguous();
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad.options());
  const int64_t total = grad.numel();
  if (total == 0 || grad_input.numel() == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detcore_ps_roi_pool_backward_cuda", [&] {
    ps_roi_pool_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, grad.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), batch,
        channels, height, width, pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

}  // namespace detcore
