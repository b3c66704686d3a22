// Operator schemas (namespace "detcore"), CPU registrations, argument checks and the Python module.
// Fake (meta) kernels and autograd formulas are registered from Python in detcore_native/_registration.py.
#include <torch/extension.h>
#include <torch/library.h>

#include "ops.h"

namespace detcore {

void check_boxes_scores(const char* op, const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, op, ": boxes must have shape (N, 4), got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), op, ": scores must have shape (",
              boxes.size(0), ",), got ", scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), op, ": boxes (", boxes.scalar_type(), ") and scores (",
              scores.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(boxes.device() == scores.device(), op, ": boxes are on ", boxes.device(), " but scores on ",
              scores.device());
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()), op, ": boxes must be floating point, got ",
              boxes.scalar_type());
}

void check_rois(const char* op, const at::Tensor& input, const at::Tensor& rois) {
  TORCH_CHECK(input.dim() == 4, op, ": input must have shape (B, C, H, W), got ", input.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op,
              ": rois must have shape (K, 5) as (batch_index, x1, y1, x2, y2), got ", rois.sizes());
  TORCH_CHECK(input.scalar_type() == rois.scalar_type(), op, ": input (", input.scalar_type(), ") and rois (",
              rois.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(input.device() == rois.device(), op, ": input is on ", input.device(), " but rois on ", rois.device());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op, ": input must be floating point, got ",
              input.scalar_type());
}

void check_deform_args(const char* op, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                       const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& bias,
                       int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                       int64_t dil_w, int64_t groups, int64_t deform_groups) {
  TORCH_CHECK(input.dim() == 4, op, ": input must have shape (B, C, H, W), got ", input.sizes());
  TORCH_CHECK(weight.dim() == 4, op, ": weight must have shape (C_out, C_in/groups, kh, kw), got ", weight.sizes());
  TORCH_CHECK(offset.dim() == 4, op, ": offset must have shape (B, 2*dg*kh*kw, Ho, Wo), got ", offset.sizes());
  TORCH_CHECK(stride_h > 0 && stride_w > 0 && dil_h > 0 && dil_w > 0 && pad_h >= 0 && pad_w >= 0, op,
              ": stride and dilation must be positive and padding non-negative");
  TORCH_CHECK(groups > 0 && deform_groups > 0, op, ": groups and deform_groups must be positive");
  const int64_t c = input.size(1), kh = weight.size(2), kw = weight.size(3);
  TORCH_CHECK(c % groups == 0 && weight.size(0) % groups == 0 && weight.size(1) * groups == c, op,
              ": input channels ", c, " and weight ", weight.sizes(), " do not match groups=", groups);
  TORCH_CHECK(c % deform_groups == 0, op, ": input channels ", c, " must divide by deform_groups=", deform_groups);
  const int64_t ho = (input.size(2) + 2 * pad_h - (dil_h * (kh - 1) + 1)) / stride_h + 1;
  const int64_t wo = (input.size(3) + 2 * pad_w - (dil_w * (kw - 1) + 1)) / stride_w + 1;
  TORCH_CHECK(offset.size(0) == input.size(0) && offset.size(1) == 2 * deform_groups * kh * kw &&
                  offset.size(2) == ho && offset.size(3) == wo,
              op, ": offset must have shape (", input.size(0), ", ", 2 * deform_groups * kh * kw, ", ", ho, ", ", wo,
              "), got ", offset.sizes());
  for (const at::Tensor* t : {&weight, &offset}) {
    TORCH_CHECK(t->scalar_type() == input.scalar_type() && t->device() == input.device(), op,
                ": all tensors must share the input's dtype and device (", input.scalar_type(), ", ",
                input.device(), ")");
  }
  if (mask.has_value() && mask->defined()) {
    TORCH_CHECK(mask->dim() == 4 && mask->size(0) == input.size(0) && mask->size(1) == deform_groups * kh * kw &&
                    mask->size(2) == ho && mask->size(3) == wo,
                op, ": mask must have shape (", input.size(0), ", ", deform_groups * kh * kw, ", ", ho, ", ", wo,
                "), got ", mask->sizes());
    TORCH_CHECK(mask->scalar_type() == input.scalar_type() && mask->device() == input.device(), op,
                ": mask must share the input's dtype and device");
  }
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), op, ": bias must have shape (", weight.size(0),
                ",), got ", bias->sizes());
    TORCH_CHECK(bias->scalar_type() == input.scalar_type() && bias->device() == input.device(), op,
                ": bias must share the input's dtype and device");
  }
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op, ": input must be floating point");
}

