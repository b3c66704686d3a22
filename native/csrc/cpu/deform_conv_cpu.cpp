// Deformable convolution v1/v2 on the CPU: the per-image kernels (deformable im2col, col2im, col2im_coord)
// that the shared driver (deform_driver.h) wraps in grouped GEMMs.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../common/deform_common.h"
#include "../deform_driver.h"
#include "../ops.h"

namespace detcore {
namespace {

// Bilinear sampling table of one image: for every (deform group, tap, output position) the four corner
// indices into an input plane and their weights (mask folded in; corners outside the map get weight 0
// and index 0). The sampling positions depend on the offsets, not on the channel, so im2col and col2im
// look them up instead of recomputing them for each of the group's channels.
template <typename T>
struct SamplingTable {
  std::vector<int32_t> index;  // (deform_groups, taps, L, 4)
  std::vector<T> weight;       // same layout
};

template <typename T>
SamplingTable<T> build_sampling_table(const T* offset, const T* mask, const DeformShape& s) {
  TORCH_CHECK(s.height * s.width <= INT32_MAX, "deform_conv2d: input planes of ", s.height, "x", s.width,
              " are too large for the CPU kernel's 32-bit sampling indices");
  const int64_t taps = s.kernel_h * s.kernel_w, L = s.out_h * s.out_w;
  SamplingTable<T> table;
  table.index.resize(s.deform_groups * taps * L * 4);
  table.weight.resize(s.deform_groups * taps * L * 4);
  at::parallel_for(0, s.deform_groups * taps, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t gk = b0; gk < b1; ++gk) {
      const int64_t g = gk / taps, k = gk % taps;
      const int64_t i = k / s.kernel_w, j = k % s.kernel_w;
      const T* off_y = offset + (g * 2 * taps + 2 * k) * L;
      const T* off_x = off_y + L;
      const T* m = mask ? mask + (g * taps + k) * L : nullptr;
      int32_t* idx = table.index.data() + gk * L * 4;
      T* wt = table.weight.data() + gk * L * 4;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t ho = l / s.out_w, wo = l % s.out_w;
        const T y = static_cast<T>(ho * s.stride_h - s.pad_h + i * s.dil_h) + off_y[l];
        const T x = static_cast<T>(wo * s.stride_w - s.pad_w + j * s.dil_w) + off_x[l];
        const BilinearCorners<T> t = dcn_corners(s.height, s.width, y, x);
        const T mv = m ? m[l] : T(1);
        const T nan = y + x;  // NaN positions sample NaN (weight NaN on a safe index) and scatter nothing
        const bool is_nan = dcn_is_nan(y, x);
        for (int q = 0; q < 4; ++q) {
          idx[4 * l + q] = t.p[q] >= 0 ? static_cast<int32_t>(t.p[q]) : 0;
          wt[4 * l + q] = is_nan ? nan : t.p[q] >= 0 ? t.w[q] * mv : T(0);
        }
      }
    }
  });
  return table;
}

// Positions per block: a block's slice of the sampling table (4 indices + 4 weights per position,
// 8 KB in float) stays in L1 while every channel of the thread's range reuses it.
constexpr int64_t kPositionBlock = 256;

// Calls fn(c, k, l0, l1, idx, wt) for the channels [c0, c1) in an order that reuses table blocks:
// tap, then position block, then channel. idx/wt point at position l0 of the channel's group and tap.
template <typename T, typename Fn>
void for_each_table_block(const SamplingTable<T>& table, const DeformShape& s, int64_t c0, int64_t c1, Fn fn) {
  const int64_t taps = s.kernel_h * s.kernel_w, L = s.out_h * s.out_w;
  const int64_t ch_per_dg = s.channels / s.deform_groups;
  for (int64_t k = 0; k < taps; ++k)
    for (int64_t l0 = 0; l0 < L; l0 += kPositionBlock) {
      const int64_t l1 = std::min(L, l0 + kPositionBlock);
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t row = ((c / ch_per_dg) * taps + k) * L + l0;
        fn(c, k, l0, l1, table.index.data() + 4 * row, table.weight.data() + 4 * row);
      }
    }
}

