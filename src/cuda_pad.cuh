// needle CUDA backend: zero padding in one kernel (a conv's padded input, NDArray.pad).
// pad(a, out, shape, strides, offset, before, after): out, compact with dims
// shape[i] + before[i] + after[i], holds the view (shape, strides, offset) of a with before[i]
// zeros ahead of it and after[i] behind it along dim i. One thread per element of out (writes
// coalesced): a zero in the border, else the view's element. Included by
// ndarray_backend_cuda.cu only.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_common.cuh"

namespace needle {
namespace cuda {

struct PadMeta {
  int32_t ndim;
  int64_t offset;
  int64_t padded[kInlineDims];
  int64_t before[kInlineDims];
  int64_t inner[kInlineDims];  // the view's shape
  int64_t strides[kInlineDims];
};

__global__ void PadKernel(const float* a, float* out, PadMeta m, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    int64_t rem = i, at = m.offset;
    bool border = false;
    for (int d = m.ndim - 1; d >= 0; --d) {
      const int64_t q = rem % m.padded[d] - m.before[d];
      rem /= m.padded[d];
      border = border || q < 0 || q >= m.inner[d];
      at += q * m.strides[d];
    }
    out[i] = border ? 0.0f : a[at];
  }
}

// Checks the sizes (the view itself is checked by the caller) and launches.
inline void LaunchPad(const char* fn, const float* a, float* out, int64_t out_size, const std::vector<int64_t>& shape,
                      const std::vector<int64_t>& strides, int64_t offset, const std::vector<int64_t>& before,
                      const std::vector<int64_t>& after) {
  const size_t nd = shape.size();
  if (before.size() != nd || after.size() != nd)
    throw std::invalid_argument(std::string(fn) + ": before " + Tup(before) + " and after " + Tup(after) +
                                " need one entry per dim of shape " + Tup(shape));
  if (nd > static_cast<size_t>(kInlineDims))
    throw std::invalid_argument(std::string(fn) + ": at most " + Str(kInlineDims) + " dims, got shape " + Tup(shape));
  PadMeta m{};
  m.ndim = static_cast<int32_t>(nd);
  m.offset = offset;
  int64_t n = 1;
  for (size_t d = 0; d < nd; ++d) {
    if (before[d] < 0 || after[d] < 0)
      throw std::invalid_argument(std::string(fn) + ": negative padding, before " + Tup(before) + " after " +
                                  Tup(after));
    m.padded[d] = CheckedMul(fn, 1, shape[d] + before[d] + after[d]);
    m.before[d] = before[d];
    m.inner[d] = shape[d];
    m.strides[d] = strides[d];
    n = CheckedMul(fn, n, m.padded[d]);
  }
  CheckSize(fn, "out", out_size, n);
  if (n == 0) return;
  Launch<PadKernel>(GridFor(n), kThreads, a, out, m, n);
}

}  // namespace cuda
}  // namespace needle
