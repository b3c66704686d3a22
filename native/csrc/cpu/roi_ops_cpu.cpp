// RoIAlign and RoIPool (forward and backward) on the CPU.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "../common/roi_align_common.h"
#include "../ops.h"

namespace detcore {
namespace {

// Asks Linux to back a large, freshly allocated output with transparent huge pages. Filling a 400 MB
// RoIAlign output otherwise spends more time in 4 KiB page faults than in the pooling itself. Only a hint
// (what torch does for every allocation under THP_MEM_ALLOC_ENABLE=1): contents are unchanged, errors ignored.
inline void advise_huge_pages(const at::Tensor& t) {
#ifdef __linux__
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const size_t bytes = t.numel() * t.element_size();
  if (bytes < 8 * kHuge) return;
  const uintptr_t p = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t b = (p + kHuge - 1) & ~(kHuge - 1), e = (p + bytes) & ~(kHuge - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

// Bilinear sampling factorises over the axes: a sample (iy, ix) of bin (ph, pw) uses the row taps of
// (ph, iy) and the column taps of (pw, ix). `AxisTap` holds one axis' part of roi_align_taps(): the two
// clamped indices (rows already multiplied by the width), the fractions and whether the coordinate lies
// inside [-1, size]. A sample outside the map along either axis contributes nothing.
template <typename T>
struct AxisTap {
  int64_t low, high;
  T l, h;
  bool valid;
};

// Same clamping as roi_align_taps(), for one coordinate (NaN counts as outside).
template <typename T>
AxisTap<T> axis_tap(T v, int64_t size, int64_t stride) {
  AxisTap<T> t{0, 0, T(0), T(0), false};
  if (!(v >= T(-1) && v <= static_cast<T>(size))) return t;
  if (v <= T(0)) v = T(0);
  int64_t low = static_cast<int64_t>(v), high;
  if (low >= size - 1) {
    high = low = size - 1;
    v = static_cast<T>(low);
  } else {
    high = low + 1;
  }
  t.l = v - static_cast<T>(low);
  t.h = T(1) - t.l;
  t.low = low * stride;
  t.high = high * stride;
  t.valid = true;
  return t;
}

// The "pre_calc" tables of all rois, built once and shared read-only by the threads: roi n owns
// y[y_start[n] .. y_start[n] + pooled_h * grid_h) (index ph * grid_h + iy) and the same for x. They are a
// few KiB per roi, so the per-plane loops below read them from cache.
template <typename T>
struct RoiAlignTables {
  std::vector<RoiGeometry<T>> geom;
  std::vector<int64_t> y_start, x_start;
  std::vector<AxisTap<T>> y, x;
  std::vector<std::vector<int64_t>> rois_of_batch;  // valid rois of each image, in increasing order
};

template <typename T>
RoiAlignTables<T> roi_align_tables(const T* rois, int64_t num_rois, int64_t batch, int64_t height, int64_t width,
                                   int64_t pooled_h, int64_t pooled_w, T scale, int64_t sampling_ratio,
                                   bool aligned) {
  RoiAlignTables<T> tb;
  tb.geom.resize(num_rois);
  tb.y_start.resize(num_rois + 1);
  tb.x_start.resize(num_rois + 1);
  tb.rois_of_batch.resize(batch);
  int64_t ny = 0, nx = 0;
  for (int64_t n = 0; n < num_rois; ++n) {
    const RoiGeometry<T> g = roi_align_geometry(rois + 5 * n, scale, pooled_h, pooled_w, sampling_ratio, aligned);
    tb.geom[n] = g;
    tb.y_start[n] = ny;
    tb.x_start[n] = nx;
    if (g.batch < 0 || g.batch >= batch) continue;
    tb.rois_of_batch[g.batch].push_back(n);
    ny += pooled_h * g.grid_h;
    nx += pooled_w * g.grid_w;
  }
  tb.y_start[num_rois] = ny;
  tb.x_start[num_rois] = nx;
  tb.y.resize(ny);
  tb.x.resize(nx);
  at::parallel_for(0, num_rois, 64, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const RoiGeometry<T>& g = tb.geom[n];
      if (g.batch < 0 || g.batch >= batch) continue;
      AxisTap<T>* ty = tb.y.data() + tb.y_start[n];
      for (int64_t ph = 0; ph < pooled_h; ++ph)
        for (int64_t iy = 0; iy < g.grid_h; ++iy)
          *ty++ = axis_tap(roi_align_sample(g.start_h, ph, g.bin_h, iy, g.grid_h), height, width);
      AxisTap<T>* tx = tb.x.data() + tb.x_start[n];
      for (int64_t pw = 0; pw < pooled_w; ++pw)
        for (int64_t ix = 0; ix < g.grid_w; ++ix)
          *tx++ = axis_tap(roi_align_sample(g.start_w, pw, g.bin_w, ix, g.grid_w), width, int64_t(1));
    }
  });
  return tb;
}

// Work is split into (channel block, image) items of kBlock channels (channels left over when C is not a
// multiple of kBlock are done one at a time). An item copies its kBlock planes into a per-thread channels-last
// tile (H, W, kBlock) of a few MiB that stays in the cache while every roi of the image is pooled from it,
// so each bilinear tap reads kBlock adjacent values and the channel loop vectorises. Nothing is transposed
// as a whole and the output is written in its final (K, C, oh, ow) layout.
constexpr int64_t kBlock = 16;

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define DETCORE_ALWAYS_INLINE inline __attribute__((always_inline))
#define DETCORE_X86_AVX2 1
#else
#define DETCORE_ALWAYS_INLINE inline
#endif

struct ChannelBlock {
  int64_t c0, size;
};

inline std::vector<ChannelBlock> channel_blocks(int64_t channels) {
  std::vector<ChannelBlock> blocks;
  int64_t c = 0;
  for (; c + kBlock <= channels; c += kBlock) blocks.push_back({c, kBlock});
  for (; c < channels; ++c) blocks.push_back({c, 1});
  return blocks;
}

// tile[p * CB + j] = planes[j * plane_size + p] for CB consecutive planes: 4 x 4 blocks, so that both the
// reads (4 per plane) and the writes (4 per pixel) are contiguous.
template <typename T, int64_t CB>
void planes_to_tile(const T* planes, int64_t plane_size, T* tile) {
  static_assert(CB % 4 == 0, "channel block must be a multiple of 4");
  const int64_t p4 = plane_size - plane_size % 4;
  for (int64_t p = 0; p < p4; p += 4)
    for (int64_t j = 0; j < CB; j += 4) {
      const T* s0 = planes + j * plane_size + p;
      const T *s1 = s0 + plane_size, *s2 = s1 + plane_size, *s3 = s2 + plane_size;
      T* d = tile + p * CB + j;
      for (int64_t q = 0; q < 4; ++q, d += CB) {
        d[0] = s0[q];
        d[1] = s1[q];
        d[2] = s2[q];
        d[3] = s3[q];
      }
    }
  for (int64_t p = p4; p < plane_size; ++p)
    for (int64_t j = 0; j < CB; ++j) tile[p * CB + j] = planes[j * plane_size + p];
}

// Pools every roi of `ids` from a channels-last tile of CB channels into out[n, c0 : c0 + CB]. Each bin is
// accumulated, per channel, exactly as with per-sample BilinearTaps: acc += w1 * v1 + w2 * v2 + w3 * v3 +
// w4 * v4 with w1 = hy * hx etc., over the samples inside the map in (iy, ix) order, then times 1 / count.
template <typename T, int64_t CB>
DETCORE_ALWAYS_INLINE void roi_align_forward_block(const T* tile, const RoiAlignTables<T>& tb, const std::vector<int64_t>& ids, T* out,
                             int64_t channels, int64_t c0, int64_t pooled_h, int64_t pooled_w) {
  const int64_t bins = pooled_h * pooled_w;
  for (const int64_t n : ids) {
    const RoiGeometry<T>& g = tb.geom[n];
    const int64_t gh = g.grid_h, gw = g.grid_w;
    const AxisTap<T>* ys = tb.y.data() + tb.y_start[n];
    const AxisTap<T>* xs = tb.x.data() + tb.x_start[n];
    const T inv = T(1) / g.count;
    T* o = out + (n * channels + c0) * bins;
    for (int64_t ph = 0; ph < pooled_h; ++ph) {
      const AxisTap<T>* yb = ys + ph * gh;
      for (int64_t pw = 0; pw < pooled_w; ++pw) {
        const AxisTap<T>* xb = xs + pw * gw;
        T acc[CB];
        for (int64_t j = 0; j < CB; ++j) acc[j] = T(0);
        for (int64_t iy = 0; iy < gh; ++iy) {
          const AxisTap<T>& ty = yb[iy];
          if (!ty.valid) continue;
          const T* rl = tile + ty.low * CB;
          const T* rh = tile + ty.high * CB;
          for (int64_t ix = 0; ix < gw; ++ix) {
            const AxisTap<T>& tx = xb[ix];
            if (!tx.valid) continue;
            const T w1 = ty.h * tx.h, w2 = ty.h * tx.l, w3 = ty.l * tx.h, w4 = ty.l * tx.l;
            const T *v1 = rl + tx.low * CB, *v2 = rl + tx.high * CB, *v3 = rh + tx.low * CB, *v4 = rh + tx.high * CB;
            for (int64_t j = 0; j < CB; ++j) acc[j] += w1 * v1[j] + w2 * v2[j] + w3 * v3[j] + w4 * v4[j];
          }
        }
        const int64_t bin = ph * pooled_w + pw;
        for (int64_t j = 0; j < CB; ++j) o[j * bins + bin] = acc[j] * inv;
      }
    }
  }
}

// The block kernel compiled for AVX2 (twice the SIMD width of the baseline SSE2 build), chosen at run time.
// Only AVX2 is enabled, not FMA, so every product is still rounded before its sum: same results.
#ifdef DETCORE_X86_AVX2
template <typename T>
__attribute__((target("avx2"))) void roi_align_forward_block_avx2(const T* tile, const RoiAlignTables<T>& tb,
                                                                  const std::vector<int64_t>& ids, T* out,
                                                                  int64_t channels, int64_t c0, int64_t pooled_h,
                                                                  int64_t pooled_w) {
  roi_align_forward_block<T, kBlock>(tile, tb, ids, out, channels, c0, pooled_h, pooled_w);
}

inline bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

// Backward of roi_align_forward_block: scatters grad[n, c0 : c0 + CB] into a zeroed channels-last tile with
// the weights w_i / count, rois in increasing order, bins and samples in forward order.
template <typename T, int64_t CB>
void roi_align_backward_block(const T* grad, const RoiAlignTables<T>& tb, const std::vector<int64_t>& ids, T* tile,
                              int64_t channels, int64_t c0, int64_t pooled_h, int64_t pooled_w) {
  const int64_t bins = pooled_h * pooled_w;
  for (const int64_t n : ids) {
    const RoiGeometry<T>& g = tb.geom[n];
    const int64_t gh = g.grid_h, gw = g.grid_w;
    const AxisTap<T>* ys = tb.y.data() + tb.y_start[n];
    const AxisTap<T>* xs = tb.x.data() + tb.x_start[n];
    const T inv = T(1) / g.count;
    const T* go = grad + (n * channels + c0) * bins;
    for (int64_t ph = 0; ph < pooled_h; ++ph) {
      const AxisTap<T>* yb = ys + ph * gh;
      for (int64_t pw = 0; pw < pooled_w; ++pw) {
        const AxisTap<T>* xb = xs + pw * gw;
        const int64_t bin = ph * pooled_w + pw;
        T gv[CB];
        for (int64_t j = 0; j < CB; ++j) gv[j] = go[j * bins + bin];
        for (int64_t iy = 0; iy < gh; ++iy) {
          const AxisTap<T>& ty = yb[iy];
          if (!ty.valid) continue;
          T* rl = tile + ty.low * CB;
          T* rh = tile + ty.high * CB;
          for (int64_t ix = 0; ix < gw; ++ix) {
            const AxisTap<T>& tx = xb[ix];
            if (!tx.valid) continue;
            const T w1 = ty.h * tx.h * inv, w2 = ty.h * tx.l * inv, w3 = ty.l * tx.h * inv, w4 = ty.l * tx.l * inv;
            T *v1 = rl + tx.low * CB, *v2 = rl + tx.high * CB, *v3 = rh + tx.low * CB, *v4 = rh + tx.high * CB;
            for (int64_t j = 0; j < CB; ++j) v1[j] += w1 * gv[j];
            for (int64_t j = 0; j < CB; ++j) v2[j] += w2 * gv[j];
            for (int64_t j = 0; j < CB; ++j) v3[j] += w3 * gv[j];
            for (int64_t j = 0; j < CB; ++j) v4[j] += w4 * gv[j];
          }
        }
      }
    }
  }
}

// NCHW forward: `input` (B, C, H, W), `out` (K, C, oh, ow).
template <typename T>
void roi_align_forward_impl(const T* input, const T* rois, T* out, int64_t num_rois, int64_t batch,
                            int64_t channels, int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                            T scale, int64_t sampling_ratio, bool aligned) {
  const int64_t bins = pooled_h * pooled_w;
  const int64_t plane_size = height * width;
  const RoiAlignTables<T> tb =
      roi_align_tables(rois, num_rois, batch, height, width, pooled_h, pooled_w, scale, sampling_ratio, aligned);
  for (int64_t n = 0; n < num_rois; ++n)  // rois with an out-of-range batch index pool to zero
    if (tb.geom[n].batch < 0 || tb.geom[n].batch >= batch)
      std::fill(out + n * channels * bins, out + (n + 1) * channels * bins, T(0));
  const std::vector<ChannelBlock> blocks = channel_blocks(channels);
  const int64_t items = static_cast<int64_t>(blocks.size()) * batch;
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> tile;
    for (int64_t item = begin; item < end; ++item) {
      const ChannelBlock cb = blocks[item / batch];
      const int64_t b = item % batch;
      const std::vector<int64_t>& ids = tb.rois_of_batch[b];
      if (ids.empty()) continue;
      const T* planes = input + (b * channels + cb.c0) * plane_size;
      if (cb.size == kBlock) {
        tile.resize(plane_size * kBlock);
        planes_to_tile<T, kBlock>(planes, plane_size, tile.data());
#ifdef DETCORE_X86_AVX2
        if (cpu_has_avx2()) {
          roi_align_forward_block_avx2<T>(tile.data(), tb, ids, out, channels, cb.c0, pooled_h, pooled_w);
          continue;
        }
#endif
        roi_align_forward_block<T, kBlock>(tile.data(), tb, ids, out, channels, cb.c0, pooled_h, pooled_w);
      } else {
        roi_align_forward_block<T, 1>(planes, tb, ids, out, channels, cb.c0, pooled_h, pooled_w);
      }
    }
  });
}