// columns (C * kh * kw, Ho * Wo) of one image.
template <typename T>
void deform_im2col(const T* input, const SamplingTable<T>& table, const DeformShape& s, T* columns) {
  const int64_t taps = s.kernel_h * s.kernel_w, L = s.out_h * s.out_w, hw = s.height * s.width;
  at::parallel_for(0, s.channels, 1, [&](int64_t c0, int64_t c1) {
    for_each_table_block(table, s, c0, c1,
                         [&](int64_t c, int64_t k, int64_t l0, int64_t l1, const int32_t* idx, const T* wt) {
                           const T* plane = input + c * hw;
                           T* col = columns + (c * taps + k) * L;
                           for (int64_t l = l0; l < l1; ++l, idx += 4, wt += 4)
                             col[l] = wt[0] * plane[idx[0]] + wt[1] * plane[idx[1]] + wt[2] * plane[idx[2]] +
                                      wt[3] * plane[idx[3]];
                         });
  });
}

// grad_input of one image from grad_columns (channel-parallel: each thread owns whole input planes).
template <typename T>
void deform_col2im(const T* grad_cols, const SamplingTable<T>& table, const DeformShape& s, T* grad_input) {
  const int64_t taps = s.kernel_h * s.kernel_w, L = s.out_h * s.out_w, hw = s.height * s.width;
  at::parallel_for(0, s.channels, 1, [&](int64_t c0, int64_t c1) {
    for_each_table_block(table, s, c0, c1,
                         [&](int64_t c, int64_t k, int64_t l0, int64_t l1, const int32_t* idx, const T* wt) {
                           T* plane = grad_input + c * hw;
                           const T* gc = grad_cols + (c * taps + k) * L;
                           for (int64_t l = l0; l < l1; ++l, idx += 4, wt += 4)
                             for (int q = 0; q < 4; ++q)
                               if (wt[q] == wt[q]) plane[idx[q]] += wt[q] * gc[l];  // skip NaN positions
                         });
  });
}

