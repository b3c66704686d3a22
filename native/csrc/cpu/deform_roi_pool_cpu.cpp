// Deformable RoI pooling (DCN v1; the modulated variant multiplies the result by its mask outside the kernel)
// and position-sensitive RoI pooling (R-FCN) on the CPU, forward and backward.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../common/deform_roi_pool_common.h"
#include "../ops.h"

namespace detcore {
namespace {

// The samples of every bin of one roi, bin-major: bin b owns samples [b * per_bin, (b + 1) * per_bin).
template <typename T>
void deform_roi_samples(const DeformRoiGeometry<T>& g, const T* offset_n, int64_t pooled_h, int64_t pooled_w,
                        int64_t height, int64_t width, T gamma, std::vector<RoiSample<T>>& out) {
  const int64_t bins = pooled_h * pooled_w, per_bin = g.grid_h * g.grid_w;
  out.resize(bins * per_bin);
  RoiSample<T>* s = out.data();
  for (int64_t ph = 0; ph < pooled_h; ++ph)
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      T shift_w = T(0), shift_h = T(0);
      if (offset_n != nullptr) {
        shift_w = gamma * g.roi_w * offset_n[ph * pooled_w + pw];
        shift_h = gamma * g.roi_h * offset_n[bins + ph * pooled_w + pw];
      }
      for (int64_t iy = 0; iy < g.grid_h; ++iy) {
        const T y = deform_roi_sample(g.start_h, shift_h, ph, g.bin_h, iy, g.grid_h);
        for (int64_t ix = 0; ix < g.grid_w; ++ix) {
          const T x = deform_roi_sample(g.start_w, shift_w, pw, g.bin_w, ix, g.grid_w);
          *s++ = roi_sample(height, width, y, x);
        }
      }
    }
}

template <typename T>
void deform_roi_pool_forward_impl(const T* input, const T* rois, const T* offset, T* out, int64_t num_rois,
                                  int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t pooled_h,
                                  int64_t pooled_w, T scale, int64_t sampling_ratio, T gamma) {
  const int64_t bins = pooled_h * pooled_w;
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<RoiSample<T>> samples;
    for (int64_t n = begin; n < end; ++n) {
      T* o = out + n * channels * bins;
      const DeformRoiGeometry<T> g = deform_roi_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio);
      if (g.batch < 0 || g.batch >= batch) {
        for (int64_t i = 0; i < channels * bins; ++i) o[i] = T(0);
        continue;
      }
      deform_roi_samples(g, offset ? offset + n * 2 * bins : nullptr, pooled_h, pooled_w, height, width, gamma,
                         samples);
      const int64_t per_bin = g.grid_h * g.grid_w;
      for (int64_t c = 0; c < channels; ++c) {
        const T* plane = input + (g.batch * channels + c) * height * width;
        for (int64_t b = 0; b < bins; ++b) {
          const RoiSample<T>* s = samples.data() + b * per_bin;
          T acc = T(0);
          for (int64_t i = 0; i < per_bin; ++i) {
            if (!s[i].valid) continue;
            acc += s[i].w[0] * plane[s[i].p[0]] + s[i].w[1] * plane[s[i].p[1]] + s[i].w[2] * plane[s[i].p[2]] +
                   s[i].w[3] * plane[s[i].p[3]];
          }
          o[c * bins + b] = acc / g.count;
        }
      }
    }
  });
}

