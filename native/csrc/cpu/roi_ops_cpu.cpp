// RoIAlign and RoIPool (forward and backward) on the CPU.
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../common/roi_align_common.h"
#include "../ops.h"

namespace detcore {
namespace {

template <typename T>
void roi_align_taps_for(const RoiGeometry<T>& g, int64_t height, int64_t width, int64_t pooled_h,
                        int64_t pooled_w, std::vector<BilinearTaps<T>>& taps) {
  taps.resize(pooled_h * pooled_w * g.grid_h * g.grid_w);
  size_t k = 0;
  for (int64_t ph = 0; ph < pooled_h; ++ph)
    for (int64_t pw = 0; pw < pooled_w; ++pw)
      for (int64_t iy = 0; iy < g.grid_h; ++iy) {
        const T y = roi_align_sample(g.start_h, ph, g.bin_h, iy, g.grid_h);
        for (int64_t ix = 0; ix < g.grid_w; ++ix) {
          const T x = roi_align_sample(g.start_w, pw, g.bin_w, ix, g.grid_w);
          taps[k++] = roi_align_taps(height, width, y, x);
        }
      }
}

// Channels-last kernels: `input` is (B, H, W, C), so each bilinear tap reads a contiguous C-vector and the
// inner loop over channels vectorises; `out` is (K, oh, ow, C).
template <typename T>
void roi_align_forward_impl(const T* input, const T* rois, T* out, int64_t num_rois, int64_t batch,
                            int64_t channels, int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                            T scale, int64_t sampling_ratio, bool aligned) {
  const int64_t bins = pooled_h * pooled_w;
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<BilinearTaps<T>> taps;
    std::vector<T> acc(channels);
    for (int64_t n = begin; n < end; ++n) {
      const RoiGeometry<T> g = roi_align_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio, aligned);
      T* o = out + n * bins * channels;
      if (g.batch < 0 || g.batch >= batch) {
        std::fill(o, o + channels * bins, T(0));
        continue;
      }
      roi_align_taps_for(g, height, width, pooled_h, pooled_w, taps);
      const int64_t samples = g.grid_h * g.grid_w;
      const T* base = input + g.batch * height * width * channels;
      const BilinearTaps<T>* t = taps.data();
      const T inv = T(1) / g.count;
      for (int64_t bin = 0; bin < bins; ++bin) {
        T* a = acc.data();
        std::fill(a, a + channels, T(0));
        for (int64_t s = 0; s < samples; ++s, ++t) {
          if (t->w1 == T(0) && t->w2 == T(0) && t->w3 == T(0) && t->w4 == T(0)) continue;
          const T *r1 = base + t->p1 * channels, *r2 = base + t->p2 * channels;
          const T *r3 = base + t->p3 * channels, *r4 = base + t->p4 * channels;
          const T w1 = t->w1, w2 = t->w2, w3 = t->w3, w4 = t->w4;
          for (int64_t c = 0; c < channels; ++c) a[c] += w1 * r1[c] + w2 * r2[c] + w3 * r3[c] + w4 * r4[c];
        }
        T* ob = o + bin * channels;
        for (int64_t c = 0; c < channels; ++c) ob[c] = a[c] * inv;
      }
    }
  });
}

// grad (K, oh, ow, C) -> grad_input (B, H, W, C). Threads own disjoint channel ranges: no atomics needed.
template <typename T>
void roi_align_backward_impl(const T* grad, const T* rois, T* grad_input, int64_t num_rois, int64_t batch,
                             int64_t channels, int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                             T scale, int64_t sampling_ratio, bool aligned) {
  const int64_t bins = pooled_h * pooled_w;
  const int64_t grain = std::max<int64_t>(8, channels / std::max(1, at::get_num_threads()));
  at::parallel_for(0, channels, grain, [&](int64_t c0, int64_t c1) {
    std::vector<BilinearTaps<T>> taps;
    for (int64_t n = 0; n < num_rois; ++n) {
      const RoiGeometry<T> g = roi_align_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio, aligned);
      if (g.batch < 0 || g.batch >= batch) continue;
      roi_align_taps_for(g, height, width, pooled_h, pooled_w, taps);
      const int64_t samples = g.grid_h * g.grid_w;
      T* base = grad_input + g.batch * height * width * channels;
      const BilinearTaps<T>* t = taps.data();
      const T inv = T(1) / g.count;
      for (int64_t bin = 0; bin < bins; ++bin) {
        const T* go = grad + (n * bins + bin) * channels;
        for (int64_t s = 0; s < samples; ++s, ++t) {
          T *r1 = base + t->p1 * channels, *r2 = base + t->p2 * channels;
          T *r3 = base + t->p3 * channels, *r4 = base + t->p4 * channels;
          const T w1 = t->w1 * inv, w2 = t->w2 * inv, w3 = t->w3 * inv, w4 = t->w4 * inv;
          if (w1 == T(0) && w2 == T(0) && w3 == T(0) && w4 == T(0)) continue;
          for (int64_t c = c0; c < c1; ++c) {
            const T gv = go[c];
            r1[c] += w1 * gv;
            r2[c] += w2 * gv;
            r3[c] += w3 * gv;
            r4[c] += w4 * gv;
          }
        }
      }
    }
  });
}