// grad_offset (and grad_mask) of one image: each (deform group, tap, position) sums over its channels.
template <typename T>
void deform_col2im_coord(const T* grad_cols, const T* input, const T* offset, const T* mask, const DeformShape& s,
                         T* grad_offset, T* grad_mask) {
  const int64_t taps = s.kernel_h * s.kernel_w, L = s.out_h * s.out_w, hw = s.height * s.width;
  const int64_t ch_per_dg = s.channels / s.deform_groups;
  const int64_t blocks = (L + kPositionBlock - 1) / kPositionBlock;
  at::parallel_for(0, s.deform_groups * taps * blocks, 1, [&](int64_t t0, int64_t t1) {
    // Per position of the block: corner indices and the coefficients that turn the four corner values
    // into the sample (cv), its d/dy (cy) and d/dx (cx); corners outside the map have coefficient 0.
    std::vector<int32_t> idx(4 * kPositionBlock);
    std::vector<T> cv(4 * kPositionBlock), cy(4 * kPositionBlock), cx(4 * kPositionBlock);
    std::vector<T> sy(kPositionBlock), sx(kPositionBlock), sm(kPositionBlock);
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t gk = task / blocks, l0 = (task % blocks) * kPositionBlock;
      const int64_t n = std::min(kPositionBlock, L - l0);
      const int64_t g = gk / taps, k = gk % taps;
      const int64_t i = k / s.kernel_w, j = k % s.kernel_w;
      const T* off_y = offset + (g * 2 * taps + 2 * k) * L + l0;
      const T* off_x = off_y + L;
      for (int64_t b = 0; b < n; ++b) {
        const int64_t ho = (l0 + b) / s.out_w, wo = (l0 + b) % s.out_w;
        const T y = static_cast<T>(ho * s.stride_h - s.pad_h + i * s.dil_h) + off_y[b];
        const T x = static_cast<T>(wo * s.stride_w - s.pad_w + j * s.dil_w) + off_x[b];
        const BilinearCorners<T> t = dcn_corners(s.height, s.width, y, x);
        const T nan = y + x;  // NaN position: NaN offset and mask gradients
        const bool is_nan = dcn_is_nan(y, x);
        for (int q = 0; q < 4; ++q) {
          idx[4 * b + q] = t.p[q] >= 0 ? static_cast<int32_t>(t.p[q]) : 0;
          cv[4 * b + q] = is_nan ? nan : t.w[q];
          cy[4 * b + q] = is_nan ? nan : t.dy[q];
          cx[4 * b + q] = is_nan ? nan : t.dx[q];
        }
        sy[b] = sx[b] = sm[b] = T(0);
      }
      for (int64_t c = g * ch_per_dg; c < (g + 1) * ch_per_dg; ++c) {
        const T* plane = input + c * hw;
        const T* gc = grad_cols + (c * taps + k) * L + l0;
        for (int64_t b = 0; b < n; ++b) {
          const T v0 = plane[idx[4 * b]], v1 = plane[idx[4 * b + 1]], v2 = plane[idx[4 * b + 2]],
                  v3 = plane[idx[4 * b + 3]];
          const T* y4 = &cy[4 * b];
          const T* x4 = &cx[4 * b];
          const T* w4 = &cv[4 * b];
          sy[b] += gc[b] * (y4[0] * v0 + y4[1] * v1 + y4[2] * v2 + y4[3] * v3);
          sx[b] += gc[b] * (x4[0] * v0 + x4[1] * v1 + x4[2] * v2 + x4[3] * v3);
          sm[b] += gc[b] * (w4[0] * v0 + w4[1] * v1 + w4[2] * v2 + w4[3] * v3);
        }
      }
      const T* m = mask ? mask + (g * taps + k) * L + l0 : nullptr;
      T* go_y = grad_offset + (g * 2 * taps + 2 * k) * L + l0;
      T* go_x = go_y + L;
      T* gm = grad_mask ? grad_mask + (g * taps + k) * L + l0 : nullptr;
      for (int64_t b = 0; b < n; ++b) {
        const T mv = m ? m[b] : T(1);
        go_y[b] = sy[b] * mv;
        go_x[b] = sx[b] * mv;
        if (gm) gm[b] = sm[b];
      }
    }
  });
}

// The per-image kernels the shared driver (deform_driver.h) runs on the CPU.
struct CpuDeformKernels {
  template <typename T>
  void im2col(const T* input, const T* offset, const T* mask, const DeformShape& s, T* columns) const {
    deform_im2col<T>(input, build_sampling_table<T>(offset, mask, s), s, columns);
  }
  template <typename T>
  void col2im(const T* grad_cols, const T* offset, const T* mask, const DeformShape& s, T* grad_input) const {
    deform_col2im<T>(grad_cols, build_sampling_table<T>(offset, mask, s), s, grad_input);
  }
  template <typename T>
  void col2im_coord(const T* grad_cols, const T* input, const T* offset, const T* mask, const DeformShape& s,
                    T* grad_offset, T* grad_mask) const {
    deform_col2im_coord<T>(grad_cols, input, offset, mask, s, grad_offset, grad_mask);
  }
};

}  // namespace

at::Tensor deform_conv2d_cpu(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                             const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& bias,
                             int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                             int64_t dil_w, int64_t groups, int64_t deform_groups) {
  check_deform_args("deform_conv2d", input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h,
                    dil_w, groups, deform_groups);
  const DeformProblem p(input, weight, offset, mask, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                        deform_groups);
  return deform_conv2d_forward(p, bias, CpuDeformKernels{});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward_cpu(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
    const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
    int64_t deform_groups) {
  check_deform_args("deform_conv2d backward", input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                    dil_h, dil_w, groups, deform_groups);
  const DeformProblem p(input, weight, offset, mask, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                        deform_groups);
  return deform_conv2d_backward(grad, p, CpuDeformKernels{});
}

}  // namespace detcore
