// Sigmoid focal loss per element and its derivative, shared by the CPU and CUDA kernels.
//
// With e = exp(-|x|): sigmoid(x) = 1/(1+e) for x >= 0 and e/(1+e) otherwise, and
// softplus(+-x) = max(+-x, 0) + log1p(e), so each element costs one exp and one log1p.
#pragma once

#include <math.h>
#include <stdint.h>

#include "macros.h"

namespace detcore {

template <typename T>
struct FocalTerms {
  T p;            // sigmoid(x)
  T softplus_x;   // -log(1 - p)
  T softplus_nx;  // -log(p)
};

template <typename T>
DETCORE_HD FocalTerms<T> focal_terms(T x) {
  const T e = exp(-fabs(x));
  const T l = log1p(e);
  const T inv = (T)1 / ((T)1 + e);
  FocalTerms<T> f;
  f.p = x >= (T)0 ? inv : e * inv;
  f.softplus_x = (x > (T)0 ? x : (T)0) + l;
  f.softplus_nx = (x < (T)0 ? -x : (T)0) + l;
  return f;
}

// q ** gamma, with the usual gamma = 2 as a multiply.
template <typename T>
DETCORE_HD T pow_gamma(T q, T gamma) {
  return gamma == (T)2 ? q * q : pow(q, gamma);
}

template <typename T>
DETCORE_HD T focal_loss_elem(T x, bool positive, T gamma, T alpha) {
  const FocalTerms<T> f = focal_terms(x);
  if (positive) return alpha * pow_gamma((T)1 - f.p, gamma) * f.softplus_nx;
  return ((T)1 - alpha) * pow_gamma(f.p, gamma) * f.softplus_x;
}

// d loss / d x.
template <typename T>
DETCORE_HD T focal_loss_grad(T x, bool positive, T gamma, T alpha) {
  const FocalTerms<T> f = focal_terms(x);
  const T q = (T)1 - f.p;
  // d/dx[-alpha (1-p)^g log p] = -alpha (1-p)^g [(1-p) - g p log p]
  if (positive) return -alpha * pow_gamma(q, gamma) * (q + gamma * f.p * f.softplus_nx);
  // d/dx[-(1-alpha) p^g log(1-p)] = -(1-alpha) p^g [g (1-p) log(1-p) - p]
  return ((T)1 - alpha) * pow_gamma(f.p, gamma) * (gamma * q * f.softplus_x + f.p);
}

}  // namespace detcore