struct PoolBin {
  int64_t hstart, hend, wstart, wend;
};

template <typename T>
void roi_pool_bins(const T* roi, T scale, int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                   std::vector<PoolBin>& bins) {
  const int64_t sw = static_cast<int64_t>(std::round(roi[1] * scale));
  const int64_t sh = static_cast<int64_t>(std::round(roi[2] * scale));
  const int64_t ew = static_cast<int64_t>(std::round(roi[3] * scale));
  const int64_t eh = static_cast<int64_t>(std::round(roi[4] * scale));
  const T bin_h = static_cast<T>(std::max<int64_t>(eh - sh + 1, 1)) / static_cast<T>(pooled_h);
  const T bin_w = static_cast<T>(std::max<int64_t>(ew - sw + 1, 1)) / static_cast<T>(pooled_w);
  bins.resize(pooled_h * pooled_w);
  for (int64_t ph = 0; ph < pooled_h; ++ph)
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      PoolBin& b = bins[ph * pooled_w + pw];
      b.hstart = std::min(std::max<int64_t>(static_cast<int64_t>(std::floor(static_cast<T>(ph) * bin_h)) + sh, 0), height);
      b.hend = std::min(std::max<int64_t>(static_cast<int64_t>(std::ceil(static_cast<T>(ph + 1) * bin_h)) + sh, 0), height);
      b.wstart = std::min(std::max<int64_t>(static_cast<int64_t>(std::floor(static_cast<T>(pw) * bin_w)) + sw, 0), width);
      b.wend = std::min(std::max<int64_t>(static_cast<int64_t>(std::ceil(static_cast<T>(pw + 1) * bin_w)) + sw, 0), width);
    }
}

template <typename T>
void roi_pool_forward_impl(const T* input, const T* rois, T* out, int64_t* argmax, int64_t num_rois, int64_t batch,
                           int64_t channels, int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                           T scale) {
  const int64_t nb = pooled_h * pooled_w;
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<PoolBin> bins;
    for (int64_t n = begin; n < end; ++n) {
      const T* roi = rois + 5 * n;
      const int64_t b = static_cast<int64_t>(roi[0]);
      T* o = out + n * channels * nb;
      int64_t* a = argmax + n * channels * nb;
      if (b < 0 || b >= batch) {
        std::fill(o, o + channels * nb, T(0));
        std::fill(a, a + channels * nb, int64_t(-1));
        continue;
      }
      roi_pool_bins(roi, scale, height, width, pooled_h, pooled_w, bins);
      for (int64_t c = 0; c < channels; ++c) {
        const T* plane = input + (b * channels + c) * height * width;
        for (int64_t k = 0; k < nb; ++k) {
          const PoolBin& bin = bins[k];
          const bool empty = bin.hend <= bin.hstart || bin.wend <= bin.wstart;
          T best = empty ? T(0) : -std::numeric_limits<T>::infinity();
          int64_t arg = -1;
          for (int64_t h = bin.hstart; h < bin.hend; ++h)
            for (int64_t w = bin.wstart; w < bin.wend; ++w) {
              const int64_t idx = h * width + w;
              if (plane[idx] > best || arg < 0) {
                best = plane[idx];
                arg = idx;
              }
            }
          o[c * nb + k] = best;
          a[c * nb + k] = arg;
        }
      }
    }
  });
}

}  // namespace

