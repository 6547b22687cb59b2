// needle CPU backend: loops over a strided view paired with a compact operand
// (compact / to_numpy gather, ewise_setitem / scalar_setitem scatter, scatter_add col2im).
//
// The view's dims are simplified first (size-1 dims dropped, dims contiguous in both the view
// and the compact operand merged), then walked as rows: an index counter over the outer dims,
// and a tight loop over the innermost dim (memmove when both strides are 1, a fill for a
// broadcast source).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_common.h"
#include "cpu_simd.h"

namespace needle {
namespace cpu {

struct Dim {
  int64_t n;   // length
  int64_t vs;  // stride in the strided view
  int64_t cs;  // stride in the compact operand
};

struct RowPlan {
  std::vector<Dim> outer;  // all dims but the innermost, outermost first
  Dim inner{1, 0, 0};
  int64_t rows = 1;
};

// Dims of a non-empty view with the row-major strides of its compact partner (or 0 when
// there is no partner); size-1 dims dropped.
inline std::vector<Dim> MakeDims(const Shape& shape, const Shape& strides, bool with_compact = true) {
  std::vector<Dim> dims;
  int64_t cs = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1) dims.push_back({shape[i], strides[i], with_compact ? cs : 0});
    cs *= shape[i];
  }
  std::reverse(dims.begin(), dims.end());
  return dims;
}

inline RowPlan PlanRows(const std::vector<Dim>& dims) {
  RowPlan p;
  std::vector<Dim> merged;
  for (const Dim& d : dims) {
    if (!merged.empty() && merged.back().vs == d.vs * d.n && merged.back().cs == d.cs * d.n)
      merged.back() = {merged.back().n * d.n, d.vs, d.cs};  // outer dim continues the inner one
    else
      merged.push_back(d);
  }
  if (!merged.empty()) {
    p.inner = merged.back();
    merged.pop_back();
  }
  p.outer = merged;
  for (const Dim& d : p.outer) p.rows *= d.n;
  return p;
}

// Offsets of row r in the view and in the compact operand.
inline void RowOffsets(const RowPlan& p, int64_t r, int64_t* vo, int64_t* co) {
  *vo = *co = 0;
  for (size_t k = p.outer.size(); k-- > 0;) {
    const int64_t i = r % p.outer[k].n;
    r /= p.outer[k].n;
    *vo += i * p.outer[k].vs;
    *co += i * p.outer[k].cs;
  }
}

// Calls f(view_row, vs, compact_row, cs, len) for rows r0 .. r1-1, in row-major order.
template <class F>
void RunRows(const RowPlan& p, float* v, float* c, int64_t r0, int64_t r1, const F& f) {
  const size_t nd = p.outer.size();
  std::vector<int64_t> idx(nd);
  int64_t vo, co, rem = r0;
  RowOffsets(p, r0, &vo, &co);
  for (size_t k = nd; k-- > 0;) {
    idx[k] = rem % p.outer[k].n;
    rem /= p.outer[k].n;
  }
  for (int64_t r = r0; r < r1; ++r) {
    f(v + vo, p.inner.vs, c + co, p.inner.cs, p.inner.n);
    for (size_t k = nd; k-- > 0;) {  // odometer step
      vo += p.outer[k].vs;
      co += p.outer[k].cs;
      if (++idx[k] < p.outer[k].n) break;
      vo -= p.outer[k].vs * p.outer[k].n;
      co -= p.outer[k].cs * p.outer[k].n;
      idx[k] = 0;
    }
  }
}

// All rows, split over threads when `parallel` and the view is big; few long rows are cut
// into pieces. Only for kernels where different elements never touch the same memory.
template <class F>
void ForEachRow(const RowPlan& p, float* v, float* c, bool parallel, const F& f) {
  const int64_t len = p.inner.n, nt = MaxThreads();
  if (!parallel || nt <= 1 || p.rows * len < kParallelMinCopy) {
    RunRows(p, v, c, 0, p.rows, f);
  } else if (p.rows >= 4 * nt) {
    ParallelRange(p.rows, p.rows * len, 0, 1,
                  [&](int64_t r0, int64_t r1) { RunRows(p, v, c, r0, r1, f); });
  } else {
    const int64_t pieces = (4 * nt + p.rows - 1) / p.rows;
    const int64_t piece = ((len + pieces - 1) / pieces + 15) / 16 * 16;
    const int64_t per_row = (len + piece - 1) / piece;
    ParallelFor(p.rows * per_row, int(nt), [&](int64_t item) {
      int64_t vo, co;
      RowOffsets(p, item / per_row, &vo, &co);
      const int64_t j0 = item % per_row * piece, j1 = std::min(len, j0 + piece);
      f(v + vo + j0 * p.inner.vs, p.inner.vs, c + co + j0 * p.inner.cs, p.inner.cs, j1 - j0);
    });
  }
}

