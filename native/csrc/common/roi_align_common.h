// RoIAlign geometry shared by the CPU and CUDA kernels (torchvision/mmcv semantics).
#pragma once

#include <math.h>
#include <stdint.h>

#include "index_cast.h"
#include "macros.h"

namespace detcore {

// Four taps of one bilinear sample: flat offsets into an (H, W) plane and their weights.
template <typename T>
struct BilinearTaps {
  int64_t p1, p2, p3, p4;
  T w1, w2, w3, w4;
};

// Samples outside [-1, H] x [-1, W] contribute zero; the others are clamped into the map. Written so that a
// NaN coordinate counts as outside: it must never reach the float -> int casts below.
template <typename T>
DETCORE_HD BilinearTaps<T> roi_align_taps(int64_t height, int64_t width, T y, T x) {
  BilinearTaps<T> t;
  if (!(y >= (T)-1.0 && y <= (T)height && x >= (T)-1.0 && x <= (T)width)) {
    t.p1 = t.p2 = t.p3 = t.p4 = 0;
    t.w1 = t.w2 = t.w3 = t.w4 = (T)0;
    return t;
  }
  if (y <= (T)0) y = (T)0;
  if (x <= (T)0) x = (T)0;
  int64_t y_low = (int64_t)y;
  int64_t x_low = (int64_t)x;
  int64_t y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = (T)y_low;
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = (T)x_low;
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - (T)y_low, lx = x - (T)x_low;
  const T hy = (T)1. - ly, hx = (T)1. - lx;
  t.p1 = y_low * width + x_low;
  t.p2 = y_low * width + x_high;
  t.p3 = y_high * width + x_low;
  t.p4 = y_high * width + x_high;
  t.w1 = hy * hx;
  t.w2 = hy * lx;
  t.w3 = ly * hx;
  t.w4 = ly * lx;
  return t;
}

// Per-roi sampling geometry.
template <typename T>
struct RoiGeometry {
  int64_t batch;
  T start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;
  T count;
};

// Samples per bin for sampling_ratio 0: ceil(roi_size / pooled), 0 for empty, negative or NaN sizes, and
// capped so that an absurd roi (a diverged box) cannot overflow the int conversion.
template <typename T>
DETCORE_HD int64_t adaptive_grid(T roi_size, int64_t pooled) {
  const T g = ceil(roi_size / (T)pooled);
  if (!(g > (T)0)) return 0;
  return g < (T)65536 ? (int64_t)g : 65536;
}

template <typename T>
DETCORE_HD RoiGeometry<T> roi_align_geometry(const T* roi, T spatial_scale, int64_t pooled_h, int64_t pooled_w,
                                             int64_t sampling_ratio, bool aligned) {
  RoiGeometry<T> g;
  g.batch = to_index(roi[0]);
  const T offset = aligned ? (T)0.5 : (T)0.0;
  g.start_w = roi[1] * spatial_scale - offset;
  g.start_h = roi[2] * spatial_scale - offset;
  T roi_w = roi[3] * spatial_scale - offset - g.start_w;
  T roi_h = roi[4] * spatial_scale - offset - g.start_h;
  if (!aligned) {
    roi_w = roi_w > (T)1. ? roi_w : (T)1.;
    roi_h = roi_h > (T)1. ? roi_h : (T)1.;
  }
  g.bin_h = roi_h / (T)pooled_h;
  g.bin_w = roi_w / (T)pooled_w;
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(roi_h, pooled_h);
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(roi_w, pooled_w);
  const int64_t n = g.grid_h * g.grid_w;
  g.count = (T)(n > 1 ? n : 1);
  return g;
}

// Sample position iy (ix) inside bin ph (pw).
template <typename T>
DETCORE_HD T roi_align_sample(T start, int64_t bin, T bin_size, int64_t i, int64_t grid) {
  return (start + (T)bin * bin_size) + ((T)i + (T)0.5) * bin_size / (T)grid;
}

}  // namespace detcore
