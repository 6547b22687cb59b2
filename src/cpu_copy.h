// needle CPU backend: copies between numpy and buffers, fill, and the strided-view entry points
// (compact, ewise_setitem, scalar_setitem, scatter_add) over the row walkers of cpu_strided.h.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_common.h"
#include "cpu_strided.h"

namespace needle {
namespace cpu {

inline pybind11::array_t<float> ToNumpy(const Array& a, const Shape& shape, const Shape& strides, int64_t offset) {
  const int64_t n = CheckView("to_numpy", shape, strides, offset, a.size);
  pybind11::array_t<float> result(std::vector<pybind11::ssize_t>(shape.begin(), shape.end()));
  if (n == 0) return result;
  float* dst = result.mutable_data();
  pybind11::gil_scoped_release release;
  Gather(PlanRows(MakeDims(shape, strides)), a.ptr + offset, dst);
  return result;
}

inline void FromNumpy(pybind11::array_t<float, pybind11::array::c_style | pybind11::array::forcecast> a, Array& out) {
  if (int64_t(a.size()) != out.size)
    throw std::invalid_argument("from_numpy: array of " + std::to_string(a.size()) +
                                " elements into a buffer of " + std::to_string(out.size));
  if (out.size > 0) std::memcpy(out.ptr, a.data(), size_t(out.size) * sizeof(float));
}

inline void Fill(Array& out, double val) {
  const float x = float(val);
  float* p = out.ptr;
  ParallelRange(out.size, out.size, kParallelMinCopy, 16,
                [&](int64_t i0, int64_t i1) { FillRow(p + i0, 1, x, i1 - i0); });
}

// When a kernel reads `a` while writing through a view of the same buffer, read a copy
// (as the CUDA backend does): a transposing compact into its own input would read elements
// it has already overwritten.
inline float* Unaliased(const Array& a, const Array& out, int64_t count, std::vector<float>* keep) {
  if (a.ptr != out.ptr || count == 0) return a.ptr;
  keep->assign(a.ptr, a.ptr + count);
  return keep->data();
}

// out[i] = a[view index i]
inline void Compact(const Array& a, Array& out, const Shape& shape, const Shape& strides, int64_t offset) {
  const int64_t n = CheckView("compact", shape, strides, offset, a.size);
  CheckHolds("compact", "out", out.size, n);
  if (n == 0) return;
  std::vector<float> keep;
  float* src = Unaliased(a, out, a.size, &keep);
  // Leading broadcast dims (stride 0, e.g. a per-channel vector over the batch): gather one
  // slice, then replicate it with memcpy instead of walking every short row again.
  size_t lead = 0;
  int64_t reps = 1;
  while (lead + 1 < shape.size() && (strides[lead] == 0 || shape[lead] == 1)) reps *= shape[lead++];
  if (reps == 1) {
    Gather(PlanRows(MakeDims(shape, strides)), src + offset, out.ptr);
    return;
  }
  const Shape inner_shape(shape.begin() + long(lead), shape.end());
  const Shape inner_strides(strides.begin() + long(lead), strides.end());
  const int64_t slice = n / reps;
  float* dst = out.ptr;
  Gather(PlanRows(MakeDims(inner_shape, inner_strides)), src + offset, dst);
  ParallelRange(reps - 1, n, kParallelMinCopy, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) std::memcpy(dst + (r + 1) * slice, dst, size_t(slice) * sizeof(float));
  });
}

// Compact a's elements written through the view (shape, strides, offset) of out by row_op.
template <typename RowOp>
void WriteThroughView(const char* fn, const Array& a, Array& out, const Shape& shape, const Shape& strides,
                      int64_t offset, RowOp row_op) {
  const int64_t n = CheckView(fn, shape, strides, offset, out.size);
  CheckHolds(fn, "a", a.size, n);
  if (n == 0) return;
  std::vector<float> keep;
  float* src = Unaliased(a, out, n, &keep);
  ForEachRowScatter(MakeDims(shape, strides), out.ptr + offset, src, row_op);
}

// out[view index i] = a[i]
inline void EwiseSetitem(const Array& a, Array& out, const Shape& shape, const Shape& strides, int64_t offset) {
  WriteThroughView("ewise_setitem", a, out, shape, strides, offset,
                   [](float* v, int64_t vs, float* c, int64_t cs, int64_t len) { CopyRow(c, cs, v, vs, len); });
}

// out[view index i] = val, i < size
inline void ScalarSetitem(int64_t size, double val, Array& out, const Shape& shape, const Shape& strides,
                          int64_t offset) {
  const int64_t n = CheckView("scalar_setitem", shape, strides, offset, out.size);
  if (size != n)
    throw std::invalid_argument("scalar_setitem: size " + std::to_string(size) + " != prod" + Str(shape));
  if (n == 0) return;
  const float x = float(val);
  ForEachRowScatter(MakeDims(shape, strides, false), out.ptr + offset, nullptr,
                    [x](float* v, int64_t vs, float*, int64_t, int64_t len) { FillRow(v, vs, x, len); });
}

// out[view index i] += a[i]; the view may map several i to one element (col2im)
inline void ScatterAdd(const Array& a, Array& out, const Shape& shape, const Shape& strides, int64_t offset) {
  WriteThroughView("scatter_add", a, out, shape, strides, offset,
                   [](float* v, int64_t vs, float* c, int64_t cs, int64_t len) { AddRow(c, cs, v, vs, len); });
}

}  // namespace cpu
}  // namespace needle