inline int64_t Abs(int64_t x) { return x < 0 ? -x : x; }

// True when no two indices of the view reach the same element (a sufficient test: sorted by
// |stride|, each stride jumps past everything the smaller dims reach).
inline bool ViewIsInjective(std::vector<Dim> dims) {
  std::sort(dims.begin(), dims.end(), [](const Dim& a, const Dim& b) { return Abs(a.vs) < Abs(b.vs); });
  __int128 reach = 0;
  for (const Dim& d : dims) {
    if (Abs(d.vs) <= reach) return false;
    reach += static_cast<__int128>(d.n - 1) * Abs(d.vs);
  }
  return true;
}

// A dim whose index ranges never overlap (|stride| beyond the reach of all other dims), the
// longest such; -1 when there is none.
inline int DisjointDim(const std::vector<Dim>& dims) {
  __int128 total = 0;
  for (const Dim& d : dims) total += static_cast<__int128>(d.n - 1) * Abs(d.vs);
  int best = -1;
  for (size_t i = 0; i < dims.size(); ++i) {
    const __int128 others = total - static_cast<__int128>(dims[i].n - 1) * Abs(dims[i].vs);
    if (Abs(dims[i].vs) > others && (best < 0 || dims[i].n > dims[size_t(best)].n)) best = int(i);
  }
  return best;
}

// Writes through a view that may map several indices to one element (setitem keeps the last
// write in row-major order, scatter_add sums in row-major order): parallel over the whole view
// when it is injective, else over a dim with disjoint ranges, else serial.
template <class F>
void ForEachRowScatter(std::vector<Dim> dims, float* v, float* c, const F& f) {
  int64_t total = 1;
  for (const Dim& d : dims) total *= d.n;
  if (ViewIsInjective(dims)) {
    ForEachRow(PlanRows(dims), v, c, true, f);
    return;
  }
  const int d = DisjointDim(dims);
  const int nt = MaxThreads();
  if (d < 0 || nt <= 1 || total < kParallelMinCopy) {
    ForEachRow(PlanRows(dims), v, c, false, f);
    return;
  }
  const Dim part = dims[size_t(d)];
  dims.erase(dims.begin() + d);
  const RowPlan p = PlanRows(dims);
  ParallelFor(part.n, nt, [&](int64_t i) { RunRows(p, v + i * part.vs, c + i * part.cs, 0, p.rows, f); });
}

// ------------------------------------------------------------------------ row kernels
// dst[i*ds] = src[i*ss], i < n
inline void CopyRow(const float* src, int64_t ss, float* dst, int64_t ds, int64_t n) {
  if (ss == 1 && ds == 1) {
    if (n < 32)  // short rows (im2col of few channels): a call costs more than the copy
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
    else
      std::memmove(dst, src, size_t(n) * sizeof(float));
  } else if (ss == 0) {
    const float x = *src;
    if (ds == 1)
      std::fill_n(dst, n, x);
    else
      for (int64_t i = 0; i < n; ++i) dst[i * ds] = x;
  } else if (ds == 1) {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i * ss];
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i * ds] = src[i * ss];
  }
}

inline void FillRow(float* dst, int64_t ds, float x, int64_t n) {
  if (ds == 1 && x == 0.0f && !std::signbit(x))
    // memset's string stores write whole cache lines without reading them first: a zero-fill
    // of a buffer that fell out of cache (a padded gradient, every step) runs ~1.8x faster.
    std::memset(dst, 0, sizeof(float) * size_t(n));
  else if (ds == 1)
    std::fill_n(dst, n, x);
  else
    for (int64_t i = 0; i < n; ++i) dst[i * ds] = x;
}

// dst[i*ds] += src[i*ss], i < n, in order (ds may be 0)
inline void AddRow(const float* src, int64_t ss, float* dst, int64_t ds, int64_t n) {
  if (ds == 0) {
    float acc = *dst;
    for (int64_t i = 0; i < n; ++i) acc += src[i * ss];
    *dst = acc;
  } else if (ss == 1 && ds == 1) {
    for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i * ds] += src[i * ss];
  }
}

