// needle CPU backend: row reductions (reduce_sum, reduce_max) and row softmax / log-softmax
// with its backward; sums accumulate in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_common.h"
#include "cpu_copy.h"
#include "cpu_simd.h"

namespace needle {
namespace cpu {

// Float lanes within blocks of 2048 (64 adds per lane), blocks summed in double: the speed of
// float adds, the accuracy of a pairwise sum on long rows.
NEEDLE_INLINE double RowSum(const float* x, int64_t n) {
  constexpr int64_t kBlock = 2048;
  double total = 0.0;
  int64_t i = 0;
  for (; i + 4 * kLanes <= n;) {
    V acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {};
    const int64_t end = std::min(n, i + kBlock);
    for (; i + 4 * kLanes <= end; i += 4 * kLanes) {
      acc0 += Load(x + i);
      acc1 += Load(x + i + kLanes);
      acc2 += Load(x + i + 2 * kLanes);
      acc3 += Load(x + i + 3 * kLanes);
    }
    const V acc = (acc0 + acc1) + (acc2 + acc3);
    for (int k = 0; k < kLanes; ++k) total += acc[k];
  }
  for (; i < n; ++i) total += x[i];
  return total;
}

NEEDLE_INLINE float RowMax(const float* x, int64_t n) {  // n >= 1; NaN wins
  const V lowest = Splat(-std::numeric_limits<float>::infinity());
  V acc0 = lowest, acc1 = lowest, acc2 = lowest, acc3 = lowest;  // 4 chains hide the latency
  int64_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    acc0 = MaxNan(Load(x + i), acc0);
    acc1 = MaxNan(Load(x + i + kLanes), acc1);
    acc2 = MaxNan(Load(x + i + 2 * kLanes), acc2);
    acc3 = MaxNan(Load(x + i + 3 * kLanes), acc3);
  }
  V acc = MaxNan(MaxNan(acc0, acc1), MaxNan(acc2, acc3));
  for (; i + kLanes <= n; i += kLanes) acc = MaxNan(Load(x + i), acc);
  float m = HorizontalMax(acc);
  for (; i < n; ++i) m = MaxNan(x[i], m);
  return m;
}

// Item i: piece i % per_row of row i / per_row; a whole row goes straight to out.
template <bool kMax>
struct ReducePieces {
  const float* a;
  float* out;
  double* part;
  int64_t row_size, per_row, piece;
  NEEDLE_INLINE void operator()(int64_t i0, int64_t i1) const {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t j0 = i % per_row * piece, len = std::min(row_size - j0, piece);
      const float* x = a + i / per_row * row_size + j0;
      const double v = kMax ? double(RowMax(x, len)) : RowSum(x, len);
      if (per_row == 1)
        out[i] = float(v);
      else
        part[i] = v;
    }
  }
};

template <bool kMax>
void Reduce(const char* fn, const Array& a, Array& out, int64_t row_size) {
  if (!kMax && row_size == 0) {
    Fill(out, 0.0);
    return;
  }
  if (row_size <= 0)
    throw std::invalid_argument(std::string(fn) + ": row size must be > 0, got " + std::to_string(row_size));
  const int64_t rows = out.size, total = CheckedProduct(fn, {rows, row_size});
  CheckHolds(fn, "a", a.size, total);
  const int64_t nt = MaxThreads();
  // Few long rows: cut each row into pieces reduced in parallel, then combine.
  const int64_t per_row = (rows >= 2 * nt || total < kParallelMinCopy) ? 1 : std::min(
      (2 * nt + rows - 1) / rows, (row_size + 1023) / 1024);
  const int64_t piece = (row_size + per_row - 1) / per_row;
  std::vector<double> part(per_row > 1 ? size_t(rows * per_row) : 0);
  const ReducePieces<kMax> k{a.ptr, out.ptr, part.data(), row_size, per_row, piece};
  ParallelRange(rows * per_row, total, kParallelMinCopy, per_row > 1 ? 1 : 16,
                [&](int64_t i0, int64_t i1) { Dispatch(k, i0, i1); });
  if (per_row > 1)
    for (int64_t r = 0; r < rows; ++r) {
      double v = part[size_t(r * per_row)];
      for (int64_t j = 1; j < per_row; ++j) {
        const double x = part[size_t(r * per_row + j)];
        v = kMax ? ((x != x || x > v) ? x : v) : v + x;
      }
      out.ptr[r] = float(v);
    }
}

