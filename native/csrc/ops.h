// Declarations of the detcore native kernels (CPU always, CUDA when built with WITH_CUDA).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace detcore {

#define DETCORE_DECLARE_OPS(dev)                                                                                  \
  at::Tensor nms_##dev(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);                \
  std::tuple<at::Tensor, at::Tensor> soft_nms_##dev(const at::Tensor& boxes, const at::Tensor& scores,          \
                                                    double iou_threshold, double sigma, double min_score,       \
                                                    int64_t method);                                            \
  at::Tensor roi_align_##dev(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,             \
                             int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned);         \
  at::Tensor roi_align_backward_##dev(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,     \
                                      int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels,      \
                                      int64_t height, int64_t width, int64_t sampling_ratio, bool aligned);     \
  std::tuple<at::Tensor, at::Tensor> roi_pool_##dev(const at::Tensor& input, const at::Tensor& rois,           \
                                                    double spatial_scale, int64_t pooled_h, int64_t pooled_w);  \
  at::Tensor roi_pool_backward_##dev(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,  \
                                     double spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t batch,   \
                                     int64_t channels, int64_t height, int64_t width);                          \
  at::Tensor deform_conv2d_##dev(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,   \
                                 const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& bias,  \
                                 int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,              \
                                 int64_t dil_h, int64_t dil_w, int64_t groups, int64_t deform_groups);          \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward_##dev(          \
      const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,      \
      const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& bias, int64_t stride_h,           \
      int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,             \
      int64_t deform_groups);                                                                                   \
  at::Tensor sigmoid_focal_loss_##dev(const at::Tensor& logits, const at::Tensor& targets,                     \
                                      const c10::optional<at::Tensor>& weight, double gamma, double alpha);     \
  at::Tensor sigmoid_focal_loss_backward_##dev(const at::Tensor& grad, const at::Tensor& logits,               \
                                               const at::Tensor& targets,                                       \
                                               const c10::optional<at::Tensor>& weight, double gamma,           \
                                               double alpha);                                                   \
  at::Tensor box_overlaps_##dev(const at::Tensor& bboxes1, const at::Tensor& bboxes2, int64_t mode,             \
                                bool aligned, double eps);                                                      \
  at::Tensor deform_roi_pool_##dev(const at::Tensor& input, const at::Tensor& rois,                             \
                                   const c10::optional<at::Tensor>& offset, double spatial_scale,               \
                                   int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, double gamma);   \
  std::tuple<at::Tensor, at::Tensor> deform_roi_pool_backward_##dev(                                            \
      const at::Tensor& grad, const at::Tensor& input, const at::Tensor& rois,                                  \
      const c10::optional<at::Tensor>& offset, double spatial_scale, int64_t pooled_h, int64_t pooled_w,        \
      int64_t sampling_ratio, double gamma);                                                                    \
  at::Tensor ps_roi_pool_##dev(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,           \
                               int64_t pooled_h, int64_t pooled_w);                                             \
  at::Tensor ps_roi_pool_backward_##dev(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,   \
                                        int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels,    \
                                        int64_t height, int64_t width);

DETCORE_DECLARE_OPS(cpu)
#ifdef WITH_CUDA
DETCORE_DECLARE_OPS(cuda)
#endif

// Argument checks shared by the CPU and CUDA entry points (clear messages instead of crashes).
void check_boxes_scores(const char* op, const at::Tensor& boxes, const at::Tensor& scores);
void check_rois(const char* op, const at::Tensor& input, const at::Tensor& rois);
void check_deform_args(const char* op, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                       const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& bias,
                       int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                       int64_t dil_w, int64_t groups, int64_t deform_groups);
void check_focal_args(const char* op, const at::Tensor& logits, const at::Tensor& targets,
                      const c10::optional<at::Tensor>& weight);
void check_deform_roi_pool_args(const char* op, const at::Tensor& input, const at::Tensor& rois,
                                const c10::optional<at::Tensor>& offset, int64_t pooled_h, int64_t pooled_w);
void check_ps_roi_pool_args(const char* op, const at::Tensor& input, const at::Tensor& rois, int64_t pooled_h,
                            int64_t pooled_w);
void check_box_overlaps_args(const char* op, const at::Tensor& bboxes1, const at::Tensor& bboxes2, int64_t mode,
                             bool aligned);

}  // namespace detcore
