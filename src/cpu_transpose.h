// needle CPU backend: transposes of small tiles in cache (batch norm on channels-last input,
// zero padding of an NCHW tensor as NHWC). Values are only moved, so any ISA gives the same bits.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu_simd.h"

namespace needle {
namespace cpu {

// dst[j*ds + i] = src[i*ss + j] for i < rows, j < cols: a small tile, in cache, transposed in
// 4 x 4 blocks of vector shuffles (the edges one by one).
inline void TransposeTile(const float* src, int64_t ss, float* dst, int64_t ds, int64_t rows, int64_t cols) {
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) {
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4) {
      V4 r0, r1, r2, r3;
      std::memcpy(&r0, src + i * ss + j, sizeof(V4));
      std::memcpy(&r1, src + (i + 1) * ss + j, sizeof(V4));
      std::memcpy(&r2, src + (i + 2) * ss + j, sizeof(V4));
      std::memcpy(&r3, src + (i + 3) * ss + j, sizeof(V4));
      const V4 t0 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5), t1 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
      const V4 t2 = __builtin_shufflevector(r2, r3, 0, 4, 1, 5), t3 = __builtin_shufflevector(r2, r3, 2, 6, 3, 7);
      const V4 cols4[4] = {__builtin_shufflevector(t0, t2, 0, 1, 4, 5), __builtin_shufflevector(t0, t2, 2, 3, 6, 7),
                           __builtin_shufflevector(t1, t3, 0, 1, 4, 5), __builtin_shufflevector(t1, t3, 2, 3, 6, 7)};
      for (int q = 0; q < 4; ++q) std::memcpy(dst + (j + q) * ds + i, &cols4[q], sizeof(V4));
    }
    for (; j < cols; ++j)
      for (int64_t q = i; q < i + 4; ++q) dst[j * ds + q] = src[q * ss + j];
  }
  for (; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * ds + i] = src[i * ss + j];
}

}  // namespace cpu
}  // namespace needle
