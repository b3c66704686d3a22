// CUDA kernels for deformable convolution: deformable im2col, col2im (input grad) and col2im_coord
// (offset and mask grads). Column layout: (C * kh * kw, Ho * Wo) for one image.
#pragma once

#include <stdint.h>

#include "../common/deform_common.h"

namespace detcore {

#define DETCORE_DCN_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

template <typename T>
__global__ void deform_im2col_kernel(int64_t total, const T* __restrict__ input, const T* __restrict__ offset,
                                     const T* __restrict__ mask, DeformShape s, T* __restrict__ columns) {
  const int64_t taps = s.kernel_h * s.kernel_w, L = s.out_h * s.out_w;
  DETCORE_DCN_LOOP(idx, total) {  // idx over (c, k, l)
    const int64_t l = idx % L, k = (idx / L) % taps, c = idx / L / taps;
    const int64_t g = c / (s.channels / s.deform_groups);
    const int64_t i = k / s.kernel_w, j = k % s.kernel_w, ho = l / s.out_w, wo = l % s.out_w;
    const T dy = offset[(g * 2 * taps + 2 * k) * L + l], dx = offset[(g * 2 * taps + 2 * k + 1) * L + l];
    const T y = (T)(ho * s.stride_h - s.pad_h + i * s.dil_h) + dy;
    const T x = (T)(wo * s.stride_w - s.pad_w + j * s.dil_w) + dx;
    T v = dcn_bilinear_value(input + c * s.height * s.width, s.height, s.width, y, x);
    if (mask) v *= mask[(g * taps + k) * L + l];
    columns[idx] = v;
  }
}

template <typename T>
__global__ void deform_col2im_kernel(int64_t total, const T* __restrict__ grad_cols, const T* __restrict__ offset,
                                     const T* __restrict__ mask, DeformShape s, T* __restrict__ grad_input) {
  const int64_t taps = s.kernel_h * s.kernel_w, L = s.out_h * s.out_w;
  DETCORE_DCN_LOOP(idx, total) {
    const int64_t l = idx % L, k = (idx / L) % taps, c = idx / L / taps;
    const int64_t g = c / (s.channels / s.deform_groups);
    const int64_t i = k / s.kernel_w, j = k % s.kernel_w, ho = l / s.out_w, wo = l % s.out_w;
    T gv = grad_cols[idx];
    if (mask) gv *= mask[(g * taps + k) * L + l];
    if (gv == (T)0) continue;
    const T y = (T)(ho * s.stride_h - s.pad_h + i * s.dil_h) + offset[(g * 2 * taps + 2 * k) * L + l];
    const T x = (T)(wo * s.stride_w - s.pad_w + j * s.dil_w) + offset[(g * 2 * taps + 2 * k + 1) * L + l];
    const BilinearCorners<T> t = dcn_corners(s.height, s.width, y, x);
    T* plane = grad_input + c * s.height * s.width;
    for (int q = 0; q < 4; ++q)
      if (t.p[q] >= 0) atomicAdd(plane + t.p[q], t.w[q] * gv);
  }
}

template <typename T>
__global__ void deform_col2im_coord_kernel(int64_t total, const T* __restrict__ grad_cols, const T* __restrict__ input,
                                           const T* __restrict__ offset, const T* __restrict__ mask, DeformShape s,
                                           T* __restrict__ grad_offset, T* __restrict__ grad_mask) {
  const int64_t taps = s.kernel_h * s.kernel_w, L = s.out_h * s.out_w;
  const int64_t cpg = s.channels / s.deform_groups;
  DETCORE_DCN_LOOP(idx, total) {  // idx over (g, k, l)
    const int64_t l = idx % L, k = (idx / L) % taps, g = idx / L / taps;
    const int64_t i = k / s.kernel_w, j = k % s.kernel_w, ho = l / s.out_w, wo = l % s.out_w;
    const int64_t oy = (g * 2 * taps + 2 * k) * L + l, ox = oy + L;
    const T y = (T)(ho * s.stride_h - s.pad_h + i * s.dil_h) + offset[oy];
    const T x = (T)(wo * s.stride_w - s.pad_w + j * s.dil_w) + offset[ox];
    T sy = 0, sx = 0, sm = 0;
    for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
      const T gc = grad_cols[(c * taps + k) * L + l];
      const BilinearGrad<T> r = dcn_bilinear(input + c * s.height * s.width, s.height, s.width, y, x);
      sy += gc * r.dy;
      sx += gc * r.dx;
      sm += gc * r.value;
    }
    const T mv = mask ? mask[(g * taps + k) * L + l] : (T)1;
    grad_offset[oy] = sy * mv;
    grad_offset[ox] = sx * mv;
    if (grad_mask) grad_mask[(g * taps + k) * L + l] = sm;
  }
}

#ifdef DETCORE_INSTANTIATE_KERNELS
#define DETCORE_DCN_INST(T)                                                                                     \
  template __global__ void deform_im2col_kernel<T>(int64_t, const T*, const T*, const T*, DeformShape, T*);     \
  template __global__ void deform_col2im_kernel<T>(int64_t, const T*, const T*, const T*, DeformShape, T*);     \
  template __global__ void deform_col2im_coord_kernel<T>(int64_t, const T*, const T*, const T*, const T*,       \
                                                         DeformShape, T*, T*);
DETCORE_DCN_INST(float)
DETCORE_DCN_INST(double)
#endif

}  // namespace detcore
