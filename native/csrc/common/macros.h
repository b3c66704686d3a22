// Host/device qualifiers so the per-element kernel bodies are shared by the CPU and CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DETCORE_HD __host__ __device__ __forceinline__
#else
#define DETCORE_HD inline
#endif