void check_focal_args(const char* op, const at::Tensor& logits, const at::Tensor& targets,
                      const c10::optional<at::Tensor>& weight) {
  TORCH_CHECK(logits.dim() == 2, op, ": logits must have shape (N, C), got ", logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op, ": logits must be floating point");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0), op, ": targets must have shape (",
              logits.size(0), ",), got ", targets.sizes());
  TORCH_CHECK(targets.scalar_type() == at::kLong, op, ": targets must be int64, got ", targets.scalar_type());
  TORCH_CHECK(targets.device() == logits.device(), op, ": targets are on ", targets.device(), " but logits on ",
              logits.device());
  if (weight.has_value() && weight->defined()) {
    TORCH_CHECK(weight->dim() == 1 && weight->size(0) == logits.size(0), op, ": weight must have shape (",
                logits.size(0), ",), got ", weight->sizes());
    TORCH_CHECK(weight->scalar_type() == logits.scalar_type() && weight->device() == logits.device(), op,
                ": weight must share the logits' dtype and device");
  }
}

void check_box_overlaps_args(const char* op, const at::Tensor& bboxes1, const at::Tensor& bboxes2, int64_t mode,
                             bool aligned) {
  TORCH_CHECK(bboxes1.dim() == 2 && bboxes1.size(1) == 4, op, ": bboxes1 must have shape (M, 4), got ",
              bboxes1.sizes());
  TORCH_CHECK(bboxes2.dim() == 2 && bboxes2.size(1) == 4, op, ": bboxes2 must have shape (N, 4), got ",
              bboxes2.sizes());
  TORCH_CHECK(bboxes1.scalar_type() == bboxes2.scalar_type(), op, ": bboxes1 (", bboxes1.scalar_type(),
              ") and bboxes2 (", bboxes2.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(bboxes1.device() == bboxes2.device(), op, ": bboxes1 are on ", bboxes1.device(), " but bboxes2 on ",
              bboxes2.device());
  TORCH_CHECK(at::isFloatingType(bboxes1.scalar_type()), op, ": boxes must be floating point, got ",
              bboxes1.scalar_type());
  TORCH_CHECK(mode >= 0 && mode <= 2, op, ": mode must be 0 (iou), 1 (iof) or 2 (giou), got ", mode);
  TORCH_CHECK(!aligned || bboxes1.size(0) == bboxes2.size(0), op,
              ": aligned=True needs as many boxes in both sets, got ", bboxes1.size(0), " and ", bboxes2.size(0));
}

void check_deform_roi_pool_args(const char* op, const at::Tensor& input, const at::Tensor& rois,
                                const c10::optional<at::Tensor>& offset, int64_t pooled_h, int64_t pooled_w) {
  check_rois(op, input, rois);
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, op, ": output size must be positive, got ", pooled_h, "x", pooled_w);
  if (offset.has_value() && offset->defined()) {
    TORCH_CHECK(offset->dim() == 4 && offset->size(0) == rois.size(0) && offset->size(1) == 2 &&
                    offset->size(2) == pooled_h && offset->size(3) == pooled_w,
                op, ": offset must have shape (", rois.size(0), ", 2, ", pooled_h, ", ", pooled_w, "), got ",
                offset->sizes());
    TORCH_CHECK(offset->scalar_type() == input.scalar_type() && offset->device() == input.device(), op,
                ": offset must share the input's dtype and device (", input.scalar_type(), ", ", input.device(),
                ")");
  }
}

