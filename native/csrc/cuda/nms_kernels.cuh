// CUDA kernels for greedy NMS (IoU bitmask per 64-box block, reduced on the host) and Soft-NMS (one block).
#pragma once

#include <stdint.h>

namespace detcore {

constexpr int kNmsBlock = 64;  // bits per mask word

template <typename T>
__device__ __forceinline__ bool nms_iou_above(const T* a, const T* b, T thr) {
  const T w = max(min(a[2], b[2]) - max(a[0], b[0]), (T)0);
  const T h = max(min(a[3], b[3]) - max(a[1], b[1]), (T)0);
  const T inter = w * h;
  const T area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const T area_b = (b[2] - b[0]) * (b[3] - b[1]);
  return inter / (area_a + area_b - inter) > thr;
}

// boxes sorted by descending score; mask[i * col_blocks + cb] has bit j set when box i (earlier)
// suppresses box cb * 64 + j.
template <typename T>
__global__ void nms_mask_kernel(int n, T thr, const T* __restrict__ boxes, unsigned long long* __restrict__ mask) {
  const int row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) return;
  const int row_size = min(n - row_block * kNmsBlock, kNmsBlock);
  const int col_size = min(n - col_block * kNmsBlock, kNmsBlock);
  __shared__ T block_boxes[kNmsBlock * 4];
  if (threadIdx.x < col_size) {
    for (int d = 0; d < 4; ++d)
      block_boxes[threadIdx.x * 4 + d] = boxes[(col_block * kNmsBlock + threadIdx.x) * 4 + d];
  }
  __syncthreads();
  if (threadIdx.x < row_size) {
    const int cur = row_block * kNmsBlock + threadIdx.x;
    const T* cur_box = boxes + cur * 4;
    unsigned long long bits = 0;
    const int start = row_block == col_block ? threadIdx.x + 1 : 0;
    for (int j = start; j < col_size; ++j)
      if (nms_iou_above(cur_box, block_boxes + j * 4, thr)) bits |= 1ULL << j;
    const int col_blocks = (n + kNmsBlock - 1) / kNmsBlock;
    mask[(int64_t)cur * col_blocks + col_block] = bits;
  }
}

// Soft-NMS in one block (blockDim.x must be a power of two <= 1024). `scores` is a working copy that is
// decayed in place; outputs the picked indices and their scores in selection order and their count.
template <typename T>
__global__ void soft_nms_kernel(int n, const T* __restrict__ boxes, T* __restrict__ scores,
                                unsigned char* __restrict__ alive, T thr, T sigma, T min_score, int method,
                                int64_t* __restrict__ picked, T* __restrict__ picked_scores, int* __restrict__ count) {
  extern __shared__ unsigned char smem[];
  T* s_best = reinterpret_cast<T*>(smem);
  int* s_idx = reinterpret_cast<int*>(s_best + blockDim.x);
  const int tid = threadIdx.x;
  for (int j = tid; j < n; j += blockDim.x) alive[j] = scores[j] >= min_score;
  __syncthreads();
  int k = 0;
  while (true) {
    T best = (T)0;
    int bi = -1;
    for (int j = tid; j < n; j += blockDim.x)
      if (alive[j] && (bi < 0 || scores[j] > best)) {
        best = scores[j];
        bi = j;
      }
    s_best[tid] = best;
    s_idx[tid] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (tid < s) {
        const int oi = s_idx[tid + s];
        const T os = s_best[tid + s];
        const int mi = s_idx[tid];
        if (oi >= 0 && (mi < 0 || os > s_best[tid] || (os == s_best[tid] && oi < mi))) {
          s_best[tid] = os;
          s_idx[tid] = oi;
        }
      }
      __syncthreads();
    }
    const int sel = s_idx[0];
    if (sel < 0) break;
    const T* sb = boxes + sel * 4;
    if (tid == 0) {
      picked[k] = sel;
      picked_scores[k] = scores[sel];
      alive[sel] = 0;
    }
    ++k;
    __syncthreads();
    for (int j = tid; j < n; j += blockDim.x) {
      if (!alive[j]) continue;
      const T* b = boxes + j * 4;
      const T w = max(min(sb[2], b[2]) - max(sb[0], b[0]), (T)0);
      const T h = max(min(sb[3], b[3]) - max(sb[1], b[1]), (T)0);
      const T inter = w * h;
      const T ov = inter / ((sb[2] - sb[0]) * (sb[3] - sb[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
      T weight = (T)1;
      if (method == 1) {
        if (ov > thr) weight = (T)1 - ov;
      } else if (method == 2) {
        weight = exp(-(ov * ov) / sigma);
      } else if (ov > thr) {
        weight = (T)0;
      }
      scores[j] = scores[j] * weight;
      if (scores[j] < min_score) alive[j] = 0;
    }
    __syncthreads();
  }
  if (tid == 0) *count = k;
}

#ifdef DETCORE_INSTANTIATE_KERNELS
#define DETCORE_NMS_INST(T)                                                                                    \
  template __global__ void nms_mask_kernel<T>(int, T, const T*, unsigned long long*);                         \
  template __global__ void soft_nms_kernel<T>(int, const T*, T*, unsigned char*, T, T, T, int, int64_t*, T*, \
                                              int*);
DETCORE_NMS_INST(float)
DETCORE_NMS_INST(double)
#endif

}  // namespace detcore
