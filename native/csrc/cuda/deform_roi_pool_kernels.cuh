// CUDA kernels for deformable RoI pooling and position-sensitive RoI pooling, forward and backward
// (one thread per output element; the backward kernels scatter with atomicAdd).
#pragma once

#include <stdint.h>

#include "../common/deform_roi_pool_common.h"

namespace detcore {

#ifndef DETCORE_CUDA_LOOP
#define DETCORE_CUDA_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)
#endif

// offset may be null (plain RoIAlign-like pooling with aligned corners).
template <typename T>
__global__ void deform_roi_pool_forward_kernel(int64_t total, const T* __restrict__ input, const T* __restrict__ rois,
                                               const T* __restrict__ offset, T* __restrict__ out, int64_t batch,
                                               int64_t channels, int64_t height, int64_t width, int64_t pooled_h,
                                               int64_t pooled_w, T scale, int64_t sampling_ratio, T gamma) {
  DETCORE_CUDA_LOOP(idx, total) {
    const int64_t pw = idx % pooled_w, ph = (idx / pooled_w) % pooled_h;
    const int64_t c = (idx / pooled_w / pooled_h) % channels, n = idx / pooled_w / pooled_h / channels;
    const DeformRoiGeometry<T> g = deform_roi_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio);
    if (g.batch < 0 || g.batch >= batch) {
      out[idx] = (T)0;
      continue;
    }
    T shift_w = (T)0, shift_h = (T)0;
    if (offset != nullptr) {
      const int64_t bins = pooled_h * pooled_w, o = n * 2 * bins + ph * pooled_w + pw;
      shift_w = gamma * g.roi_w * offset[o];
      shift_h = gamma * g.roi_h * offset[o + bins];
    }
    const T* plane = input + (g.batch * channels + c) * height * width;
    T acc = (T)0;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const T y = deform_roi_sample(g.start_h, shift_h, ph, g.bin_h, iy, g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const T x = deform_roi_sample(g.start_w, shift_w, pw, g.bin_w, ix, g.grid_w);
        const RoiSample<T> s = roi_sample(height, width, y, x);
        if (!s.valid) continue;
        acc += s.w[0] * plane[s.p[0]] + s.w[1] * plane[s.p[1]] + s.w[2] * plane[s.p[2]] + s.w[3] * plane[s.p[3]];
      }
    }
    out[idx] = acc / g.count;
  }
}

// grad_offset may be null (no offset, or no gradient wanted).
template <typename T>
__global__ void deform_roi_pool_backward_kernel(int64_t total, const T* __restrict__ grad, const T* __restrict__ input,
                                                const T* __restrict__ rois, const T* __restrict__ offset,
                                                T* __restrict__ grad_input, T* __restrict__ grad_offset, int64_t batch,
                                                int64_t channels, int64_t height, int64_t width, int64_t pooled_h,
                                                int64_t pooled_w, T scale, int64_t sampling_ratio, T gamma) {
  DETCORE_CUDA_LOOP(idx, total) {
    const int64_t pw = idx % pooled_w, ph = (idx / pooled_w) % pooled_h;
    const int64_t c = (idx / pooled_w / pooled_h) % channels, n = idx / pooled_w / pooled_h / channels;
    const DeformRoiGeometry<T> g = deform_roi_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio);
    if (g.batch < 0 || g.batch >= batch) continue;
    const int64_t bins = pooled_h * pooled_w, o = n * 2 * bins + ph * pooled_w + pw;
    T shift_w = (T)0, shift_h = (T)0;
    if (offset != nullptr) {
      shift_w = gamma * g.roi_w * offset[o];
      shift_h = gamma * g.roi_h * offset[o + bins];
    }
    const int64_t plane_off = (g.batch * channels + c) * height * width;
    const T* plane = input + plane_off;
    T* gplane = grad_input + plane_off;
    const T gv = grad[idx] / g.count;
    T sx = (T)0, sy = (T)0;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const T y = deform_roi_sample(g.start_h, shift_h, ph, g.bin_h, iy, g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const T x = deform_roi_sample(g.start_w, shift_w, pw, g.bin_w, ix, g.grid_w);
        const RoiSample<T> s = roi_sample(height, width, y, x);
        if (!s.valid) continue;
        for (int q = 0; q < 4; ++q) {
          if (s.w[q] != (T)0) atomicAdd(gplane + s.p[q], s.w[q] * gv);
          sx += s.dx[q] * plane[s.p[q]];
          sy += s.dy[q] * plane[s.p[q]];
        }
      }
    }
    if (grad_offset != nullptr) {
      atomicAdd(grad_offset + o, gamma * g.roi_w * (gv * sx));
      atomicAdd(grad_offset + o + bins, gamma * g.roi_h * (gv * sy));
    }
  }
}