inline void ReduceSum(const Array& a, Array& out, int64_t reduce_size) { Reduce<false>("reduce_sum", a, out, reduce_size); }
inline void ReduceMax(const Array& a, Array& out, int64_t reduce_size) { Reduce<true>("reduce_max", a, out, reduce_size); }

// Rows r0 .. r1-1 of length L: max, then sum of exp(x - max) (stored for softmax), then write.
template <bool kLog>
struct SoftmaxRows {
  const float* a;
  float* out;
  int64_t L;
  NEEDLE_INLINE void operator()(int64_t r0, int64_t r1) const {
    const float inf = std::numeric_limits<float>::infinity();
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = a + r * L;
      float* y = out + r * L;
      const V m = Splat(RowMax(x, L));
      VD lo = {}, hi = {};
      int64_t i = 0;
      for (; i + kLanes <= L; i += kLanes) {
        const V e = Exp(Load(x + i) - m);
        if (!kLog) Store(y + i, e);
        AddWide(e, &lo, &hi);
      }
      if (i < L) {  // padding lanes are -inf: exp gives 0
        const V e = Exp(LoadPartial(x + i, L - i, -inf) - m);
        if (!kLog) StorePartial(y + i, e, L - i);
        AddWide(e, &lo, &hi);
      }
      const double s = HorizontalSum(lo + hi);
      const V t = Splat(kLog ? float(std::log(s)) : float(s));
      for (i = 0; i + kLanes <= L; i += kLanes)
        Store(y + i, kLog ? (Load(x + i) - m) - t : Load(y + i) / t);
      if (i < L) {
        const V v = kLog ? (LoadPartial(x + i, L - i, 0.0f) - m) - t : LoadPartial(y + i, L - i, 1.0f) / t;
        StorePartial(y + i, v, L - i);
      }
    }
  }
};

inline void CheckWholeRows(const char* fn, int64_t size, int64_t row_size) {
  if (row_size <= 0 || size % row_size)
    throw std::invalid_argument(std::string(fn) + ": buffer of " + std::to_string(size) +
                                " is not a whole number of rows of " + std::to_string(row_size));
}

template <bool kLog>
void Softmax(const char* fn, const Array& a, Array& out, int64_t row_size) {
  CheckWholeRows(fn, a.size, row_size);
  CheckHolds(fn, "out", out.size, a.size);
  const SoftmaxRows<kLog> k{a.ptr, out.ptr, row_size};
  ParallelRange(a.size / row_size, a.size, kParallelMinMath, 1,
                [&](int64_t r0, int64_t r1) { Dispatch(k, r0, r1); });
}

// Rows of L: out = y * (g - sum(g * y)), the gradient of softmax at output y (sum in double).
struct SoftmaxBackwardRows {
  const float* y;
  const float* g;
  float* out;
  int64_t L;
  NEEDLE_INLINE void operator()(int64_t r0, int64_t r1) const {
    for (int64_t r = r0; r < r1; ++r) {
      const float *yr = y + r * L, *gr = g + r * L;
      float* o = out + r * L;
      VD lo = {}, hi = {};
      int64_t i = 0;
      for (; i + kLanes <= L; i += kLanes) AddWide(Load(gr + i) * Load(yr + i), &lo, &hi);
      double dot = HorizontalSum(lo) + HorizontalSum(hi);
      for (; i < L; ++i) dot += double(gr[i]) * yr[i];
      const V d = Splat(float(dot));
      for (i = 0; i + kLanes <= L; i += kLanes) Store(o + i, Load(yr + i) * (Load(gr + i) - d));
      for (; i < L; ++i) o[i] = yr[i] * (gr[i] - float(dot));
    }
  }
};

inline void SoftmaxRowsBackward(const Array& y, const Array& g, Array& out, int64_t row_size) {
  const char* fn = "softmax_rows_backward";
  CheckWholeRows(fn, y.size, row_size);
  CheckHolds(fn, "out_grad", g.size, y.size);
  CheckHolds(fn, "out", out.size, y.size);
  const SoftmaxBackwardRows k{y.ptr, g.ptr, out.ptr, row_size};
  ParallelRange(y.size / row_size, y.size, kParallelMinCopy, 1, [&](int64_t r0, int64_t r1) { Dispatch(k, r0, r1); });
}

inline void SoftmaxRowsFn(const Array& a, Array& out, int64_t row_size) { Softmax<false>("softmax_rows", a, out, row_size); }
inline void LogSoftmaxRows(const Array& a, Array& out, int64_t row_size) { Softmax<true>("log_softmax_rows", a, out, row_size); }

}  // namespace cpu
}  // namespace needle
