// CUDA kernels for box overlaps: one thread per output element (pair, or row when aligned).
#pragma once

#include <stdint.h>

#include "../common/box_overlaps_common.h"

namespace detcore {

template <typename T>
__global__ void box_overlaps_kernel(int64_t m, int64_t n, bool aligned, const T* __restrict__ a,
                                    const T* __restrict__ b, int64_t mode, T eps, T* __restrict__ out) {
  const int64_t total = aligned ? m : m * n;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < total; k += (int64_t)blockDim.x * gridDim.x) {
    const int64_t i = aligned ? k : k / n, j = aligned ? k : k % n;
    const T* p = a + 4 * i;
    const T* q = b + 4 * j;
    out[k] = box_overlap(p[0], p[1], p[2], p[3], (p[2] - p[0]) * (p[3] - p[1]), q[0], q[1], q[2], q[3],
                         (q[2] - q[0]) * (q[3] - q[1]), mode, eps);
  }
}

#ifdef DETCORE_INSTANTIATE_KERNELS
template __global__ void box_overlaps_kernel<float>(int64_t, int64_t, bool, const float*, const float*, int64_t,
                                                    float, float*);
template __global__ void box_overlaps_kernel<double>(int64_t, int64_t, bool, const double*, const double*, int64_t,
                                                     double, double*);
#endif

}  // namespace detcore
