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
// would index far outside the plane; its value and derivatives are NaN instead, and it scatters nothing,
// as in the PyTorch reference.
template <typename T>
DETCORE_HD bool dcn_is_nan(T y, T x) {
  return y != y || x != x;
}

// The four corners of the bilinear sample at (y, x) in an (H, W) plane, as the deformable convolutions
// use them: flat index into the plane (-1 for a corner outside the map, which counts as zero), weight, and
// the weight's derivatives with respect to y and x. A position on or beyond the border band
// (-1, H) x (-1, W), or a NaN one, has no corners (callers that propagate NaN test dcn_is_nan first).
template <typename T>
struct BilinearCorners {
  int64_t p[4];
  T w[4], dy[4], dx[4];
};

template <typename T>
DETCORE_HD BilinearCorners<T> dcn_corners(int64_t height, int64_t width, T y, T x) {
  BilinearCorners<T> c;
  for (int q = 0; q < 4; ++q) {
    c.p[q] = -1;
    c.w[q] = c.dy[q] = c.dx[q] = (T)0;
  }
  if (dcn_is_nan(y, x) || y <= (T)-1 || y >= (T)height || x <= (T)-1 || x >= (T)width) return c;
  const int64_t y0 = (int64_t)floor(y), x0 = (int64_t)floor(x);
  const int64_t y1 = y0 + 1, x1 = x0 + 1;
  const T ly = y - (T)y0, lx = x - (T)x0;
  const T hy = (T)1 - ly, hx = (T)1 - lx;
  const bool inside[4] = {y0 >= 0 && x0 >= 0, y0 >= 0 && x1 < width, y1 < height && x0 >= 0,
                          y1 < height && x1 < width};
  const int64_t p[4] = {y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1};
  const T w[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
  const T dy[4] = {-hx, -lx, hx, lx};
  const T dx[4] = {-hy, hy, -ly, ly};
  for (int q = 0; q < 4; ++q) {
    if (!inside[q]) continue;
    c.p[q] = p[q];
    c.w[q] = w[q];
    c.dy[q] = dy[q];
    c.dx[q] = dx[q];
  }
  return c;
}

// Value and d/dy, d/dx of the bilinear interpolation of `plane` (H, W) at (y, x).
template <typename T>
DETCORE_HD BilinearGrad<T> dcn_bilinear(const T* plane, int64_t height, int64_t width, T y, T x) {
  BilinearGrad<T> r;
  r.value = r.dy = r.dx = dcn_is_nan(y, x) ? y + x : (T)0;
  const BilinearCorners<T> c = dcn_corners(height, width, y, x);
  for (int q = 0; q < 4; ++q) {
    const T v = c.p[q] >= 0 ? plane[c.p[q]] : (T)0;
    r.value += c.w[q] * v;
    r.dy += c.dy[q] * v;
    r.dx += c.dx[q] * v;
  }
  return r;
}

template <typename T>
DETCORE_HD T dcn_bilinear_value(const T* plane, int64_t height, int64_t width, T y, T x) {
  return dcn_bilinear(plane, height, width, y, x).value;
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