at::Tensor roi_align_cpu(const at::Tensor& input_, const at::Tensor& rois_, double spatial_scale, int64_t pooled_h,
                         int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
  check_rois("roi_align", input_, rois_);
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, "roi_align: output size must be positive, got ", pooled_h, "x", pooled_w);
  const at::Tensor rois = rois_.contiguous();
  const int64_t k = rois.size(0), c = input_.size(1);
  if (k * c == 0 || input_.numel() == 0) return at::zeros({k, c, pooled_h, pooled_w}, input_.options());
  const at::Tensor input = input_.permute({0, 2, 3, 1}).contiguous();  // (B, H, W, C)
  at::Tensor out = at::empty({k, pooled_h, pooled_w, c}, input_.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_roi_align_cpu", [&] {
    roi_align_forward_impl<scalar_t>(input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                     k, input_.size(0), c, input_.size(2), input_.size(3), pooled_h, pooled_w,
                                     static_cast<scalar_t>(spatial_scale), sampling_ratio, aligned);
  });
  return out.permute({0, 3, 1, 2}).contiguous();
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad_, const at::Tensor& rois_, double spatial_scale,
                                  int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels, int64_t height,
                                  int64_t width, int64_t sampling_ratio, bool aligned) {
  const at::Tensor rois = rois_.contiguous();
  const at::Tensor& grad = grad_;
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_h && grad.size(3) == pooled_w,
              "roi_align backward: grad has shape ", grad.sizes(), ", expected (", rois.size(0), ", ", channels, ", ",
              pooled_h, ", ", pooled_w, ")");
  if (grad.numel() == 0 || batch * channels * height * width == 0)
    return at::zeros({batch, channels, height, width}, grad.options());
  const at::Tensor grad_cl = grad.permute({0, 2, 3, 1}).contiguous();  // (K, oh, ow, C)
  at::Tensor grad_input = at::zeros({batch, height, width, channels}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detcore_roi_align_backward_cpu", [&] {
    roi_align_backward_impl<scalar_t>(grad_cl.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                                      grad_input.data_ptr<scalar_t>(), rois.size(0), batch, channels, height, width,
                                      pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale), sampling_ratio,
                                      aligned);
  });
  return grad_input.permute({0, 3, 1, 2}).contiguous();
}

std::tuple<at::Tensor, at::Tensor> roi_pool_cpu(const at::Tensor& input_, const at::Tensor& rois_,
                                                double spatial_scale, int64_t pooled_h, int64_t pooled_w) {
  check_rois("roi_pool", input_, rois_);
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, "roi_pool: output size must be positive, got ", pooled_h, "x", pooled_w);
  const at::Tensor input = input_.contiguous(), rois = rois_.contiguous();
  const int64_t k = rois.size(0), c = input.size(1);
  at::Tensor out = at::zeros({k, c, pooled_h, pooled_w}, input.options());
  at::Tensor argmax = at::full({k, c, pooled_h, pooled_w}, -1, input.options().dtype(at::kLong));
  if (out.numel() == 0 || input.numel() == 0) return {out, argmax};
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_roi_pool_cpu", [&] {
    roi_pool_forward_impl<scalar_t>(input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                    argmax.data_ptr<int64_t>(), k, input.size(0), c, input.size(2), input.size(3),
                                    pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale));
  });
  return {out, argmax};
}

at::Tensor roi_pool_backward_cpu(const at::Tensor& grad_, const at::Tensor& rois_, const at::Tensor& argmax_,
                                 double /*spatial_scale*/, int64_t pooled_h, int64_t pooled_w, int64_t batch,
                                 int64_t channels, int64_t height, int64_t width) {
  const at::Tensor grad = grad_.contiguous(), rois = rois_.contiguous(), argmax = argmax_.contiguous();
  TORCH_CHECK(argmax.sizes() == grad.sizes(), "roi_pool backward: argmax shape ", argmax.sizes(),
              " differs from grad shape ", grad.sizes());
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad.options());
  if (grad.numel() == 0 || grad_input.numel() == 0) return grad_input;
  const int64_t k = rois.size(0), nb = pooled_h * pooled_w;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detcore_roi_pool_backward_cpu", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* r = rois.data_ptr<scalar_t>();
    const int64_t* a = argmax.data_ptr<int64_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    at::parallel_for(0, channels, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t n = 0; n < k; ++n) {
        const int64_t b = static_cast<int64_t>(r[5 * n]);
        if (b < 0 || b >= batch) continue;
        for (int64_t c = c0; c < c1; ++c) {
          scalar_t* plane = gi + (b * channels + c) * height * width;
          const int64_t off = (n * channels + c) * nb;
          for (int64_t i = 0; i < nb; ++i)
            if (a[off + i] >= 0) plane[a[off + i]] += g[off + i];
        }
      }
    });
  });
  return grad_input;
}

}  // namespace detcore
