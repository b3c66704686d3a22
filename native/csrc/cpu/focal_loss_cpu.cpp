// Sigmoid focal loss (per element) and its gradient on the CPU.
//
// float32 runs a vectorised path (vec_math.h exp/log1p, AVX2 clone where the CPU has it); float64 runs
// the scalar formulas shared with CUDA (focal_common.h). Rows are anchors, columns classes: every
// element of a row is computed as a negative, then the target class is overwritten as the positive,
// so the inner loop has no per-element class test.
#include <ATen/Parallel.h>

#include "../common/focal_common.h"
#include "../ops.h"
#include "vec_math.h"

namespace detcore {
namespace {

constexpr int64_t kRowGrain = 256;  // rows per parallel task

// sigmoid(x) and softplus(+-x) (= -log(1-p), -log(p)) in float from one exp and one log1p.
inline FocalTerms<float> focal_terms_f32(float x) {
  const float e = vecmath::exp_nonpositive(-__builtin_fabsf(x));
  const float l = vecmath::log1p_unit(e);
  const float inv = 1.0f / (1.0f + e);
  FocalTerms<float> f;
  f.p = x >= 0.0f ? inv : e * inv;
  f.softplus_x = (x > 0.0f ? x : 0.0f) + l;
  f.softplus_nx = (x < 0.0f ? -x : 0.0f) + l;
  return f;
}

// p ** gamma given log p = -softplus: a multiply for gamma = 2, else exp(-gamma * softplus).
template <bool kGammaTwo>
inline float pow_gamma_f32(float p, float softplus, float gamma) {
  return kGammaTwo ? p * p : vecmath::exp_nonpositive(-gamma * softplus);
}

template <bool kGammaTwo>
inline float loss_f32(float x, bool positive, float gamma, float alpha) {
  const FocalTerms<float> f = focal_terms_f32(x);
  if (positive) return alpha * pow_gamma_f32<kGammaTwo>(1.0f - f.p, f.softplus_x, gamma) * f.softplus_nx;
  return (1.0f - alpha) * pow_gamma_f32<kGammaTwo>(f.p, f.softplus_nx, gamma) * f.softplus_x;
}

template <bool kGammaTwo>
inline float grad_f32(float x, bool positive, float gamma, float alpha) {
  const FocalTerms<float> f = focal_terms_f32(x);
  const float q = 1.0f - f.p;
  if (positive) return -alpha * pow_gamma_f32<kGammaTwo>(q, f.softplus_x, gamma) * (q + gamma * f.p * f.softplus_nx);
  return (1.0f - alpha) * pow_gamma_f32<kGammaTwo>(f.p, f.softplus_nx, gamma) * (gamma * q * f.softplus_x + f.p);
}

template <bool kGammaTwo>
inline void forward_rows_f32(const float* x, const int64_t* t, const float* w, float* o, int64_t r0, int64_t r1,
                             int64_t c, float gamma, float alpha) {
  for (int64_t n = r0; n < r1; ++n) {
    const float* __restrict xr = x + n * c;
    float* __restrict orow = o + n * c;
    const float wn = w ? w[n] : 1.0f;
    for (int64_t k = 0; k < c; ++k) orow[k] = loss_f32<kGammaTwo>(xr[k], false, gamma, alpha) * wn;
    const int64_t pos = t[n];
    if (pos >= 0 && pos < c) orow[pos] = loss_f32<kGammaTwo>(xr[pos], true, gamma, alpha) * wn;
  }
}

template <bool kGammaTwo>
inline void backward_rows_f32(const float* go, const float* x, const int64_t* t, const float* w, float* o,
                              int64_t r0, int64_t r1, int64_t c, float gamma, float alpha) {
  for (int64_t n = r0; n < r1; ++n) {
    const float* __restrict xr = x + n * c;
    const float* __restrict gr = go + n * c;
    float* __restrict orow = o + n * c;
    const float wn = w ? w[n] : 1.0f;
    for (int64_t k = 0; k < c; ++k) orow[k] = grad_f32<kGammaTwo>(xr[k], false, gamma, alpha) * gr[k] * wn;
    const int64_t pos = t[n];
    if (pos >= 0 && pos < c) orow[pos] = grad_f32<kGammaTwo>(xr[pos], true, gamma, alpha) * gr[pos] * wn;
  }
}

DETCORE_CPU_CLONES void forward_f32(const float* x, const int64_t* t, const float* w, float* o, int64_t r0,
                                    int64_t r1, int64_t c, float gamma, float alpha) {
  if (gamma == 2.0f) {
    forward_rows_f32<true>(x, t, w, o, r0, r1, c, gamma, alpha);
  } else {
    forward_rows_f32<false>(x, t, w, o, r0, r1, c, gamma, alpha);
  }
}

DETCORE_CPU_CLONES void backward_f32(const float* go, const float* x, const int64_t* t, const float* w, float* o,
                                     int64_t r0, int64_t r1, int64_t c, float gamma, float alpha) {
  if (gamma == 2.0f) {
    backward_rows_f32<true>(go, x, t, w, o, r0, r1, c, gamma, alpha);
  } else {
    backward_rows_f32<false>(go, x, t, w, o, r0, r1, c, gamma, alpha);
  }
}

template <typename T>
void forward_generic(const T* x, const int64_t* t, const T* w, T* o, int64_t r0, int64_t r1, int64_t c, T gamma,
                     T alpha) {
  for (int64_t n = r0; n < r1; ++n) {
    const T wn = w ? w[n] : T(1);
    for (int64_t k = 0; k < c; ++k) o[n * c + k] = focal_loss_elem(x[n * c + k], t[n] == k, gamma, alpha) * wn;
  }
}

template <typename T>
void backward_generic(const T* go, const T* x, const int64_t* t, const T* w, T* o, int64_t r0, int64_t r1, int64_t c,
                      T gamma, T alpha) {
  for (int64_t n = r0; n < r1; ++n) {
    const T wn = w ? w[n] : T(1);
    for (int64_t k = 0; k < c; ++k) {
      const int64_t i = n * c + k;
      o[i] = focal_loss_grad(x[i], t[n] == k, gamma, alpha) * go[i] * wn;
    }
  }
}

void forward_rows(const float* x, const int64_t* t, const float* w, float* o, int64_t r0, int64_t r1, int64_t c,
                  float gamma, float alpha) {
  forward_f32(x, t, w, o, r0, r1, c, gamma, alpha);
}
void forward_rows(const double* x, const int64_t* t, const double* w, double* o, int64_t r0, int64_t r1, int64_t c,
                  double gamma, double alpha) {
  forward_generic(x, t, w, o, r0, r1, c, gamma, alpha);
}
void backward_rows(const float* go, const float* x, const int64_t* t, const float* w, float* o, int64_t r0,
                   int64_t r1, int64_t c, float gamma, float alpha) {
  backward_f32(go, x, t, w, o, r0, r1, c, gamma, alpha);
}
void backward_rows(const double* go, const double* x, const int64_t* t, const double* w, double* o, int64_t r0,
                   int64_t r1, int64_t c, double gamma, double alpha) {
  backward_generic(go, x, t, w, o, r0, r1, c, gamma, alpha);
}

}  // namespace

at::Tensor sigmoid_focal_loss_cpu(const at::Tensor& logits_, const at::Tensor& targets_,
                                  const c10::optional<at::Tensor>& weight_, double gamma, double alpha) {
  check_focal_args("sigmoid_focal_loss", logits_, targets_, weight_);
  const at::Tensor logits = logits_.contiguous(), targets = targets_.contiguous();
  const bool has_w = weight_.has_value() && weight_->defined();
  const at::Tensor weight = has_w ? weight_->contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(logits);
  const int64_t c = logits.size(1);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "detcore_focal_cpu", [&] {
    const scalar_t* x = logits.data_ptr<scalar_t>();
    const int64_t* t = targets.data_ptr<int64_t>();
    const scalar_t* w = has_w ? weight.data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, logits.size(0), kRowGrain, [&](int64_t r0, int64_t r1) {
      forward_rows(x, t, w, o, r0, r1, c, static_cast<scalar_t>(gamma), static_cast<scalar_t>(alpha));
    });
  });
  return out;
}

