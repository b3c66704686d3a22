// Overlap of two xyxy boxes (area (x2 - x1) * (y2 - y1), no +1), shared by the CPU and CUDA kernels.
// Modes: 0 IoU, 1 IoF (intersection over the first box's area), 2 GIoU. Denominators are clamped to eps.
#pragma once

#include <stdint.h>

#include "macros.h"

namespace detcore {

enum BoxOverlapMode : int64_t { kIoU = 0, kIoF = 1, kGIoU = 2 };

// Plain comparisons rather than fmax/fmin: they vectorise on the CPU (no NaN special case).
template <typename T>
DETCORE_HD T max2(T a, T b) {
  return a > b ? a : b;
}

template <typename T>
DETCORE_HD T min2(T a, T b) {
  return a < b ? a : b;
}

template <typename T>
DETCORE_HD T box_overlap(T ax1, T ay1, T ax2, T ay2, T area_a, T bx1, T by1, T bx2, T by2, T area_b, int64_t mode,
                         T eps) {
  const T w = max2(min2(ax2, bx2) - max2(ax1, bx1), (T)0);
  const T h = max2(min2(ay2, by2) - max2(ay1, by1), (T)0);
  const T inter = w * h;
  const T union_ = max2(mode == kIoF ? area_a : area_a + area_b - inter, eps);
  const T overlap = inter / union_;
  if (mode != kGIoU) return overlap;
  const T ew = max2(max2(ax2, bx2) - min2(ax1, bx1), (T)0);
  const T eh = max2(max2(ay2, by2) - min2(ay1, by1), (T)0);
  const T enclose = max2(ew * eh, eps);
  return overlap - (enclose - union_) / enclose;
}

}  // namespace detcore
