// needle CPU and CUDA backends: the layout of batch norm's input x, viewed rows x C x inner, and
// its check. Element (r, c, k) of x lies at r*sr + c*sc + k*sk of its buffer: row-major NCHW is
// (C*inner, inner, 1), an NCHW view of an NHWC buffer (a conv's output) (inner*C, 1, C). The other
// big operands (out, out_grad, dx) are row-major: element (r, c, k) is number (r*C + c)*inner + k.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#ifdef __CUDACC__
#define NEEDLE_HOST_DEVICE __host__ __device__
#else
#define NEEDLE_HOST_DEVICE
#endif

namespace needle {

struct NormLayout {
  int64_t rows, C, inner, sr, sc, sk;
  NEEDLE_HOST_DEVICE int64_t size() const { return rows * C * inner; }
  NEEDLE_HOST_DEVICE int64_t X(int64_t r, int64_t c, int64_t k) const { return r * sr + c * sc + k * sk; }
};

inline NormLayout RowMajorNorm(int64_t rows, int64_t C, int64_t inner) { return {rows, C, inner, C * inner, inner, 1}; }

// x's layout from `strides` (row, channel, inner), which must be dense: the dims longer than 1,
// sorted by stride, have compact strides, so every element of x's rows*C*inner elements is read
// once. Sizes are checked (>= 1) by the caller.
inline NormLayout CheckNormLayout(const char* fn, int64_t rows, int64_t C, int64_t inner,
                                  const std::vector<int64_t>& strides) {
  auto tuple = [](const std::vector<int64_t>& v) {
    std::string s = "(";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + ")";
  };
  if (strides.size() != 3)
    throw std::invalid_argument(std::string(fn) + ": strides must be (row, channel, inner), got " + tuple(strides));
  const std::vector<int64_t> sizes{rows, C, inner};
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of the dims longer than 1
  for (size_t i = 0; i < 3; ++i)
    if (sizes[i] > 1) dims.push_back({strides[i], sizes[i]});
  std::sort(dims.begin(), dims.end());
  int64_t expect = 1;
  for (const auto& [stride, size] : dims) {
    if (stride != expect)
      throw std::invalid_argument(std::string(fn) + ": strides " + tuple(strides) + " for rows x C x inner " +
                                  tuple(sizes) + " are not a dense layout (a permutation of compact strides)");
    expect *= size;
  }
  return {rows, C, inner, strides[0], strides[1], strides[2]};
}

}  // namespace needle