// 8 x 8 block: dst row k (8 floats at dst + k*ds) = column k of the 8 src rows at src + r*ss.
NEEDLE_INLINE void Transpose8x8(const float* src, int64_t ss, float* dst, int64_t ds) {
  V r[8], t[8], u[8];
  for (int k = 0; k < 8; ++k) r[k] = Load(src + k * ss);
  for (int k = 0; k < 8; k += 2) {  // interleave row pairs
    t[k] = __builtin_shufflevector(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[k + 1] = __builtin_shufflevector(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int k = 0; k < 8; k += 4) {  // 4-row groups
    u[k] = __builtin_shufflevector(t[k], t[k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[k + 1] = __builtin_shufflevector(t[k], t[k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[k + 2] = __builtin_shufflevector(t[k + 1], t[k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[k + 3] = __builtin_shufflevector(t[k + 1], t[k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int k = 0; k < 4; ++k) {  // 128-bit halves of rows 0-3 and 4-7
    Store(dst + k * ds, __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11));
    Store(dst + (k + 4) * ds, __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15));
  }
}

// Items of Gather's transpose path: item = (row of the other outer dims, strip of B along j).
struct TransposeStrips {
  static constexpr int64_t B = 32;
  const RowPlan* rest;  // the outer dims other than j
  Dim jd, in;           // j: view stride +-1; in: the innermost dim (compact stride 1)
  const float* v;
  float* c;
  NEEDLE_INLINE void operator()(int64_t item0, int64_t item1) const {
    const int64_t nb = (jd.n + B - 1) / B;
    for (int64_t item = item0; item < item1; ++item) {
      int64_t vo, co;
      RowOffsets(*rest, item / nb, &vo, &co);
      const int64_t j0 = item % nb * B, jn = std::min(B, jd.n - j0);
      const float* src = v + vo + j0 * jd.vs;
      float* dst = c + co + j0 * jd.cs;
      for (int64_t i0 = 0; i0 < in.n; i0 += B) {  // one B x B tile
        const int64_t in_ = std::min(B, in.n - i0);
        int64_t jj = 0;
        if (jd.vs == 1)
          for (; jj + 8 <= jn; jj += 8) {
            int64_t ii = 0;
            for (; ii + 8 <= in_; ii += 8)
              Transpose8x8(src + jj + (i0 + ii) * in.vs, in.vs, dst + jj * jd.cs + i0 + ii, jd.cs);
            for (; ii < in_; ++ii)
              for (int64_t k = jj; k < jj + 8; ++k) dst[k * jd.cs + i0 + ii] = src[k + (i0 + ii) * in.vs];
          }
        for (; jj < jn; ++jj)
          for (int64_t ii = i0; ii < i0 + in_; ++ii) dst[jj * jd.cs + ii] = src[jj * jd.vs + ii * in.vs];
      }
    }
  }
};

// c[i] = v[view index i] (compact, to_numpy). A view whose innermost dim is strided while an
// outer dim is contiguous (a transpose) is copied in tiles of 8 x 8 register transposes, so
// that reads and writes both use whole cache lines; anything else row by row.
inline void Gather(const RowPlan& p, float* v, float* c) {
  constexpr int64_t B = TransposeStrips::B;
  int j = -1;  // the innermost outer dim with view stride +-1
  for (size_t k = 0; k < p.outer.size(); ++k)
    if (Abs(p.outer[k].vs) == 1 && p.outer[k].n >= 8) j = int(k);
  if (j < 0 || Abs(p.inner.vs) <= 1 || p.inner.n < 8 || p.inner.cs != 1) {
    ForEachRow(p, v, c, true,
               [](float* rv, int64_t vs, float* rc, int64_t cs, int64_t len) { CopyRow(rv, vs, rc, cs, len); });
    return;
  }
  RowPlan rest;
  for (size_t k = 0; k < p.outer.size(); ++k)
    if (int(k) != j) rest.outer.push_back(p.outer[k]);
  for (const Dim& d : rest.outer) rest.rows *= d.n;
  const TransposeStrips k{&rest, p.outer[size_t(j)], p.inner, v, c};
  const int64_t items = rest.rows * ((k.jd.n + B - 1) / B);
  ParallelRange(items, p.rows * p.inner.n, kParallelMinCopy, 1,
                [&](int64_t i0, int64_t i1) { Dispatch(k, i0, i1); });
}

// out[i] = op(a[i], view[i]): a and out compact, the view any strided view of the same
// shape (a per-channel vector broadcast over N, H, W; a transposed array). Saves the compact
// copy of the view that a compact-only element-wise kernel would need first.
template <class Op>
void BinaryWithView(const RowPlan& p, const float* a, float* view, float* out, Op op) {
  ForEachRow(p, view, out, true, [&](float* rv, int64_t vs, float* rc, int64_t cs, int64_t len) {
    const float* ra = a + (rc - out);
    if (cs != 1) {  // a single element (every dim of size 1)
      for (int64_t i = 0; i < len; ++i) rc[i * cs] = op(ra[i * cs], rv[i * vs]);
    } else if (vs == 1) {
      for (int64_t i = 0; i < len; ++i) rc[i] = op(ra[i], rv[i]);
    } else if (vs == 0) {
      const float x = *rv;
      for (int64_t i = 0; i < len; ++i) rc[i] = op(ra[i], x);
    } else {
      for (int64_t i = 0; i < len; ++i) rc[i] = op(ra[i], rv[i * vs]);
    }
  });
}

}  // namespace cpu
}  // namespace needle