// grad_input: threads own channel ranges (no two threads write one plane); grad_offset: threads own rois.
template <typename T>
void deform_roi_pool_backward_impl(const T* grad, const T* input, const T* rois, const T* offset, T* grad_input,
                                   T* grad_offset, int64_t num_rois, int64_t batch, int64_t channels,
                                   int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w, T scale,
                                   int64_t sampling_ratio, T gamma) {
  const int64_t bins = pooled_h * pooled_w, plane_size = height * width;
  at::parallel_for(0, channels, 1, [&](int64_t c0, int64_t c1) {
    std::vector<RoiSample<T>> samples;
    for (int64_t n = 0; n < num_rois; ++n) {
      const DeformRoiGeometry<T> g = deform_roi_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio);
      if (g.batch < 0 || g.batch >= batch) continue;
      deform_roi_samples(g, offset ? offset + n * 2 * bins : nullptr, pooled_h, pooled_w, height, width, gamma,
                         samples);
      const int64_t per_bin = g.grid_h * g.grid_w;
      for (int64_t c = c0; c < c1; ++c) {
        T* plane = grad_input + (g.batch * channels + c) * plane_size;
        const T* go = grad + (n * channels + c) * bins;
        for (int64_t b = 0; b < bins; ++b) {
          const T gv = go[b] / g.count;
          const RoiSample<T>* s = samples.data() + b * per_bin;
          for (int64_t i = 0; i < per_bin; ++i) {
            if (!s[i].valid) continue;
            for (int q = 0; q < 4; ++q) plane[s[i].p[q]] += s[i].w[q] * gv;
          }
        }
      }
    }
  });
  if (offset == nullptr || grad_offset == nullptr) return;
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<RoiSample<T>> samples;
    std::vector<T> gx(bins), gy(bins);
    for (int64_t n = begin; n < end; ++n) {
      T* go = grad_offset + n * 2 * bins;
      for (int64_t b = 0; b < 2 * bins; ++b) go[b] = T(0);
      const DeformRoiGeometry<T> g = deform_roi_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio);
      if (g.batch < 0 || g.batch >= batch) continue;
      deform_roi_samples(g, offset + n * 2 * bins, pooled_h, pooled_w, height, width, gamma, samples);
      const int64_t per_bin = g.grid_h * g.grid_w;
      std::fill(gx.begin(), gx.end(), T(0));
      std::fill(gy.begin(), gy.end(), T(0));
      for (int64_t c = 0; c < channels; ++c) {
        const T* plane = input + (g.batch * channels + c) * plane_size;
        const T* gc = grad + (n * channels + c) * bins;
        for (int64_t b = 0; b < bins; ++b) {
          const RoiSample<T>* s = samples.data() + b * per_bin;
          T sx = T(0), sy = T(0);
          for (int64_t i = 0; i < per_bin; ++i) {
            if (!s[i].valid) continue;
            for (int q = 0; q < 4; ++q) {
              const T v = plane[s[i].p[q]];
              sx += s[i].dx[q] * v;
              sy += s[i].dy[q] * v;
            }
          }
          const T gv = gc[b] / g.count;
          gx[b] += gv * sx;
          gy[b] += gv * sy;
        }
      }
      for (int64_t b = 0; b < bins; ++b) {
        go[b] = gamma * g.roi_w * gx[b];
        go[bins + b] = gamma * g.roi_h * gy[b];
      }
    }
  });
}

template <typename T>
void ps_roi_pool_forward_impl(const T* input, const T* rois, T* out, int64_t num_rois, int64_t batch,
                              int64_t channels, int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                              T scale) {
  const int64_t bins = pooled_h * pooled_w, out_dim = channels / bins;
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<PsBin> pb(bins);
    for (int64_t n = begin; n < end; ++n) {
      T* o = out + n * out_dim * bins;
      const int64_t b = to_index(rois[5 * n]);
      if (b < 0 || b >= batch) {
        for (int64_t i = 0; i < out_dim * bins; ++i) o[i] = T(0);
        continue;
      }
      for (int64_t ph = 0; ph < pooled_h; ++ph)
        for (int64_t pw = 0; pw < pooled_w; ++pw)
          pb[ph * pooled_w + pw] = ps_roi_bin(rois + 5 * n, scale, pooled_h, pooled_w, ph, pw, height, width);
      for (int64_t c = 0; c < out_dim; ++c)
        for (int64_t k = 0; k < bins; ++k) {
          const PsBin& bin = pb[k];
          const T* plane = input + (b * channels + c * bins + k) * height * width;
          T sum = T(0);
          for (int64_t h = bin.hstart; h < bin.hend; ++h)
            for (int64_t w = bin.wstart; w < bin.wend; ++w) sum += plane[h * width + w];
          const int64_t area = (bin.hend - bin.hstart) * (bin.wend - bin.wstart);
          o[c * bins + k] = area > 0 ? sum / static_cast<T>(area) : T(0);
        }
    }
  });
}

template <typename T>
void ps_roi_pool_backward_impl(const T* grad, const T* rois, T* grad_input, int64_t num_rois, int64_t batch,
                               int64_t channels, int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                               T scale) {
  const int64_t bins = pooled_h * pooled_w, out_dim = channels / bins;
  // input channel ci = c * bins + k receives only bin k of output channel c: threads own channel ranges.
  at::parallel_for(0, channels, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t n = 0; n < num_rois; ++n) {
      const int64_t b = to_index(rois[5 * n]);
      if (b < 0 || b >= batch) continue;
      for (int64_t ci = c0; ci < c1; ++ci) {
        const int64_t k = ci % bins, ph = k / pooled_w, pw = k % pooled_w;
        const PsBin bin = ps_roi_bin(rois + 5 * n, scale, pooled_h, pooled_w, ph, pw, height, width);
        const int64_t area = (bin.hend - bin.hstart) * (bin.wend - bin.wstart);
        if (area <= 0) continue;
        const T gv = grad[(n * out_dim + ci / bins) * bins + k] / static_cast<T>(area);
        T* plane = grad_input + (b * channels + ci) * height * width;
        for (int64_t h = bin.hstart; h < bin.hend; ++h)
          for (int64_t w = bin.wstart; w < bin.wend; ++w) plane[h * width + w] += gv;
      }
    }
  });
}

}  // namespace

