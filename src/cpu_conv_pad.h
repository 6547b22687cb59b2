// needle CPU backend: zero padding in one pass (a conv's padded input, NDArray.pad).
//
// pad(a, out, shape, strides, offset, before, after): out, compact with dims
// shape[i] + before[i] + after[i], holds the view (shape, strides, offset) of a with before[i]
// zeros ahead of it and after[i] behind it along dim i. The border is zeroed run by run, the
// view gathered straight into the interior (transposed block by block in cache when it is a
// transpose, e.g. an NCHW tensor padded as NHWC): one write of out, where a fill, a transposing
// copy and a setitem wrote it and the copy.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_common.h"
#include "cpu_strided.h"
#include "cpu_transpose.h"

namespace needle {
namespace cpu {

// Zeros every element of the compact `padded` array outside the box [before, before + inner)
// (or all of them, where the runs below are short). Dims behind the innermost padded dim j form
// contiguous blocks; each run along dim j is zeroed whole (its row lies in another dim's border)
// or at its two ends.
inline void ZeroBorder(float* out, const Shape& padded, const Shape& before, const Shape& inner) {
  const size_t nd = padded.size();
  int j = -1;
  for (size_t i = 0; i < nd; ++i)
    if (padded[i] != inner[i]) j = int(i);
  if (j < 0) return;
  int64_t block = 1, runs = 1;
  for (size_t i = size_t(j) + 1; i < nd; ++i) block *= padded[i];
  for (size_t i = 0; i < size_t(j); ++i) runs *= padded[i];
  const int64_t len = padded[size_t(j)] * block, head = before[size_t(j)] * block;
  if (len <= 32) {  // short runs (an image of one channel): one memset of everything is faster
    ParallelRange(runs * len, runs * len, kParallelMinCopy, 16, [&](int64_t i0, int64_t i1) {
      std::memset(out + i0, 0, size_t(i1 - i0) * sizeof(float));
    });
    return;
  }
  const int64_t tail = (padded[size_t(j)] - before[size_t(j)] - inner[size_t(j)]) * block;
  auto zero = [](float* p, int64_t count) {  // short runs (a few channels): no call
    if (count < 16)
      for (int64_t i = 0; i < count; ++i) p[i] = 0.0f;
    else
      std::memset(p, 0, size_t(count) * sizeof(float));
  };
  ParallelRange(runs, runs * len, kParallelMinCopy, 1, [&](int64_t r0, int64_t r1) {
    // the run's index along each dim before j, stepped like an odometer
    std::vector<int64_t> at(size_t(j), 0);
    for (int64_t rem = r0, i = j - 1; i >= 0; --i) {
      at[size_t(i)] = rem % padded[size_t(i)];
      rem /= padded[size_t(i)];
    }
    for (int64_t r = r0; r < r1; ++r) {
      bool border = false;  // some dim before j lies in its padding
      for (int i = 0; i < j && !border; ++i)
        border = at[size_t(i)] < before[size_t(i)] || at[size_t(i)] >= before[size_t(i)] + inner[size_t(i)];
      float* run = out + r * len;
      if (border) {
        zero(run, len);
      } else {
        zero(run, head);
        zero(run + len - tail, tail);
      }
      for (int i = j - 1; i >= 0 && ++at[size_t(i)] == padded[size_t(i)]; --i) at[size_t(i)] = 0;
    }
  });
}

inline void PadInterior(std::vector<Dim> dims, const float* src, float* out) {
  int inner = -1, contiguous = -1;  // the dim with cs == 1, and the dim with vs == 1
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i].cs == 1) inner = int(i);
    if (dims[i].vs == 1) contiguous = int(i);
  }
  if (inner < 0 || contiguous < 0 || inner == contiguous || dims[size_t(inner)].n < 4) {
    // Few elements along the innermost dim while it is strided in src: walk src's memory
    // order instead (long rows read, written with a stride).
    if (!dims.empty() && dims.back().n < 8 && Abs(dims.back().vs) != 1)
      std::stable_sort(dims.begin(), dims.end(), [](const Dim& x, const Dim& y) { return Abs(x.vs) > Abs(y.vs); });
    Gather(PlanRows(dims), const_cast<float*>(src), out);
    return;
  }
  const Dim rows = dims[size_t(inner)], cols = dims[size_t(contiguous)];
  RowPlan rest;  // the other dims
  for (size_t i = 0; i < dims.size(); ++i)
    if (int(i) != inner && int(i) != contiguous) rest.outer.push_back(dims[i]);
  for (const Dim& d : rest.outer) rest.rows *= d.n;
  ParallelRange(rest.rows, rest.rows * rows.n * cols.n, kParallelMinCopy, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      int64_t vo, co;
      RowOffsets(rest, b, &vo, &co);
      TransposeTile(src + vo, rows.vs, out + co, cols.cs, rows.n, cols.n);
    }
  });
}

inline void Pad(const AlignedArray& a, AlignedArray& out, const Shape& shape, const Shape& strides, int64_t offset,
                const Shape& before, const Shape& after) {
  const char* fn = "pad";
  const int64_t n = CheckView(fn, shape, strides, offset, a.size);
  if (before.size() != shape.size() || after.size() != shape.size())
    throw std::invalid_argument(std::string(fn) + ": before " + Str(before) + " and after " + Str(after) +
                                " need one entry per dim of shape " + Str(shape));
  Shape padded(shape.size()), out_strides(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (before[i] < 0 || after[i] < 0)
      throw std::invalid_argument(std::string(fn) + ": negative padding, before " + Str(before) + " after " +
                                  Str(after));
    padded[i] = shape[i] + before[i] + after[i];
  }
  int64_t total = 1;
  for (int64_t p : padded) total = CheckedProduct(fn, {total, p});
  CheckHolds(fn, "out", out.size, total);
  int64_t stride = 1, start = 0;
  for (size_t i = shape.size(); i-- > 0;) {
    out_strides[i] = stride;
    start += before[i] * stride;
    stride *= padded[i];
  }
  ZeroBorder(out.ptr, padded, before, shape);
  if (n == 0) return;
  std::vector<float> keep;  // reading the buffer being written: read a copy
  const float* src = a.ptr;
  if (a.ptr == out.ptr) {
    keep.assign(a.ptr, a.ptr + a.size);
    src = keep.data();
  }
  std::vector<Dim> dims;
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] != 1) dims.push_back({shape[i], strides[i], out_strides[i]});
  PadInterior(dims, src + offset, out.ptr + start);
}

}  // namespace cpu
}  // namespace needle
