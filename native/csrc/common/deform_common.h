// Bilinear sampling with zero padding (per corner) used by the deformable convolutions, and its
// derivatives with respect to the sampling position. Shared by the CPU and CUDA kernels.
#pragma once

#include <math.h>
#include <stdint.h>

#include "macros.h"

namespace detcore {

template <typename T>
struct BilinearGrad {
  T value, dy, dx;
};

// A NaN sampling position (diverged offsets) must not reach the float -> int casts below, whose result
// would index far outside the plane; it yields NaN instead, as the PyTorch reference does.
template <typename T>
DETCORE_HD bool dcn_is_nan(T y, T x) {
  return y != y || x != x;
}

// Value and d/dy, d/dx of the bilinear interpolation of `plane` (H, W) at (y, x); corners outside the
// map count as zero.
template <typename T>
DETCORE_HD BilinearGrad<T> dcn_bilinear(const T* plane, int64_t height, int64_t width, T y, T x) {
  BilinearGrad<T> r;
  r.value = r.dy = r.dx = (T)0;
  if (dcn_is_nan(y, x)) {
    r.value = r.dy = r.dx = y + x;
    return r;
  }
  if (y <= (T)-1 || y >= (T)height || x <= (T)-1 || x >= (T)width) return r;
  const int64_t y0 = (int64_t)floor(y), x0 = (int64_t)floor(x);
  const int64_t y1 = y0 + 1, x1 = x0 + 1;
  const T ly = y - (T)y0, lx = x - (T)x0;
  const T hy = (T)1 - ly, hx = (T)1 - lx;
  const T v1 = (y0 >= 0 && x0 >= 0) ? plane[y0 * width + x0] : (T)0;
  const T v2 = (y0 >= 0 && x1 < width) ? plane[y0 * width + x1] : (T)0;
  const T v3 = (y1 < height && x0 >= 0) ? plane[y1 * width + x0] : (T)0;
  const T v4 = (y1 < height && x1 < width) ? plane[y1 * width + x1] : (T)0;
  r.value = hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4;
  r.dy = -hx * v1 - lx * v2 + hx * v3 + lx * v4;
  r.dx = -hy * v1 + hy * v2 - ly * v3 + ly * v4;
  return r;
}

template <typename T>
DETCORE_HD T dcn_bilinear_value(const T* plane, int64_t height, int64_t width, T y, T x) {
  if (dcn_is_nan(y, x)) return y + x;
  if (y <= (T)-1 || y >= (T)height || x <= (T)-1 || x >= (T)width) return (T)0;
  const int64_t y0 = (int64_t)floor(y), x0 = (int64_t)floor(x);
  const int64_t y1 = y0 + 1, x1 = x0 + 1;
  const T ly = y - (T)y0, lx = x - (T)x0;
  const T hy = (T)1 - ly, hx = (T)1 - lx;
  const T v1 = (y0 >= 0 && x0 >= 0) ? plane[y0 * width + x0] : (T)0;
  const T v2 = (y0 >= 0 && x1 < width) ? plane[y0 * width + x1] : (T)0;
  const T v3 = (y1 < height && x0 >= 0) ? plane[y1 * width + x0] : (T)0;
  const T v4 = (y1 < height && x1 < width) ? plane[y1 * width + x1] : (T)0;
  return hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4;
}

// Corner offsets and weights for scattering a gradient back to the input plane (invalid corners: -1). A NaN
// position scatters nothing, as in the reference (its value and offset gradient are NaN instead).
template <typename T>
struct ScatterTaps {
  int64_t p[4];
  T w[4];
};

template <typename T>
DETCORE_HD ScatterTaps<T> dcn_scatter_taps(int64_t height, int64_t width, T y, T x) {
  ScatterTaps<T> s;
  for (int i = 0; i < 4; ++i) {
    s.p[i] = -1;
    s.w[i] = (T)0;
  }
  if (dcn_is_nan(y, x)) return s;
  if (y <= (T)-1 || y >= (T)height || x <= (T)-1 || x >= (T)width) return s;
  const int64_t y0 = (int64_t)floor(y), x0 = (int64_t)floor(x);
  const int64_t y1 = y0 + 1, x1 = x0 + 1;
  const T ly = y - (T)y0, lx = x - (T)x0;
  const T hy = (T)1 - ly, hx = (T)1 - lx;
  if (y0 >= 0 && x0 >= 0) { s.p[0] = y0 * width + x0; s.w[0] = hy * hx; }
  if (y0 >= 0 && x1 < width) { s.p[1] = y0 * width + x1; s.w[1] = hy * lx; }
  if (y1 < height && x0 >= 0) { s.p[2] = y1 * width + x0; s.w[2] = ly * hx; }
  if (y1 < height && x1 < width) { s.p[3] = y1 * width + x1; s.w[3] = ly * lx; }
  return s;
}

// Geometry of one deformable convolution call.
struct DeformShape {
  int64_t channels, height, width;        // input (per image)
  int64_t out_h, out_w;                   // output spatial size
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t deform_groups;
};

}  // namespace detcore
