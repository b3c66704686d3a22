// CUDA kernels for the sigmoid focal loss (one thread per element of the (N, C) logits).
#pragma once

#include <stdint.h>

#include "../common/focal_common.h"

namespace detcore {

template <typename T>
__global__ void focal_forward_kernel(int64_t total, int64_t classes, const T* __restrict__ logits,
                                     const int64_t* __restrict__ targets, const T* __restrict__ weight, T gamma,
                                     T alpha, T* __restrict__ out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t n = i / classes;
    const T v = focal_loss_elem(logits[i], targets[n] == i % classes, gamma, alpha);
    out[i] = weight ? v * weight[n] : v;
  }
}

template <typename T>
__global__ void focal_backward_kernel(int64_t total, int64_t classes, const T* __restrict__ grad,
                                      const T* __restrict__ logits, const int64_t* __restrict__ targets,
                                      const T* __restrict__ weight, T gamma, T alpha, T* __restrict__ out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t n = i / classes;
    const T v = focal_loss_grad(logits[i], targets[n] == i % classes, gamma, alpha) * grad[i];
    out[i] = weight ? v * weight[n] : v;
  }
}

#ifdef DETCORE_INSTANTIATE_KERNELS
#define DETCORE_FOCAL_INST(T)                                                                                     \
  template __global__ void focal_forward_kernel<T>(int64_t, int64_t, const T*, const int64_t*, const T*, T, T, T*); \
  template __global__ void focal_backward_kernel<T>(int64_t, int64_t, const T*, const T*, const int64_t*, const T*, \
                                                    T, T, T*);
DETCORE_FOCAL_INST(float)
DETCORE_FOCAL_INST(double)
#endif

}  // namespace detcore
