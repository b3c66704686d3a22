// CUDA kernels for RoIAlign and RoIPool, forward and backward (one thread per output element).
#pragma once

#include <stdint.h>

#include "../common/roi_align_common.h"

namespace detcore {

#define DETCORE_CUDA_LOOP(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

template <typename T>
__global__ void roi_align_forward_kernel(int64_t total, const T* __restrict__ input, const T* __restrict__ rois,
                                         T* __restrict__ out, int64_t batch, int64_t channels, int64_t height,
                                         int64_t width, int64_t pooled_h, int64_t pooled_w, T scale,
                                         int64_t sampling_ratio, bool aligned) {
  DETCORE_CUDA_LOOP(idx, total) {
    const int64_t pw = idx % pooled_w, ph = (idx / pooled_w) % pooled_h;
    const int64_t c = (idx / pooled_w / pooled_h) % channels, n = idx / pooled_w / pooled_h / channels;
    const RoiGeometry<T> g = roi_align_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio, aligned);
    if (g.batch < 0 || g.batch >= batch) {
      out[idx] = (T)0;
      continue;
    }
    const T* plane = input + (g.batch * channels + c) * height * width;
    T sum = 0;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const T y = roi_align_sample(g.start_h, ph, g.bin_h, iy, g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const T x = roi_align_sample(g.start_w, pw, g.bin_w, ix, g.grid_w);
        const BilinearTaps<T> t = roi_align_taps(height, width, y, x);
        sum += t.w1 * plane[t.p1] + t.w2 * plane[t.p2] + t.w3 * plane[t.p3] + t.w4 * plane[t.p4];
      }
    }
    out[idx] = sum / g.count;
  }
}

template <typename T>
__global__ void roi_align_backward_kernel(int64_t total, const T* __restrict__ grad, const T* __restrict__ rois,
                                          T* __restrict__ grad_input, int64_t batch, int64_t channels, int64_t height,
                                          int64_t width, int64_t pooled_h, int64_t pooled_w, T scale,
                                          int64_t sampling_ratio, bool aligned) {
  DETCORE_CUDA_LOOP(idx, total) {
    const int64_t pw = idx % pooled_w, ph = (idx / pooled_w) % pooled_h;
    const int64_t c = (idx / pooled_w / pooled_h) % channels, n = idx / pooled_w / pooled_h / channels;
    const RoiGeometry<T> g = roi_align_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio, aligned);
    if (g.batch < 0 || g.batch >= batch) continue;
    T* plane = grad_input + (g.batch * channels + c) * height * width;
    const T gv = grad[idx] / g.count;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const T y = roi_align_sample(g.start_h, ph, g.bin_h, iy, g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const T x = roi_align_sample(g.start_w, pw, g.bin_w, ix, g.grid_w);
        const BilinearTaps<T> t = roi_align_taps(height, width, y, x);
        if (t.w1 != (T)0) atomicAdd(plane + t.p1, t.w1 * gv);
        if (t.w2 != (T)0) atomicAdd(plane + t.p2, t.w2 * gv);
        if (t.w3 != (T)0) atomicAdd(plane + t.p3, t.w3 * gv);
        if (t.w4 != (T)0) atomicAdd(plane + t.p4, t.w4 * gv);
      }
    }
  }
}

template <typename T>
__global__ void roi_pool_forward_kernel(int64_t total, const T* __restrict__ input, const T* __restrict__ rois,
                                        T* __restrict__ out, int64_t* __restrict__ argmax, int64_t batch,
                                        int64_t channels, int64_t height, int64_t width, int64_t pooled_h,
                                        int64_t pooled_w, T scale) {
  DETCORE_CUDA_LOOP(idx, total) {
    const int64_t pw = idx % pooled_w, ph = (idx / pooled_w) % pooled_h;
    const int64_t c = (idx / pooled_w / pooled_h) % channels, n = idx / pooled_w / pooled_h / channels;
    const T* roi = rois + 5 * n;
    const int64_t b = to_index(roi[0]);
    if (b < 0 || b >= batch) {
      out[idx] = (T)0;
      argmax[idx] = -1;
      continue;
    }
    const int64_t sw = to_index(round(roi[1] * scale)), sh = to_index(round(roi[2] * scale));
    const int64_t ew = to_index(round(roi[3] * scale)), eh = to_index(round(roi[4] * scale));
    const T bin_h = (T)max(eh - sh + 1, (int64_t)1) / (T)pooled_h;
    const T bin_w = (T)max(ew - sw + 1, (int64_t)1) / (T)pooled_w;
    const int64_t hs = min(max(to_index(floor((T)ph * bin_h)) + sh, (int64_t)0), height);
    const int64_t he = min(max(to_index(ceil((T)(ph + 1) * bin_h)) + sh, (int64_t)0), height);
    const int64_t ws = min(max(to_index(floor((T)pw * bin_w)) + sw, (int64_t)0), width);
    const int64_t we = min(max(to_index(ceil((T)(pw + 1) * bin_w)) + sw, (int64_t)0), width);
    const T* plane = input + (b * channels + c) * height * width;
    T best = (T)0;
    int64_t arg = -1;
    for (int64_t h = hs; h < he; ++h)
      for (int64_t w = ws; w < we; ++w) {
        const int64_t i = h * width + w;
        if (arg < 0 || plane[i] > best) {
          best = plane[i];
          arg = i;
        }
      }
    out[idx] = best;
    argmax[idx] = arg;
  }
}

template <typename T>
__global__ void roi_pool_backward_kernel(int64_t total, const T* __restrict__ grad, const T* __restrict__ rois,
                                         const int64_t* __restrict__ argmax, T* __restrict__ grad_input,
                                         int64_t batch, int64_t channels, int64_t height, int64_t width,
                                         int64_t pooled_h, int64_t pooled_w) {
  DETCORE_CUDA_LOOP(idx, total) {
    const int64_t c = (idx / pooled_w / pooled_h) % channels, n = idx / pooled_w / pooled_h / channels;
    const int64_t b = to_index(rois[5 * n]);
    if (b < 0 || b >= batch || argmax[idx] < 0) continue;
    atomicAdd(grad_input + (b * channels + c) * height * width + argmax[idx], grad[idx]);
  }
}

#ifdef DETCORE_INSTANTIATE_KERNELS
#define DETCORE_ROI_INST(T)                                                                                       \
  template __global__ void roi_align_forward_kernel<T>(int64_t, const T*, const T*, T*, int64_t, int64_t, int64_t, \
                                                       int64_t, int64_t, int64_t, T, int64_t, bool);              \
  template __global__ void roi_align_backward_kernel<T>(int64_t, const T*, const T*, T*, int64_t, int64_t,        \
                                                        int64_t, int64_t, int64_t, int64_t, T, int64_t, bool);     \
  template __global__ void roi_pool_forward_kernel<T>(int64_t, const T*, const T*, T*, int64_t*, int64_t, int64_t, \
                                                      int64_t, int64_t, int64_t, int64_t, T);                      \
  template __global__ void roi_pool_backward_kernel<T>(int64_t, const T*, const T*, const int64_t*, T*, int64_t,  \
                                                       int64_t, int64_t, int64_t, int64_t, int64_t);
DETCORE_ROI_INST(float)
DETCORE_ROI_INST(double)
#endif

}  // namespace detcore