// NCHW backward: grad (K, C, oh, ow) -> grad_input (B, C, H, W), every plane written once by one thread (no
// atomics); each element receives its contributions in (roi, bin, sample) order whatever the thread count.
template <typename T>
void roi_align_backward_impl(const T* grad, const T* rois, T* grad_input, int64_t num_rois, int64_t batch,
                             int64_t channels, int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                             T scale, int64_t sampling_ratio, bool aligned) {
  const int64_t plane_size = height * width;
  const RoiAlignTables<T> tb =
      roi_align_tables(rois, num_rois, batch, height, width, pooled_h, pooled_w, scale, sampling_ratio, aligned);
  const std::vector<ChannelBlock> blocks = channel_blocks(channels);
  const int64_t items = static_cast<int64_t>(blocks.size()) * batch;
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> tile;
    for (int64_t item = begin; item < end; ++item) {
      const ChannelBlock cb = blocks[item / batch];
      const int64_t b = item % batch;
      const std::vector<int64_t>& ids = tb.rois_of_batch[b];
      T* planes = grad_input + (b * channels + cb.c0) * plane_size;
      if (ids.empty()) {
        std::fill(planes, planes + cb.size * plane_size, T(0));
      } else if (cb.size == kBlock) {
        tile.assign(plane_size * kBlock, T(0));
        roi_align_backward_block<T, kBlock>(grad, tb, ids, tile.data(), channels, cb.c0, pooled_h, pooled_w);
        for (int64_t j = 0; j < kBlock; ++j) {
          T* dst = planes + j * plane_size;
          const T* src = tile.data() + j;
          for (int64_t p = 0; p < plane_size; ++p) dst[p] = src[p * kBlock];
        }
      } else {
        std::fill(planes, planes + plane_size, T(0));
        roi_align_backward_block<T, 1>(grad, tb, ids, planes, channels, cb.c0, pooled_h, pooled_w);
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
  const int64_t sw = to_index(std::round(roi[1] * scale));
  const int64_t sh = to_index(std::round(roi[2] * scale));
  const int64_t ew = to_index(std::round(roi[3] * scale));
  const int64_t eh = to_index(std::round(roi[4] * scale));
  const T bin_h = static_cast<T>(std::max<int64_t>(eh - sh + 1, 1)) / static_cast<T>(pooled_h);
  const T bin_w = static_cast<T>(std::max<int64_t>(ew - sw + 1, 1)) / static_cast<T>(pooled_w);
  bins.resize(pooled_h * pooled_w);
  for (int64_t ph = 0; ph < pooled_h; ++ph)
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      PoolBin& b = bins[ph * pooled_w + pw];
      b.hstart = std::min(std::max<int64_t>(to_index(std::floor(static_cast<T>(ph) * bin_h)) + sh, 0), height);
      b.hend = std::min(std::max<int64_t>(to_index(std::ceil(static_cast<T>(ph + 1) * bin_h)) + sh, 0), height);
      b.wstart = std::min(std::max<int64_t>(to_index(std::floor(static_cast<T>(pw) * bin_w)) + sw, 0), width);
      b.wend = std::min(std::max<int64_t>(to_index(std::ceil(static_cast<T>(pw + 1) * bin_w)) + sw, 0), width);
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
      const int64_t b = to_index(roi[0]);
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
  const at::Tensor input = input_.contiguous();
  at::Tensor out = at::empty({k, c, pooled_h, pooled_w}, input_.options());
  advise_huge_pages(out);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detcore_roi_align_cpu", [&] {
    roi_align_forward_impl<scalar_t>(input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                     k, input.size(0), c, input.size(2), input.size(3), pooled_h, pooled_w,
                                     static_cast<scalar_t>(spatial_scale), sampling_ratio, aligned);
  });
  return out;
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad_, const at::Tensor& rois_, double spatial_scale,
                                  int64_t pooled_h, int64_t pooled_w, int64_t batch, int64_t channels, int64_t height,
                                  int64_t width, int64_t sampling_ratio, bool aligned) {
  const at::Tensor rois = rois_.contiguous();
  const at::Tensor grad = grad_.contiguous();
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_h && grad.size(3) == pooled_w,
              "roi_align backward: grad has shape ", grad.sizes(), ", expected (", rois.size(0), ", ", channels, ", ",
              pooled_h, ", ", pooled_w, ")");
  if (grad.numel() == 0 || batch * channels * height * width == 0)
    return at::zeros({batch, channels, height, width}, grad.options());
  at::Tensor grad_input = at::empty({batch, channels, height, width}, grad.options());  // every plane is written
  advise_huge_pages(grad_input);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detcore_roi_align_backward_cpu", [&] {
    roi_align_backward_impl<scalar_t>(grad.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                                      grad_input.data_ptr<scalar_t>(), rois.size(0), batch, channels, height, width,
                                      pooled_h, pooled_w, static_cast<scalar_t>(spatial_scale), sampling_ratio,
                                      aligned);
  });
  return grad_input;
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
        const int64_t b = to_index(r[5 * n]);
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
