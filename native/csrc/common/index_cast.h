// Float -> int64 conversion of pixel coordinates that is always defined: NaN becomes 0 and values are
// clamped to +-2^40 first, so a diverged roi cannot reach an out-of-range (undefined) cast.
#pragma once

#include <stdint.h>

#include "macros.h"

namespace detcore {

template <typename T>
DETCORE_HD int64_t to_index(T v) {
  const T limit = (T)1099511627776.0;  // 2^40: far beyond any feature map, far inside int64
  if (!(v == v)) return 0;
  return (int64_t)(v < -limit ? -limit : (v > limit ? limit : v));
}

}  // namespace detcore