at::Tensor sigmoid_focal_loss_backward_cpu(const at::Tensor& grad_, const at::Tensor& logits_,
                                           const at::Tensor& targets_, const c10::optional<at::Tensor>& weight_,
                                           double gamma, double alpha) {
  check_focal_args("sigmoid_focal_loss backward", logits_, targets_, weight_);
  const at::Tensor grad = grad_.contiguous(), logits = logits_.contiguous(), targets = targets_.contiguous();
  TORCH_CHECK(grad.sizes() == logits.sizes(), "sigmoid_focal_loss backward: grad shape ", grad.sizes(),
              " differs from logits shape ", logits.sizes());
  const bool has_w = weight_.has_value() && weight_->defined();
  const at::Tensor weight = has_w ? weight_->contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(logits);
  const int64_t c = logits.size(1);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "detcore_focal_backward_cpu", [&] {
    const scalar_t* x = logits.data_ptr<scalar_t>();
    const scalar_t* go = grad.data_ptr<scalar_t>();
    const int64_t* t = targets.data_ptr<int64_t>();
    const scalar_t* w = has_w ? weight.data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, logits.size(0), kRowGrain, [&](int64_t r0, int64_t r1) {
      backward_rows(go, x, t, w, o, r0, r1, c, static_cast<scalar_t>(gamma), static_cast<scalar_t>(alpha));
    });
  });
  return out;
}

}  // namespace detcore
