// Pairwise (M x N) and aligned (M) box overlaps on the CPU, forward only (the assigners' use; gradients go
// through the PyTorch reference, see detcore/ops/bbox_overlaps.py).
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../common/box_overlaps_common.h"
#include "../ops.h"

namespace detcore {
namespace {

// Boxes as separate coordinate arrays so the inner loop over the second set vectorises.
template <typename T>
struct BoxColumns {
  std::vector<T> x1, y1, x2, y2, area;
  explicit BoxColumns(const T* b, int64_t n) : x1(n), y1(n), x2(n), y2(n), area(n) {
    for (int64_t i = 0; i < n; ++i) {
      x1[i] = b[4 * i]; y1[i] = b[4 * i + 1]; x2[i] = b[4 * i + 2]; y2[i] = b[4 * i + 3];
      area[i] = (x2[i] - x1[i]) * (y2[i] - y1[i]);
    }
  }
};

template <typename T, int64_t kMode>
void pairwise_rows(const BoxColumns<T>& a, const BoxColumns<T>& b, int64_t r0, int64_t r1, T eps, T* out) {
  const int64_t n = static_cast<int64_t>(b.x1.size());
  const T* __restrict bx1 = b.x1.data();
  const T* __restrict by1 = b.y1.data();
  const T* __restrict bx2 = b.x2.data();
  const T* __restrict by2 = b.y2.data();
  const T* __restrict barea = b.area.data();
  for (int64_t i = r0; i < r1; ++i) {
    const T ax1 = a.x1[i], ay1 = a.y1[i], ax2 = a.x2[i], ay2 = a.y2[i], aarea = a.area[i];
    T* __restrict row = out + i * n;
    for (int64_t j = 0; j < n; ++j)
      row[j] = box_overlap(ax1, ay1, ax2, ay2, aarea, bx1[j], by1[j], bx2[j], by2[j], barea[j], kMode, eps);
  }
}

template <typename T>
void pairwise(const BoxColumns<T>& a, const BoxColumns<T>& b, int64_t mode, T eps, T* out) {
  const int64_t m = static_cast<int64_t>(a.x1.size()), n = static_cast<int64_t>(b.x1.size());
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1));  // ~32k pairs per task
  at::parallel_for(0, m, grain, [&](int64_t r0, int64_t r1) {
    if (mode == kIoU) pairwise_rows<T, kIoU>(a, b, r0, r1, eps, out);
    else if (mode == kIoF) pairwise_rows<T, kIoF>(a, b, r0, r1, eps, out);
    else pairwise_rows<T, kGIoU>(a, b, r0, r1, eps, out);
  });
}

template <typename T>
void aligned(const BoxColumns<T>& a, const BoxColumns<T>& b, int64_t mode, T eps, T* out) {
  const int64_t m = static_cast<int64_t>(a.x1.size());
  at::parallel_for(0, m, 32768, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i)
      out[i] = box_overlap(a.x1[i], a.y1[i], a.x2[i], a.y2[i], a.area[i], b.x1[i], b.y1[i], b.x2[i], b.y2[i],
                           b.area[i], mode, eps);
  });
}

}  // namespace

at::Tensor box_overlaps_cpu(const at::Tensor& bboxes1_, const at::Tensor& bboxes2_, int64_t mode, bool is_aligned,
                            double eps) {
  check_box_overlaps_args("box_overlaps", bboxes1_, bboxes2_, mode, is_aligned);
  const at::Tensor bboxes1 = bboxes1_.contiguous(), bboxes2 = bboxes2_.contiguous();
  const int64_t m = bboxes1.size(0), n = bboxes2.size(0);
  at::Tensor out = is_aligned ? at::empty({m}, bboxes1.options()) : at::empty({m, n}, bboxes1.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(bboxes1.scalar_type(), "detcore_box_overlaps_cpu", [&] {
    const BoxColumns<scalar_t> a(bboxes1.data_ptr<scalar_t>(), m), b(bboxes2.data_ptr<scalar_t>(), n);
    if (is_aligned) {
      aligned(a, b, mode, static_cast<scalar_t>(eps), out.data_ptr<scalar_t>());
    } else {
      pairwise(a, b, mode, static_cast<scalar_t>(eps), out.data_ptr<scalar_t>());
    }
  });
  return out;
}

}  // namespace detcore
