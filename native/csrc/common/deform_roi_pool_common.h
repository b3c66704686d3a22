// Per-element maths of deformable RoI pooling (DCN v1 / v2) and position-sensitive RoI pooling (R-FCN),
// shared by the CPU and CUDA kernels.
#pragma once

#include <math.h>
#include <stdint.h>

#include "index_cast.h"
#include "macros.h"

namespace detcore {

// One bilinear sample with RoIAlign's border rule (outside [-1, H] x [-1, W] or NaN: nothing; otherwise
// clamped into the map), plus the derivatives of the four weights with respect to y and x. The derivatives
// are those of the clamped function: zero along an axis where the coordinate was clamped (y <= 0 or
// y >= H - 1), so they are the exact gradient of the forward value (see docs/ops.md for mmcv's variant).
template <typename T>
struct RoiSample {
  bool valid;
  int64_t p[4];  // flat offsets into an (H, W) plane: (y0, x0), (y0, x1), (y1, x0), (y1, x1)
  T w[4], dy[4], dx[4];
};

template <typename T>
DETCORE_HD RoiSample<T> roi_sample(int64_t height, int64_t width, T y, T x) {
  RoiSample<T> s;
  s.valid = false;
  for (int q = 0; q < 4; ++q) {
    s.p[q] = 0;
    s.w[q] = s.dy[q] = s.dx[q] = (T)0;
  }
  if (!(y >= (T)-1.0 && y <= (T)height && x >= (T)-1.0 && x <= (T)width)) return s;
  s.valid = true;
  bool fy = true, fx = true;  // free (not clamped) along the axis
  if (y <= (T)0) {
    y = (T)0;
    fy = false;
  }
  if (x <= (T)0) {
    x = (T)0;
    fx = false;
  }
  int64_t y0 = (int64_t)y, x0 = (int64_t)x, y1, x1;
  if (y0 >= height - 1) {
    y1 = y0 = height - 1;
    y = (T)y0;
    fy = false;
  } else {
    y1 = y0 + 1;
  }
  if (x0 >= width - 1) {
    x1 = x0 = width - 1;
    x = (T)x0;
    fx = false;
  } else {
    x1 = x0 + 1;
  }
  const T ly = y - (T)y0, lx = x - (T)x0;
  const T hy = (T)1 - ly, hx = (T)1 - lx;
  s.p[0] = y0 * width + x0;
  s.p[1] = y0 * width + x1;
  s.p[2] = y1 * width + x0;
  s.p[3] = y1 * width + x1;
  s.w[0] = hy * hx;
  s.w[1] = hy * lx;
  s.w[2] = ly * hx;
  s.w[3] = ly * lx;
  const T gy = fy ? (T)1 : (T)0, gx = fx ? (T)1 : (T)0;
  s.dy[0] = -hx * gy;
  s.dy[1] = -lx * gy;
  s.dy[2] = hx * gy;
  s.dy[3] = lx * gy;
  s.dx[0] = -hy * gx;
  s.dx[1] = hy * gx;
  s.dx[2] = -ly * gx;
  s.dx[3] = ly * gx;
  return s;
}

// Geometry of one roi of deformable RoI pooling (mmcv semantics): corners scaled and shifted by -0.5 pixel,
// no minimum size, bins of roi_size / pooled, grid = sampling_ratio or ceil(roi_size / pooled) samples per bin
// axis. The offset of bin (ph, pw) moves the whole bin by gamma * (roi_w * offset_x, roi_h * offset_y).
template <typename T>
struct DeformRoiGeometry {
  int64_t batch;
  T start_h, start_w, roi_h, roi_w, bin_h, bin_w;
  int64_t grid_h, grid_w;
  T count;
};

template <typename T>
DETCORE_HD int64_t deform_roi_grid(T roi_size, int64_t pooled) {
  const T g = ceil(roi_size / (T)pooled);
  if (!(g > (T)0)) return 0;
  return g < (T)65536 ? (int64_t)g : 65536;
}

template <typename T>
DETCORE_HD DeformRoiGeometry<T> deform_roi_geometry(const T* roi, T spatial_scale, int64_t pooled_h,
                                                    int64_t pooled_w, int64_t sampling_ratio) {
  DeformRoiGeometry<T> g;
  g.batch = to_index(roi[0]);
  g.start_w = roi[1] * spatial_scale - (T)0.5;
  g.start_h = roi[2] * spatial_scale - (T)0.5;
  g.roi_w = (roi[3] * spatial_scale - (T)0.5) - g.start_w;
  g.roi_h = (roi[4] * spatial_scale - (T)0.5) - g.start_h;
  g.bin_h = g.roi_h / (T)pooled_h;
  g.bin_w = g.roi_w / (T)pooled_w;
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : deform_roi_grid(g.roi_h, pooled_h);
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : deform_roi_grid(g.roi_w, pooled_w);
  const int64_t n = g.grid_h * g.grid_w;
  g.count = (T)(n > 1 ? n : 1);
  return g;
}

// Start of bin (ph, pw) after its offset: y0 = start_h + gamma * roi_h * dy + ph * bin_h (x likewise); sample
// iy of the bin lies at y0 + (iy + 0.5) * bin_h / grid_h.
template <typename T>
DETCORE_HD T deform_roi_sample(T start, T shift, int64_t bin, T bin_size, int64_t i, int64_t grid) {
  return (start + shift) + (T)bin * bin_size + ((T)i + (T)0.5) * bin_size / (T)grid;
}

// Position-sensitive RoI pooling (R-FCN, Dai et al. 2016, as its Caffe layer): corners rounded (half away
// from zero) in image pixels, end + 1, then scaled; roi size at least 0.1; bin (ph, pw) covers rows
// [floor(ph * bin_h + y1), ceil((ph + 1) * bin_h + y1)) clipped to [0, H] (columns likewise) and averages
// input channel (c * pooled_h + ph) * pooled_w + pw.
struct PsBin {
  int64_t hstart, hend, wstart, wend;
};

template <typename T>
DETCORE_HD T ps_round(T v) {
  return v >= (T)0 ? floor(v + (T)0.5) : -floor(-v + (T)0.5);
}

template <typename T>
DETCORE_HD int64_t ps_clip(T v, int64_t size) {
  if (!(v > (T)0)) return 0;  // NaN -> 0
  return v < (T)size ? (int64_t)v : size;
}

template <typename T>
DETCORE_HD PsBin ps_roi_bin(const T* roi, T spatial_scale, int64_t pooled_h, int64_t pooled_w, int64_t ph,
                            int64_t pw, int64_t height, int64_t width) {
  const T x1 = ps_round(roi[1]) * spatial_scale, y1 = ps_round(roi[2]) * spatial_scale;
  const T x2 = (ps_round(roi[3]) + (T)1) * spatial_scale, y2 = (ps_round(roi[4]) + (T)1) * spatial_scale;
  T roi_w = x2 - x1, roi_h = y2 - y1;
  roi_w = roi_w > (T)0.1 ? roi_w : (T)0.1;
  roi_h = roi_h > (T)0.1 ? roi_h : (T)0.1;
  const T bin_h = roi_h / (T)pooled_h, bin_w = roi_w / (T)pooled_w;
  PsBin b;
  b.hstart = ps_clip(floor((T)ph * bin_h + y1), height);
  b.hend = ps_clip(ceil((T)(ph + 1) * bin_h + y1), height);
  b.wstart = ps_clip(floor((T)pw * bin_w + x1), width);
  b.wend = ps_clip(ceil((T)(pw + 1) * bin_w + x1), width);
  return b;
}

}  // namespace detcore