void check_ps_roi_pool_args(const char* op, const at::Tensor& input, const at::Tensor& rois, int64_t pooled_h,
                            int64_t pooled_w) {
  check_rois(op, input, rois);
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, op, ": output size must be positive, got ", pooled_h, "x", pooled_w);
  TORCH_CHECK(input.size(1) % (pooled_h * pooled_w) == 0, op, ": input channels ", input.size(1),
              " must be output_dim * ", pooled_h, " * ", pooled_w);
}

}  // namespace detcore

TORCH_LIBRARY(detcore, m) {
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def(
      "soft_nms(Tensor boxes, Tensor scores, float iou_threshold, float sigma, float min_score, int method)"
      " -> (Tensor, Tensor)");
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width,"
      " int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, int pooled_width,"
      " int batch_size, int channels, int height, int width, int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "roi_pool(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width)"
      " -> (Tensor, Tensor)");
  m.def(
      "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, int pooled_height,"
      " int pooled_width, int batch_size, int channels, int height, int width) -> Tensor");
  m.def(
      "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor? mask, Tensor? bias, int stride_h,"
      " int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, int groups, int deform_groups)"
      " -> Tensor");
  m.def(
      "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor? mask,"
      " Tensor? bias, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w,"
      " int groups, int deform_groups) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("sigmoid_focal_loss(Tensor logits, Tensor targets, Tensor? weight, float gamma, float alpha) -> Tensor");
  m.def(
      "_sigmoid_focal_loss_backward(Tensor grad, Tensor logits, Tensor targets, Tensor? weight, float gamma,"
      " float alpha) -> Tensor");
  m.def("box_overlaps(Tensor bboxes1, Tensor bboxes2, int mode, bool aligned, float eps) -> Tensor");
  m.def(
      "deform_roi_pool(Tensor input, Tensor rois, Tensor? offset, float spatial_scale, int pooled_height,"
      " int pooled_width, int sampling_ratio, float gamma) -> Tensor");
  m.def(
      "_deform_roi_pool_backward(Tensor grad, Tensor input, Tensor rois, Tensor? offset, float spatial_scale,"
      " int pooled_height, int pooled_width, int sampling_ratio, float gamma) -> (Tensor, Tensor)");
  m.def("ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width) -> Tensor");
  m.def(
      "_ps_roi_pool_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, int pooled_width,"
      " int batch_size, int channels, int height, int width) -> Tensor");
}

#define DETCORE_REGISTER_IMPLS(dev)                                        \
  m.impl("nms", &detcore::nms_##dev);                                      \
  m.impl("soft_nms", &detcore::soft_nms_##dev);                            \
  m.impl("roi_align", &detcore::roi_align_##dev);                          \
  m.impl("_roi_align_backward", &detcore::roi_align_backward_##dev);       \
  m.impl("roi_pool", &detcore::roi_pool_##dev);                            \
  m.impl("_roi_pool_backward", &detcore::roi_pool_backward_##dev);         \
  m.impl("deform_conv2d", &detcore::deform_conv2d_##dev);                  \
  m.impl("_deform_conv2d_backward", &detcore::deform_conv2d_backward_##dev); \
  m.impl("sigmoid_focal_loss", &detcore::sigmoid_focal_loss_##dev);        \
  m.impl("_sigmoid_focal_loss_backward", &detcore::sigmoid_focal_loss_backward_##dev); \
  m.impl("box_overlaps", &detcore::box_overlaps_##dev);                    \
  m.impl("deform_roi_pool", &detcore::deform_roi_pool_##dev);              \
  m.impl("_deform_roi_pool_backward", &detcore::deform_roi_pool_backward_##dev); \
  m.impl("ps_roi_pool", &detcore::ps_roi_pool_##dev);                      \
  m.impl("_ps_roi_pool_backward", &detcore::ps_roi_pool_backward_##dev);

TORCH_LIBRARY_IMPL(detcore, CPU, m) { DETCORE_REGISTER_IMPLS(cpu) }

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(detcore, CUDA, m) { DETCORE_REGISTER_IMPLS(cuda) }
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "detcore native kernels; the ops are registered as torch.ops.detcore.*";
  m.def("cuda_built", []() {
#ifdef WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "True when the CUDA kernels were compiled in.");
}