template <typename T>
__global__ void ps_roi_pool_forward_kernel(int64_t total, const T* __restrict__ input, const T* __restrict__ rois,
                                           T* __restrict__ out, int64_t batch, int64_t channels, int64_t height,
                                           int64_t width, int64_t pooled_h, int64_t pooled_w, T scale) {
  const int64_t bins = pooled_h * pooled_w, out_dim = channels / bins;
  DETCORE_CUDA_LOOP(idx, total) {
    const int64_t pw = idx % pooled_w, ph = (idx / pooled_w) % pooled_h;
    const int64_t c = (idx / bins) % out_dim, n = idx / bins / out_dim;
    const int64_t b = to_index(rois[5 * n]);
    if (b < 0 || b >= batch) {
      out[idx] = (T)0;
      continue;
    }
    const PsBin bin = ps_roi_bin(rois + 5 * n, scale, pooled_h, pooled_w, ph, pw, height, width);
    const T* plane = input + (b * channels + c * bins + ph * pooled_w + pw) * height * width;
    T sum = (T)0;
    for (int64_t h = bin.hstart; h < bin.hend; ++h)
      for (int64_t w = bin.wstart; w < bin.wend; ++w) sum += plane[h * width + w];
    const int64_t area = (bin.hend - bin.hstart) * (bin.wend - bin.wstart);
    out[idx] = area > 0 ? sum / (T)area : (T)0;
  }
}

template <typename T>
__global__ void ps_roi_pool_backward_kernel(int64_t total, const T* __restrict__ grad, const T* __restrict__ rois,
                                            T* __restrict__ grad_input, int64_t batch, int64_t channels,
                                            int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                                            T scale) {
  const int64_t bins = pooled_h * pooled_w, out_dim = channels / bins;
  DETCORE_CUDA_LOOP(idx, total) {
    const int64_t pw = idx % pooled_w, ph = (idx / pooled_w) % pooled_h;
    const int64_t c = (idx / bins) % out_dim, n = idx / bins / out_dim;
    const int64_t b = to_index(rois[5 * n]);
    if (b < 0 || b >= batch) continue;
    const PsBin bin = ps_roi_bin(rois + 5 * n, scale, pooled_h, pooled_w, ph, pw, height, width);
    const int64_t area = (bin.hend - bin.hstart) * (bin.wend - bin.wstart);
    if (area <= 0) continue;
    T* plane = grad_input + (b * channels + c * bins + ph * pooled_w + pw) * height * width;
    const T gv = grad[idx] / (T)area;
    for (int64_t h = bin.hstart; h < bin.hend; ++h)
      for (int64_t w = bin.wstart; w < bin.wend; ++w) atomicAdd(plane + h * width + w, gv);
  }
}

#ifdef DETCORE_INSTANTIATE_KERNELS
#define DETCORE_DROI_INST(T)                                                                                      \
  template __global__ void deform_roi_pool_forward_kernel<T>(int64_t, const T*, const T*, const T*, T*, int64_t,  \
                                                             int64_t, int64_t, int64_t, int64_t, int64_t, T,      \
                                                             int64_t, T);                                         \
  template __global__ void deform_roi_pool_backward_kernel<T>(int64_t, const T*, const T*, const T*, const T*, T*, \
                                                              T*, int64_t, int64_t, int64_t, int64_t, int64_t,     \
                                                              int64_t, T, int64_t, T);                             \
  template __global__ void ps_roi_pool_forward_kernel<T>(int64_t, const T*, const T*, T*, int64_t, int64_t,       \
                                                         int64_t, int64_t, int64_t, int64_t, T);                  \
  template __global__ void ps_roi_pool_backward_kernel<T>(int64_t, const T*, const T*, T*, int64_t, int64_t,      \
                                                          int64_t, int64_t, int64_t, int64_t, T);
DETCORE_DROI_INST(float)
DETCORE_DROI_INST(double)
#endif

}  // namespace detcore