at::Tensor deform_roi_pool_cpu(const at::Tensor& input_, const at::Tensor& rois_,
                               const c10::optional<at::Tensor>& offset_, double spatial_scale, int64_t pooled_h,
                               int64_t pooled_w, int64_t sampling_ratio, double gamma) {
  check_deform_roi_pool_args("deform_roi_pool", input_, rois_, offset_, pooled_h, pooled_w);
  const at::Tensor input = input_.contiguous(), rois = rois_.contiguous();
  const bool has_offset = offset_.has_value() && offset_->defined();
  const at::Tensor offset = has_offset ? offset_->contiguous() : at::Tensor();
  const int64_t k = rois.size(0), c = input.size(1);
  at::Tensor out = at::zeros({k, c, pooled_h, pooled_w}, input.options());
  if (out.numel() == 0 || input.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_deform_roi_pool_cpu", [&] {
    deform_roi_pool_forward_impl<scalar_t>(input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                                           has_offset ? offset.data_ptr<scalar_t>() : nullptr,
                                           out.data_ptr<scalar_t>(), k, input.size(0), c, input.size(2),
                                           input.size(3), pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale),
                                           sampling_ratio, static_cast<scalar_t>(gamma));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> deform_roi_pool_backward_cpu(const at::Tensor& grad_, const at::Tensor& input_,
                                                                const at::Tensor& rois_,
                                                                const c10::optional<at::Tensor>& offset_,
                                                                double spatial_scale, int64_t pooled_h,
                                                                int64_t pooled_w, int64_t sampling_ratio,
                                                                double gamma) {
  check_deform_roi_pool_args("deform_roi_pool backward", input_, rois_, offset_, pooled_h, pooled_w);
  const at::Tensor input = input_.contiguous(), rois = rois_.contiguous(), grad = grad_.contiguous();
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == input.size(1) &&
                  grad.size(2) == pooled_h && grad.size(3) == pooled_w,
              "deform_roi_pool backward: grad has shape ", grad.sizes(), ", expected (", rois.size(0), ", ",
              input.size(1), ", ", pooled_h, ", ", pooled_w, ")");
  const bool has_offset = offset_.has_value() && offset_->defined();
  const at::Tensor offset = has_offset ? offset_->contiguous() : at::Tensor();
  at::Tensor grad_input = at::zeros_like(input);
  at::Tensor grad_offset = has_offset ? at::zeros_like(offset) : at::zeros({0}, input.options());
  if (grad.numel() == 0 || input.numel() == 0) return {grad_input, grad_offset};
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_deform_roi_pool_backward_cpu", [&] {
    deform_roi_pool_backward_impl<scalar_t>(
        grad.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
        has_offset ? offset.data_ptr<scalar_t>() : nullptr, grad_input.data_ptr<scalar_t>(),
        has_offset ? grad_offset.data_ptr<scalar_t>() : nullptr, rois.size(0), input.size(0), input.size(1),
        input.size(2), input.size(3), pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale), sampling_ratio,
        static_cast<scalar_t>(gamma));
  });
  return {grad_input, grad_offset};
}

at::Tensor ps_roi_pool_cpu(const at::Tensor& input_, const at::Tensor& rois_, double spatial_scale,
                           int64_t pooled_h, int64_t pooled_w) {
  check_ps_roi_pool_args("ps_roi_pool", input_, rois_, pooled_h, pooled_w);
  const at::Tensor input = input_.contiguous(), rois = rois_.contiguous();
  const int64_t k = rois.size(0), out_dim = input.size(1) / (pooled_h * pooled_w);
  at::Tensor out = at::zeros({k, out_dim, pooled_h, pooled_w}, input.options());
  if (out.numel() == 0 || input.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_ps_roi_pool_cpu", [&] {
    ps_roi_pool_forward_impl<scalar_t>(input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                                       out.data_ptr<scalar_t>(), k, input.size(0), input.size(1), input.size(2),
                                       input.size(3), pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale));
  });
  return out;
}

at::Tensor ps_roi_pool_backward_cpu(const at::Tensor& grad_, const at::Tensor& rois_, double spatial_scale,
                                    int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels,
                                    int64_t height, int64_t width) {
  const at::Tensor grad = grad_.contiguous(), rois = rois_.contiguous();
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0 && channels % (pooled_h * pooled_w) == 0,
              "ps_roi_pool backward: channels ", channels, " must divide by ", pooled_h, "x", pooled_w);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels / (pooled_h * pooled_w) &&
                  grad.size(2) == pooled_h && grad.size(3) == pooled_w,
              "ps_roi_pool backward: grad has shape ", grad.sizes(), ", expected (", rois.size(0), ", ",
              channels / (pooled_h * pooled_w), ", ", pooled_h, ", ", pooled_w, ")");
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad.options());
  if (grad.numel() == 0 || grad_input.numel() == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detcore_ps_roi_pool_backward_cpu", [&] {
    ps_roi_pool_backward_impl<scalar_t>(grad.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                                        grad_input.data_ptr<scalar_t>(), rois.size(0), batch, channels, height,
                                        width, pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale));
  });
  return grad_input;
}

}  // namespace detcore
