// Sigmoid focal loss (per element) and its gradient on the CPU.
#include <ATen/Parallel.h>

#include "../common/focal_common.h"
#include "../ops.h"

namespace detcore {

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
    const scalar_t g = static_cast<scalar_t>(gamma), a = static_cast<scalar_t>(alpha);
    at::parallel_for(0, logits.numel(), 16384, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t n = i / c;
        scalar_t v = focal_loss_elem(x[i], t[n] == i % c, g, a);
        o[i] = w ? v * w[n] : v;
      }
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
    const scalar_t g = static_cast<scalar_t>(gamma), a = static_cast<scalar_t>(alpha);
    at::parallel_for(0, logits.numel(), 16384, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t n = i / c;
        scalar_t v = focal_loss_grad(x[i], t[n] == i % c, g, a) * go[i];
        o[i] = w ? v * w[n] : v;
      }
    });
  });
  return out;
}

}  // namespace detcore
