// Greedy NMS and Soft-NMS on the CPU.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops.h"

namespace detcore {
namespace {

template <typename T>
struct BoxArrays {
  std::vector<T> x1, y1, x2, y2, area;
  explicit BoxArrays(const at::Tensor& boxes) {
    const int64_t n = boxes.size(0);
    const T* b = boxes.data_ptr<T>();
    x1.resize(n); y1.resize(n); x2.resize(n); y2.resize(n); area.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      x1[i] = b[4 * i]; y1[i] = b[4 * i + 1]; x2[i] = b[4 * i + 2]; y2[i] = b[4 * i + 3];
      area[i] = (x2[i] - x1[i]) * (y2[i] - y1[i]);
    }
  }
  inline T iou(int64_t i, int64_t j) const {
    const T w = std::max(T(0), std::min(x2[i], x2[j]) - std::max(x1[i], x1[j]));
    const T h = std::max(T(0), std::min(y2[i], y2[j]) - std::max(y1[i], y1[j]));
    const T inter = w * h;
    return inter / (area[i] + area[j] - inter);
  }
};

// Marks boxes [begin, end) whose IoU with box i exceeds thr. Branch-free over restrict pointers so the
// compiler vectorises it (suppressed boxes are simply recomputed); a free function rather than a
// capturing lambda because, once OpenMP outlines the parallel region, captured references may alias
// the uint8 writes and the loop is no longer vectorised.
template <typename T>
void suppress_range(const T* __restrict x1, const T* __restrict y1, const T* __restrict x2, const T* __restrict y2,
                    const T* __restrict area, uint8_t* __restrict rm, int64_t i, int64_t begin, int64_t end, T thr) {
  const T ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = area[i];
  for (int64_t j = begin; j < end; ++j) {
    const T w = std::max(T(0), std::min(ix2, x2[j]) - std::max(ix1, x1[j]));
    const T h = std::max(T(0), std::min(iy2, y2[j]) - std::max(iy1, y1[j]));
    const T inter = w * h;
    rm[j] |= static_cast<uint8_t>(inter / (iarea + area[j] - inter) > thr);
  }
}

// The suppression sweep of one kept box is split across threads only when it is long enough to pay
// for waking them (measured on 2 cores: below ~32k boxes a sweep takes tens of microseconds).
constexpr int64_t kParallelMin = 4096;
constexpr int64_t kParallelGrain = 2048;

template <typename T>
at::Tensor nms_impl(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  const int64_t n = boxes.size(0);
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const BoxArrays<T> b(boxes.index_select(0, order).contiguous());
  const T thr = static_cast<T>(iou_threshold);
  std::vector<uint8_t> removed(n, 0);
  std::vector<int64_t> keep;
  keep.reserve(std::min<int64_t>(n, 4096));
  const T *x1 = b.x1.data(), *y1 = b.y1.data(), *x2 = b.x2.data(), *y2 = b.y2.data(), *area = b.area.data();
  uint8_t* rm = removed.data();
  for (int64_t i = 0; i < n; ++i) {
    if (rm[i]) continue;
    keep.push_back(i);
    if (n - i > kParallelMin) {
      at::parallel_for(i + 1, n, kParallelGrain, [=](int64_t begin, int64_t end) {
        suppress_range(x1, y1, x2, y2, area, rm, i, begin, end, thr);
      });
    } else {
      suppress_range(x1, y1, x2, y2, area, rm, i, i + 1, n, thr);
    }
  }
  at::Tensor keep_t = at::empty({static_cast<int64_t>(keep.size())}, order.options());
  const int64_t* ord = order.data_ptr<int64_t>();
  int64_t* kp = keep_t.data_ptr<int64_t>();
  for (size_t k = 0; k < keep.size(); ++k) kp[k] = ord[keep[k]];
  return keep_t;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> soft_nms_impl(const at::Tensor& boxes, const at::Tensor& scores,
                                                 double iou_threshold, double sigma, double min_score,
                                                 int64_t method) {
  const int64_t n = boxes.size(0);
  const BoxArrays<T> b(boxes);
  std::vector<T> sc(scores.data_ptr<T>(), scores.data_ptr<T>() + n);
  const T thr = static_cast<T>(iou_threshold), sig = static_cast<T>(sigma), lo = static_cast<T>(min_score);
  std::vector<int64_t> rem;  // remaining boxes, ascending index (so the first maximum is the lowest index)
  for (int64_t i = 0; i < n; ++i)
    if (sc[i] >= lo) rem.push_back(i);
  std::vector<int64_t> keep;
  std::vector<T> kept_scores;
  while (!rem.empty()) {
    size_t best = 0;
    for (size_t k = 1; k < rem.size(); ++k)
      if (sc[rem[k]] > sc[rem[best]]) best = k;
    const int64_t sel = rem[best];
    keep.push_back(sel);
    kept_scores.push_back(sc[sel]);
    rem.erase(rem.begin() + best);
    size_t w = 0;
    for (size_t k = 0; k < rem.size(); ++k) {
      const int64_t j = rem[k];
      const T ov = b.iou(sel, j);
      T weight = T(1);
      if (method == 1) {
        if (ov > thr) weight = T(1) - ov;
      } else if (method == 2) {
        weight = std::exp(-(ov * ov) / sig);
      } else if (ov > thr) {
        weight = T(0);
      }
      sc[j] = sc[j] * weight;
      if (sc[j] >= lo) rem[w++] = j;
    }
    rem.resize(w);
  }
  const int64_t k = static_cast<int64_t>(keep.size());
  at::Tensor dets = at::empty({k, 5}, boxes.options());
  at::Tensor keep_t = at::empty({k}, boxes.options().dtype(at::kLong));
  T* d = dets.data_ptr<T>();
  int64_t* kp = keep_t.data_ptr<int64_t>();
  const T* bx = boxes.data_ptr<T>();
  for (int64_t i = 0; i < k; ++i) {
    for (int c = 0; c < 4; ++c) d[5 * i + c] = bx[4 * keep[i] + c];
    d[5 * i + 4] = kept_scores[i];
    kp[i] = keep[i];
  }
  return {dets, keep_t};
}

}  // namespace

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_boxes_scores("nms", boxes, scores);
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "detcore_nms_cpu", [&] {
    out = nms_impl<scalar_t>(boxes.contiguous(), scores.contiguous(), iou_threshold);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                double iou_threshold, double sigma, double min_score,
                                                int64_t method) {
  check_boxes_scores("soft_nms", boxes, scores);
  TORCH_CHECK(method >= 0 && method <= 2, "soft_nms: method must be 0 (naive), 1 (linear) or 2 (gaussian), got ",
              method);
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "detcore_soft_nms_cpu", [&] {
    out = soft_nms_impl<scalar_t>(boxes.contiguous(), scores.contiguous(), iou_threshold, sigma, min_score, method);
  });
  return out;
}

}  // namespace detcore
