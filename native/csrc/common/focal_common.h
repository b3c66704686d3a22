// Sigmoid focal loss per element and its derivative, shared by the CPU and CUDA kernels.
#pragma once

#include <math.h>
#include <stdint.h>

#include "macros.h"

namespace detcore {

// log(1 + exp(z)) without overflow.
template <typename T>
DETCORE_HD T softplus(T z) {
  return (z > (T)0 ? z : (T)0) + log1p(exp(-fabs(z)));
}

template <typename T>
DETCORE_HD T focal_loss_elem(T x, bool positive, T gamma, T alpha) {
  const T p = (T)1 / ((T)1 + exp(-x));
  if (positive) return -alpha * pow((T)1 - p, gamma) * (-softplus(-x));
  return -((T)1 - alpha) * pow(p, gamma) * (-softplus(x));
}

// d loss / d x.
template <typename T>
DETCORE_HD T focal_loss_grad(T x, bool positive, T gamma, T alpha) {
  const T p = (T)1 / ((T)1 + exp(-x));
  if (positive) {
    const T log_p = -softplus(-x);
    // d/dx[-alpha (1-p)^g log p] = -alpha (1-p)^g [(1-p) - g p log p]
    return -alpha * pow((T)1 - p, gamma) * (((T)1 - p) - gamma * p * log_p);
  }
  const T log_1mp = -softplus(x);
  // d/dx[-(1-alpha) p^g log(1-p)] = -(1-alpha) p^g [g (1-p) log(1-p) - p]
  return -((T)1 - alpha) * pow(p, gamma) * (gamma * ((T)1 - p) * log_1mp - p);
}

}  // namespace detcore
