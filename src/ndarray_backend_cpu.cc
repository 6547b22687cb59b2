// needle C++ CPU backend: the function table of docs/backends.md (same names as the numpy
// reference backend, ndarray_backend_numpy.py, which is the executable specification).
//
// Argument order, always: inputs, then out, then sizes/params. Buffers are flat float32
// `Array`s; all shape/stride logic lives in the Python NDArray, kernels see flat buffers plus
// explicit (shape, strides, offset) views. Letters: N batch, H/W spatial, C channels,
// kh/kw kernel, sh/sw stride, ph/pw padding, m/n/p matmul sizes.
//
// Every entry point validates its arguments (cpu_common.h) before touching memory.
// Speed: the thread pool of cpu_threads.h over elements / rows / images (only above a size threshold), 8-lane vector
// kernels compiled twice (baseline and AVX2+FMA, picked at run time, cpu_simd.h), and the
// packed GEMM of gemm.h for every matmul.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "cpu_common.h"
#include "cpu_conv_pad.h"
#include "cpu_depthwise.h"
#include "cpu_optim.h"
#include "cpu_pool.h"
#include "cpu_simd.h"
#include "cpu_strided.h"
#include "cpu_training.h"
#include "cpu_winograd.h"
#include "gemm.h"

namespace needle {
namespace cpu {

constexpr int64_t kTile = 8;
static_assert(kTile == kLanes, "the tiled matmul kernel holds one tile row per vector");

using Array = AlignedArray;

// Runs kernel k over [0, n) with the best ISA, in parallel when n >= min_work.
template <class K>
void Launch(const K& k, int64_t n, int64_t min_work) {
  ParallelRange(n, n, min_work, 16, [&](int64_t i0, int64_t i1) { Dispatch(k, i0, i1); });
}

// ------------------------------------------------------------------------ copies
pybind11::array_t<float> ToNumpy(const Array& a, const Shape& shape, const Shape& strides, int64_t offset) {
  const int64_t n = CheckView("to_numpy", shape, strides, offset, a.size);
  pybind11::array_t<float> result(std::vector<pybind11::ssize_t>(shape.begin(), shape.end()));
  if (n == 0) return result;
  float* dst = result.mutable_data();
  pybind11::gil_scoped_release release;
  Gather(PlanRows(MakeDims(shape, strides)), a.ptr + offset, dst);
  return result;
}

void FromNumpy(pybind11::array_t<float, pybind11::array::c_style | pybind11::array::forcecast> a, Array& out) {
  if (int64_t(a.size()) != out.size)
    throw std::invalid_argument("from_numpy: array of " + std::to_string(a.size()) +
                                " elements into a buffer of " + std::to_string(out.size));
  if (out.size > 0) std::memcpy(out.ptr, a.data(), size_t(out.size) * sizeof(float));
}

void Fill(Array& out, double val) {
  const float x = float(val);
  float* p = out.ptr;
  ParallelRange(out.size, out.size, kParallelMinCopy, 16,
                [&](int64_t i0, int64_t i1) { FillRow(p + i0, 1, x, i1 - i0); });
}

// When a kernel reads `a` while writing through a view of the same buffer, read a copy
// (as the CUDA backend does): a transposing compact into its own input would read elements
// it has already overwritten.
float* Unaliased(const Array& a, const Array& out, int64_t count, std::vector<float>* keep) {
  if (a.ptr != out.ptr || count == 0) return a.ptr;
  keep->assign(a.ptr, a.ptr + count);
  return keep->data();
}

// out[i] = a[view index i]
void Compact(const Array& a, Array& out, const Shape& shape, const Shape& strides, int64_t offset) {
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

// out[view index i] = a[i]
void EwiseSetitem(const Array& a, Array& out, const Shape& shape, const Shape& strides, int64_t offset) {
  const int64_t n = CheckView("ewise_setitem", shape, strides, offset, out.size);
  CheckHolds("ewise_setitem", "a", a.size, n);
  if (n == 0) return;
  std::vector<float> keep;
  float* src = Unaliased(a, out, n, &keep);
  ForEachRowScatter(MakeDims(shape, strides), out.ptr + offset, src,
                    [](float* v, int64_t vs, float* c, int64_t cs, int64_t len) { CopyRow(c, cs, v, vs, len); });
}

// out[view index i] = val, i < size
void ScalarSetitem(int64_t size, double val, Array& out, const Shape& shape, const Shape& strides,
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
void ScatterAdd(const Array& a, Array& out, const Shape& shape, const Shape& strides, int64_t offset) {
  const int64_t n = CheckView("scatter_add", shape, strides, offset, out.size);
  CheckHolds("scatter_add", "a", a.size, n);
  if (n == 0) return;
  std::vector<float> keep;
  float* src = Unaliased(a, out, n, &keep);
  ForEachRowScatter(MakeDims(shape, strides), out.ptr + offset, src,
                    [](float* v, int64_t vs, float* c, int64_t cs, int64_t len) { AddRow(c, cs, v, vs, len); });
}

// ------------------------------------------------------------------------ element-wise
template <class Op>
struct MapUnary {  // out[i] = op(a[i])
  const float* a;
  float* out;
  Op op;
  NEEDLE_INLINE void operator()(int64_t i0, int64_t i1) const {
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) Store(out + i, op(Load(a + i)));
    if (i < i1) StorePartial(out + i, op(LoadPartial(a + i, i1 - i, 1.0f)), i1 - i);
  }
};

template <class Op>
struct MapBinary {  // out[i] = op(a[i], b[i])
  const float* a;
  const float* b;
  float* out;
  Op op;
  NEEDLE_INLINE void operator()(int64_t i0, int64_t i1) const {
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) Store(out + i, op(Load(a + i), Load(b + i)));
    if (i < i1)
      StorePartial(out + i, op(LoadPartial(a + i, i1 - i, 1.0f), LoadPartial(b + i, i1 - i, 1.0f)), i1 - i);
  }
};

struct PowRange {  // out[i] = powf(a[i], b[i]) (or powf(a[i], c)): no vector pow, scalar libm
  const float* a;
  const float* b;
  float c;
  float* out;
  NEEDLE_INLINE void operator()(int64_t i0, int64_t i1) const {
    if (b != nullptr)
      for (int64_t i = i0; i < i1; ++i) out[i] = std::pow(a[i], b[i]);
    else
      for (int64_t i = i0; i < i1; ++i) out[i] = std::pow(a[i], c);
  }
};

struct SqrtRange {  // out[i] = sqrtf(a[i]) (vectorises: no errno with -fno-math-errno)
  const float* a;
  float* out;
  NEEDLE_INLINE void operator()(int64_t i0, int64_t i1) const {
    for (int64_t i = i0; i < i1; ++i) out[i] = std::sqrt(a[i]);
  }
};

struct AddOp { NEEDLE_INLINE V operator()(const V& x, const V& y) const { return x + y; } };
struct MulOp { NEEDLE_INLINE V operator()(const V& x, const V& y) const { return x * y; } };
struct DivOp { NEEDLE_INLINE V operator()(const V& x, const V& y) const { return x / y; } };
struct MaxOp { NEEDLE_INLINE V operator()(const V& x, const V& y) const { return MaxNan(x, y); } };
struct EqOp { NEEDLE_INLINE V operator()(const V& x, const V& y) const { return x == y ? Splat(1.0f) : Splat(0.0f); } };
struct GeOp { NEEDLE_INLINE V operator()(const V& x, const V& y) const { return x >= y ? Splat(1.0f) : Splat(0.0f); } };
struct GtOp { NEEDLE_INLINE V operator()(const V& x, const V& y) const { return x > y ? Splat(1.0f) : Splat(0.0f); } };
struct ExpOp { NEEDLE_INLINE V operator()(const V& x) const { return Exp(x); } };
struct LogOp { NEEDLE_INLINE V operator()(const V& x) const { return Log(x); } };
struct TanhOp { NEEDLE_INLINE V operator()(const V& x) const { return Tanh(x); } };
struct SquareOp { NEEDLE_INLINE V operator()(const V& x) const { return x * x; } };
struct RecipOp { NEEDLE_INLINE V operator()(const V& x) const { return 1.0f / x; } };

template <class Op>
struct WithScalar {  // op(x, c): the scalar variant of a binary op
  V c;
  NEEDLE_INLINE V operator()(const V& x) const { return Op()(x, c); }
};

template <class Op>
void Ewise(const char* fn, const Array& a, const Array& b, Array& out) {
  CheckHolds(fn, "a", a.size, out.size);
  CheckHolds(fn, "b", b.size, out.size);
  Launch(MapBinary<Op>{a.ptr, b.ptr, out.ptr, Op()}, out.size, kParallelMinCopy);
}

template <class Op>
void Scalar(const char* fn, const Array& a, double val, Array& out) {
  CheckHolds(fn, "a", a.size, out.size);
  Launch(MapUnary<WithScalar<Op>>{a.ptr, out.ptr, {Splat(float(val))}}, out.size, kParallelMinCopy);
}

template <class Op>
void Unary(const char* fn, const Array& a, Array& out) {
  CheckHolds(fn, "a", a.size, out.size);
  Launch(MapUnary<Op>{a.ptr, out.ptr, Op()}, out.size, kParallelMinMath);
}

void EwiseAdd(const Array& a, const Array& b, Array& out) { Ewise<AddOp>("ewise_add", a, b, out); }
void EwiseMul(const Array& a, const Array& b, Array& out) { Ewise<MulOp>("ewise_mul", a, b, out); }
// out[i] = op(a[i], tile[i % L]) over chunks [c0, c1) of L elements, L a multiple of 8.
template <class Op>
struct TiledBinary {
  const float* a;
  const float* tile;
  float* out;
  int64_t L;
  Op op;
  NEEDLE_INLINE void operator()(int64_t c0, int64_t c1) const {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t j = 0; j < L; j += kLanes) {
        const int64_t i = c * L + j;
        Store(out + i, op(Load(a + i), Load(tile + j)));
      }
  }
};

// out = a op b[view]: a, out compact; the view of b is walked in place (no compact copy).
// Op is the vector form of `op`, used when the view repeats one short contiguous block (a
// per-channel vector broadcast over the other dims of a channels-last array): the block is
// tiled to a run of >= 64 floats, so that the work is long vector loops, not C-float rows.
template <class Op, class F>
void EwiseWithView(const char* fn, const Array& a, const Array& b, Array& out, const Shape& shape,
                   const Shape& strides, int64_t offset, F op) {
  const int64_t n = CheckView(fn, shape, strides, offset, b.size);
  CheckHolds(fn, "a", a.size, n);
  CheckHolds(fn, "out", out.size, n);
  if (n == 0) return;
  std::vector<float> copy;  // out may be b's own buffer: read b from a copy then
  const float* src = b.ptr;
  if (b.ptr == out.ptr) {
    copy.assign(b.ptr, b.ptr + b.size);
    src = copy.data();
  }
  const RowPlan plan = PlanRows(MakeDims(shape, strides));
  bool repeats = plan.inner.vs == 1 && plan.inner.cs == 1 && plan.rows > 1 && plan.inner.n < 64;
  for (const Dim& d : plan.outer) repeats = repeats && d.vs == 0;
  if (repeats) {
    const int64_t block = plan.inner.n;
    int64_t L = block;
    while (L % kLanes) L += block;
    while (L < 64) L *= 2;
    std::vector<float> tile(size_t(L + kLanes));  // + one vector: Load never reads past it
    for (int64_t j = 0; j < L; ++j) tile[size_t(j)] = src[offset + j % block];
    const int64_t chunks = n / L;
    const TiledBinary<Op> k{a.ptr, tile.data(), out.ptr, L, Op()};
    ParallelRange(chunks, n, kParallelMinCopy, 1, [&](int64_t c0, int64_t c1) { Dispatch(k, c0, c1); });
    for (int64_t i = chunks * L; i < n; ++i) out.ptr[i] = op(a.ptr[i], tile[size_t(i % L)]);
    return;
  }
  BinaryWithView(plan, a.ptr, const_cast<float*>(src) + offset, out.ptr, op);
}

void EwiseAddStrided(const Array& a, const Array& b, Array& out, const Shape& shape, const Shape& strides,
                     int64_t offset) {
  EwiseWithView<AddOp>("ewise_add_strided", a, b, out, shape, strides, offset,
                       [](float x, float y) { return x + y; });
}

void EwiseMulStrided(const Array& a, const Array& b, Array& out, const Shape& shape, const Shape& strides,
                     int64_t offset) {
  EwiseWithView<MulOp>("ewise_mul_strided", a, b, out, shape, strides, offset,
                       [](float x, float y) { return x * y; });
}

void EwiseDiv(const Array& a, const Array& b, Array& out) { Ewise<DivOp>("ewise_div", a, b, out); }
void EwiseMaximum(const Array& a, const Array& b, Array& out) { Ewise<MaxOp>("ewise_maximum", a, b, out); }
void EwiseEq(const Array& a, const Array& b, Array& out) { Ewise<EqOp>("ewise_eq", a, b, out); }
void EwiseGe(const Array& a, const Array& b, Array& out) { Ewise<GeOp>("ewise_ge", a, b, out); }
void EwiseGt(const Array& a, const Array& b, Array& out) { Ewise<GtOp>("ewise_gt", a, b, out); }

void EwisePow(const Array& a, const Array& b, Array& out) {
  CheckHolds("ewise_pow", "a", a.size, out.size);
  CheckHolds("ewise_pow", "b", b.size, out.size);
  Launch(PowRange{a.ptr, b.ptr, 0.0f, out.ptr}, out.size, kParallelMinMath);
}

void ScalarAdd(const Array& a, double val, Array& out) { Scalar<AddOp>("scalar_add", a, val, out); }
void ScalarMul(const Array& a, double val, Array& out) { Scalar<MulOp>("scalar_mul", a, val, out); }
void ScalarDiv(const Array& a, double val, Array& out) { Scalar<DivOp>("scalar_div", a, val, out); }
void ScalarMaximum(const Array& a, double val, Array& out) { Scalar<MaxOp>("scalar_maximum", a, val, out); }
void ScalarEq(const Array& a, double val, Array& out) { Scalar<EqOp>("scalar_eq", a, val, out); }
void ScalarGe(const Array& a, double val, Array& out) { Scalar<GeOp>("scalar_ge", a, val, out); }
void ScalarGt(const Array& a, double val, Array& out) { Scalar<GtOp>("scalar_gt", a, val, out); }

void ScalarPower(const Array& a, double val, Array& out) {
  CheckHolds("scalar_power", "a", a.size, out.size);
  // numpy's array ** scalar takes these exponents as square / sqrt / reciprocal / copy
  // (so (-inf) ** 0.5 is nan, not powf's inf); the rest is powf.
  const float c = float(val);
  if (c == 2.0f)
    Launch(MapUnary<SquareOp>{a.ptr, out.ptr, SquareOp()}, out.size, kParallelMinCopy);
  else if (c == 0.5f)
    Launch(SqrtRange{a.ptr, out.ptr}, out.size, kParallelMinCopy);
  else if (c == -1.0f)
    Launch(MapUnary<RecipOp>{a.ptr, out.ptr, RecipOp()}, out.size, kParallelMinCopy);
  else if (c == 1.0f)
    Launch(MapUnary<WithScalar<MulOp>>{a.ptr, out.ptr, {Splat(1.0f)}}, out.size, kParallelMinCopy);
  else
    Launch(PowRange{a.ptr, nullptr, c, out.ptr}, out.size, kParallelMinMath);
}

void EwiseLog(const Array& a, Array& out) { Unary<LogOp>("ewise_log", a, out); }
void EwiseExp(const Array& a, Array& out) { Unary<ExpOp>("ewise_exp", a, out); }
void EwiseTanh(const Array& a, Array& out) { Unary<TanhOp>("ewise_tanh", a, out); }

// ------------------------------------------------------------------------ reductions, softmax
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

void ReduceSum(const Array& a, Array& out, int64_t reduce_size) { Reduce<false>("reduce_sum", a, out, reduce_size); }
void ReduceMax(const Array& a, Array& out, int64_t reduce_size) { Reduce<true>("reduce_max", a, out, reduce_size); }

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

void CheckWholeRows(const char* fn, int64_t size, int64_t row_size) {
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

void SoftmaxRowsBackward(const Array& y, const Array& g, Array& out, int64_t row_size) {
  const char* fn = "softmax_rows_backward";
  CheckWholeRows(fn, y.size, row_size);
  CheckHolds(fn, "out_grad", g.size, y.size);
  CheckHolds(fn, "out", out.size, y.size);
  const SoftmaxBackwardRows k{y.ptr, g.ptr, out.ptr, row_size};
  ParallelRange(y.size / row_size, y.size, kParallelMinCopy, 1, [&](int64_t r0, int64_t r1) { Dispatch(k, r0, r1); });
}

void SoftmaxRowsFn(const Array& a, Array& out, int64_t row_size) { Softmax<false>("softmax_rows", a, out, row_size); }
void LogSoftmaxRows(const Array& a, Array& out, int64_t row_size) { Softmax<true>("log_softmax_rows", a, out, row_size); }

// ------------------------------------------------------------------------ matmul
void CheckMnp(const char* fn, int64_t m, int64_t n, int64_t p) {
  if (m < 0 || n < 0 || p < 0)
    throw std::invalid_argument(std::string(fn) + ": sizes must be >= 0, got m=" + std::to_string(m) +
                                " n=" + std::to_string(n) + " p=" + std::to_string(p));
}

// out (m x p) = a (m x n) @ b (n x p), all compact row-major
void Matmul(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p) {
  CheckMnp("matmul", m, n, p);
  CheckHolds("matmul", "a", a.size, CheckedProduct("matmul", {m, n}));
  CheckHolds("matmul", "b", b.size, CheckedProduct("matmul", {n, p}));
  CheckHolds("matmul", "out", out.size, CheckedProduct("matmul", {m, p}));
  pybind11::gil_scoped_release release;
  sgemm_batched(false, false, 1, m, p, n, a.ptr, 0, n, b.ptr, 0, p, out.ptr, 0, p, false);
}

// Output tiles q in [q0, q1) of the tiled layout: out[i, j] = sum_k a[i, k] @ b[k, j].
struct TiledKernel {
  const float* a;
  const float* b;
  float* out;
  int64_t mt, nt, pt;  // tile counts
  NEEDLE_INLINE void operator()(int64_t q0, int64_t q1) const {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t i = q / pt, j = q % pt;
      V acc[kTile] = {};  // zeroed first: out may be uninitialised
      for (int64_t k = 0; k < nt; ++k) {
        const float* A = a + (i * nt + k) * kTile * kTile;
        const float* B = b + (k * pt + j) * kTile * kTile;
        for (int64_t r = 0; r < kTile; ++r)
          for (int64_t kk = 0; kk < kTile; ++kk) acc[r] += Splat(A[r * kTile + kk]) * Load(B + kk * kTile);
      }
      for (int64_t r = 0; r < kTile; ++r) Store(out + q * kTile * kTile + r * kTile, acc[r]);
    }
  }
};

// Tiled layout of contract §3.6: tile [i, j] holds rows i*t.., cols j*t.., row-major inside.
void MatmulTiled(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p) {
  CheckMnp("matmul_tiled", m, n, p);
  if (m % kTile || n % kTile || p % kTile)
    throw std::invalid_argument("matmul_tiled: m=" + std::to_string(m) + " n=" + std::to_string(n) +
                                " p=" + std::to_string(p) + " must be multiples of the tile size 8");
  CheckHolds("matmul_tiled", "a", a.size, CheckedProduct("matmul_tiled", {m, n}));
  CheckHolds("matmul_tiled", "b", b.size, CheckedProduct("matmul_tiled", {n, p}));
  CheckHolds("matmul_tiled", "out", out.size, CheckedProduct("matmul_tiled", {m, p}));
  const int64_t mt = m / kTile, nt = n / kTile, pt = p / kTile;
  if (m * p == 0) return;
  pybind11::gil_scoped_release release;
  // The register-tile kernel keeps up with the packed GEMM up to about 256^3 (measured).
  if (double(m) * double(n) * double(p) <= 256.0 * 256.0 * 256.0) {
    const TiledKernel k{a.ptr, b.ptr, out.ptr, mt, nt, pt};
    ParallelRange(mt * pt, m * n * p / kTile, kParallelMinCopy, 1,
                  [&](int64_t q0, int64_t q1) { Dispatch(k, q0, q1); });
    return;
  }
  // Big: untile into row-major copies, run the packed GEMM, tile the result (O(n^2) copies).
  const auto copy = [](float* v, int64_t vs, float* c, int64_t cs, int64_t len) { CopyRow(v, vs, c, cs, len); };
  Array ra(m * n), rb(n * p), rc(m * p);
  // Row-major (r, c) of a tiled matrix sits at view (r/t, r%t, c/t, c%t) of these strides.
  ForEachRow(PlanRows(MakeDims({mt, kTile, nt, kTile}, {n * kTile, kTile, kTile * kTile, 1})), a.ptr, ra.ptr,
             true, copy);
  ForEachRow(PlanRows(MakeDims({nt, kTile, pt, kTile}, {p * kTile, kTile, kTile * kTile, 1})), b.ptr, rb.ptr,
             true, copy);
  sgemm_batched(false, false, 1, m, p, n, ra.ptr, 0, n, rb.ptr, 0, p, rc.ptr, 0, p, false);
  ForEachRow(PlanRows(MakeDims({mt, pt, kTile, kTile}, {p * kTile, kTile, p, 1})), rc.ptr, out.ptr, true, copy);
}

// out[i] (m x p) = opA_i (m x n) @ opB_i (n x p), i < batch; A_i at a[a_offset + i*a_batch_stride],
// stored m x n (or n x m when a_transposed); same for B_i (n x p or p x n). Stride 0 broadcasts.
void Gemm(const Array& a, const Array& b, Array& out, int64_t batch, int64_t m, int64_t n, int64_t p,
          int64_t a_offset, int64_t a_batch_stride, bool a_transposed, int64_t b_offset,
          int64_t b_batch_stride, bool b_transposed) {
  CheckMnp("gemm", m, n, p);
  if (batch < 0) throw std::invalid_argument("gemm: batch must be >= 0, got " + std::to_string(batch));
  CheckHolds("gemm", "out", out.size, CheckedProduct("gemm", {batch, m, p}));
  const Shape a_strides = a_transposed ? Shape{a_batch_stride, 1, m} : Shape{a_batch_stride, n, 1};
  const Shape b_strides = b_transposed ? Shape{b_batch_stride, 1, n} : Shape{b_batch_stride, p, 1};
  CheckView("gemm", {batch, m, n}, a_strides, a_offset, a.size);
  CheckView("gemm", {batch, n, p}, b_strides, b_offset, b.size);
  if (batch == 0 || m == 0 || p == 0) return;
  // n == 0: the (empty, unchecked) operands are never read and sgemm writes zeros
  const float* A = n == 0 ? a.ptr : a.ptr + a_offset;
  const float* B = n == 0 ? b.ptr : b.ptr + b_offset;
  pybind11::gil_scoped_release release;
  sgemm_batched(a_transposed, b_transposed, batch, m, p, n, A, a_batch_stride, a_transposed ? m : n, B,
                b_batch_stride, b_transposed ? n : p, out.ptr, m * p, p, false);
}

// out (m x p) = A (m x n) @ opB (n x p), A the view (a_shape, a_strides, a_offset) of `a` split into
// row dims (the first a_row_dims) and column dims, 1 to 3 each: an implicit GEMM over an im2col view.
void GemmStridedA(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p,
                  const Shape& a_shape, const Shape& a_strides, int64_t a_offset, int64_t a_row_dims,
                  int64_t b_offset, bool b_transposed) {
  const char* fn = "gemm_strided_a";
  CheckMnp(fn, m, n, p);
  const int64_t dims = static_cast<int64_t>(a_shape.size());
  constexpr int64_t kMaxDims = gemm_detail::StridedA::kDims;
  if (a_row_dims < 1 || a_row_dims > kMaxDims || dims - a_row_dims < 1 || dims - a_row_dims > kMaxDims)
    throw std::invalid_argument(std::string(fn) + ": A view shape " + Str(a_shape) + " split after " +
                                std::to_string(a_row_dims) +
                                " dims: need 1 to 3 row dims and 1 to 3 column dims");
  CheckView(fn, a_shape, a_strides, a_offset, a.size);
  const Shape row_shape(a_shape.begin(), a_shape.begin() + a_row_dims);
  const Shape col_shape(a_shape.begin() + a_row_dims, a_shape.end());
  int64_t row_count = 1, col_count = 1;
  for (int64_t d : row_shape) row_count *= d;  // no overflow: CheckView bounded the product
  for (int64_t d : col_shape) col_count *= d;
  if (row_count != m || col_count != n)
    throw std::invalid_argument(std::string(fn) + ": A view shape " + Str(a_shape) + " split after " +
                                std::to_string(a_row_dims) + " dims is " + std::to_string(row_count) +
                                " x " + std::to_string(col_count) + ", expected m x n = " +
                                std::to_string(m) + " x " + std::to_string(n));
  CheckHolds(fn, "out", out.size, CheckedProduct(fn, {m, p}));
  CheckView(fn, {n, p}, b_transposed ? Shape{1, n} : Shape{p, 1}, b_offset, b.size);
  if (m == 0 || p == 0) return;
  gemm_detail::StridedA view;
  for (int64_t i = 0; i < kMaxDims; ++i) {
    const int64_t r = i - (kMaxDims - a_row_dims), c = i - (kMaxDims - (dims - a_row_dims));
    view.row_shape[i] = r < 0 ? 1 : a_shape[r];
    view.row_strides[i] = r < 0 ? 0 : a_strides[r];
    view.col_shape[i] = c < 0 ? 1 : a_shape[a_row_dims + c];
    view.col_strides[i] = c < 0 ? 0 : a_strides[a_row_dims + c];
  }
  // n == 0: the (empty, unchecked) operands are never read and sgemm writes zeros
  const float* A = n == 0 ? a.ptr : a.ptr + a_offset;
  const float* B = n == 0 ? b.ptr : b.ptr + b_offset;
  pybind11::gil_scoped_release release;
  sgemm_strided_a(b_transposed, m, p, n, A, view, B, b_transposed ? n : p, out.ptr, p);
}

// ------------------------------------------------------------------------ pooling (NHWC)
void MaxPool2d(const Array& a, Array& out, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = CheckPool("max_pool2d", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckHolds("max_pool2d", "a", a.size, d.in_size());
  CheckHolds("max_pool2d", "out", out.size, d.out_size());
  const PoolForward<true> k{a.ptr, out.ptr, d};
  ParallelRange(N * d.Ho, d.out_size() * kh * kw, kParallelMinCopy, 1,
                [&](int64_t r0, int64_t r1) { Dispatch(k, r0, r1); });
}

void MaxPool2dBackward(const Array& a, const Array& dout, Array& dinp, int64_t N, int64_t H, int64_t W,
                       int64_t C, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = CheckPool("max_pool2d_backward", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckHolds("max_pool2d_backward", "a", a.size, d.in_size());
  CheckHolds("max_pool2d_backward", "dout", dout.size, d.out_size());
  CheckHolds("max_pool2d_backward", "dinp", dinp.size, d.in_size());
  const MaxPoolBackward k{a.ptr, dout.ptr, dinp.ptr, d};
  ParallelRange(N, d.out_size() * kh * kw + d.in_size(), kParallelMinCopy, 1,
                [&](int64_t n0, int64_t n1) { Dispatch(k, n0, n1); });
}

void AvgPool2d(const Array& a, Array& out, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = CheckPool("avg_pool2d", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckHolds("avg_pool2d", "a", a.size, d.in_size());
  CheckHolds("avg_pool2d", "out", out.size, d.out_size());
  const PoolForward<false> k{a.ptr, out.ptr, d};
  ParallelRange(N * d.Ho, d.out_size() * kh * kw, kParallelMinCopy, 1,
                [&](int64_t r0, int64_t r1) { Dispatch(k, r0, r1); });
}

void AvgPool2dBackward(const Array& dout, Array& dinp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = CheckPool("avg_pool2d_backward", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckHolds("avg_pool2d_backward", "dout", dout.size, d.out_size());
  CheckHolds("avg_pool2d_backward", "dinp", dinp.size, d.in_size());
  const AvgPoolBackward k{dout.ptr, dinp.ptr, d};
  ParallelRange(N, d.out_size() * kh * kw + d.in_size(), kParallelMinCopy, 1,
                [&](int64_t n0, int64_t n1) { Dispatch(k, n0, n1); });
}

// ------------------------------------------------------------------------ depthwise conv (NHWC)
void DepthwiseConv2d(const Array& a, const Array& w, Array& out, int64_t N, int64_t H, int64_t W,
                     int64_t C, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                     int64_t pw, int64_t dh, int64_t dw) {
  const DepthwiseDims d = CheckDepthwise("depthwise_conv2d", N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw);
  CheckHolds("depthwise_conv2d", "a", a.size, d.in_size());
  CheckHolds("depthwise_conv2d", "w", w.size, d.taps_size());
  CheckHolds("depthwise_conv2d", "out", out.size, d.out_size());
  DepthwiseForward(a.ptr, w.ptr, out.ptr, d);
}

void DepthwiseConv2dBackwardInput(const Array& dout, const Array& w, Array& dinp, int64_t N,
                                  int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw,
                                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                                  int64_t dw) {
  const char* fn = "depthwise_conv2d_backward_input";
  const DepthwiseDims d = CheckDepthwise(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw);
  CheckHolds(fn, "dout", dout.size, d.out_size());
  CheckHolds(fn, "w", w.size, d.taps_size());
  CheckHolds(fn, "dinp", dinp.size, d.in_size());
  DepthwiseInputGrad(dout.ptr, w.ptr, dinp.ptr, d);
}

void DepthwiseConv2dBackwardWeight(const Array& a, const Array& dout, Array& dweight, int64_t N,
                                   int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw,
                                   int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                                   int64_t dw) {
  const char* fn = "depthwise_conv2d_backward_weight";
  const DepthwiseDims d = CheckDepthwise(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw);
  CheckHolds(fn, "a", a.size, d.in_size());
  CheckHolds(fn, "dout", dout.size, d.out_size());
  CheckHolds(fn, "dweight", dweight.size, d.taps_size());
  DepthwiseWeightGrad(a.ptr, dout.ptr, dweight.ptr, d);
}

// ------------------------------------------------------------------------ Winograd tile transforms
// Sizes: N, H, W, C of the image side (input for the input transforms, output for the output
// ones), ph, pw (input transforms only: the conv padding), m, alpha, th, tw (tiles per column/row).
void WinogradInputTransform(const Array& a, const Array& bt, Array& out, int64_t N, int64_t H,
                            int64_t W, int64_t C, int64_t ph, int64_t pw, int64_t m, int64_t alpha,
                            int64_t th, int64_t tw) {
  const char* fn = "winograd_input_transform";
  const WinogradDims d = CheckWinograd(fn, N, H, W, C, ph, pw, m, alpha, th, tw);
  CheckHolds(fn, "a", a.size, N * H * W * C);
  CheckHolds(fn, "bt", bt.size, alpha * alpha);
  CheckHolds(fn, "out", out.size, alpha * alpha * d.tiles() * C);
  WinogradInputTransformKernel(a.ptr, bt.ptr, out.ptr, d);
}

void WinogradInputTransformAdjoint(const Array& dv, const Array& bt, Array& dinp, int64_t N,
                                   int64_t H, int64_t W, int64_t C, int64_t ph, int64_t pw,
                                   int64_t m, int64_t alpha, int64_t th, int64_t tw) {
  const char* fn = "winograd_input_transform_adjoint";
  const WinogradDims d = CheckWinograd(fn, N, H, W, C, ph, pw, m, alpha, th, tw);
  CheckHolds(fn, "dv", dv.size, alpha * alpha * d.tiles() * C);
  CheckHolds(fn, "bt", bt.size, alpha * alpha);
  CheckHolds(fn, "dinp", dinp.size, N * H * W * C);
  WinogradInputTransformAdjointKernel(dv.ptr, bt.ptr, dinp.ptr, d);
}

void WinogradOutputTransform(const Array& mm, const Array& at, Array& out, int64_t N, int64_t H,
                             int64_t W, int64_t C, int64_t m, int64_t alpha, int64_t th, int64_t tw) {
  const char* fn = "winograd_output_transform";
  const WinogradDims d = CheckWinograd(fn, N, H, W, C, 0, 0, m, alpha, th, tw);
  CheckHolds(fn, "mm", mm.size, alpha * alpha * d.tiles() * C);
  CheckHolds(fn, "at", at.size, m * alpha);
  CheckHolds(fn, "out", out.size, N * H * W * C);
  WinogradOutputTransformKernel(mm.ptr, at.ptr, out.ptr, d);
}

void WinogradOutputTransformAdjoint(const Array& dout, const Array& at, Array& dm, int64_t N,
                                    int64_t H, int64_t W, int64_t C, int64_t m, int64_t alpha,
                                    int64_t th, int64_t tw) {
  const char* fn = "winograd_output_transform_adjoint";
  const WinogradDims d = CheckWinograd(fn, N, H, W, C, 0, 0, m, alpha, th, tw);
  CheckHolds(fn, "dout", dout.size, N * H * W * C);
  CheckHolds(fn, "at", at.size, m * alpha);
  CheckHolds(fn, "dm", dm.size, alpha * alpha * d.tiles() * C);
  WinogradOutputTransformAdjointKernel(dout.ptr, at.ptr, dm.ptr, d);
}

}  // namespace cpu
}  // namespace needle

// ------------------------------------------------------------------------ bindings
PYBIND11_MODULE(ndarray_backend_cpu, m) {
  namespace py = pybind11;
  using namespace needle::cpu;
  using Release = py::call_guard<py::gil_scoped_release>;
  m.doc() = "needle C++ CPU backend (threads + SIMD): the function table of docs/backends.md, same "
            "names and semantics as ndarray_backend_numpy. Argument order: inputs, out, sizes.";
  m.attr("__tile_size__") = kTile;

  py::class_<AlignedArray, std::unique_ptr<AlignedArray>>(m, "Array", "Flat float32 buffer, 64-byte aligned.")
      .def(py::init<int64_t>(), py::arg("size"), "Uninitialised buffer of `size` (>= 0) floats.")
      .def("ptr", &AlignedArray::ptr_as_int, "Address of the first element (an int).")
      .def_readonly("size", &AlignedArray::size, "Number of float32 elements.");

  m.def(
      "wrap_pointer",
      [](uintptr_t address, int64_t size, py::object owner) {
        if (size < 0) throw std::invalid_argument("wrap_pointer: size must be >= 0, got " + Str(size));
        if (address % alignof(float) != 0)
          throw std::invalid_argument("wrap_pointer: address is not float32-aligned");
        return std::make_unique<AlignedArray>(AlignedArray::External{},
                                              reinterpret_cast<float*>(address), size);
      },
      py::arg("address"), py::arg("size"), py::arg("owner"), py::keep_alive<0, 3>(),
      "wrap_pointer(address, size, owner): an Array over `size` floats of host memory at "
      "`address` owned by `owner` (kept alive, never freed here): zero-copy DLPack import.");
  m.def("is_available", [] { return true; }, "Always True: the cpu backend needs no device.");
  m.def("synchronize", [] {}, "No-op: cpu kernels finish before returning.");

  m.def("to_numpy", ToNumpy, "to_numpy(a, shape, strides, offset): numpy copy of a strided view.");
  m.def("from_numpy", FromNumpy, "from_numpy(np_array, out): copy in as float32; sizes must match.");
  m.def("fill", Fill, "fill(out, val): out[:] = val.", Release());
  m.def("compact", Compact, "compact(a, out, shape, strides, offset): out[i] = a[view index i].", Release());
  m.def("pad", Pad,
        "pad(a, out, shape, strides, offset, before, after): out (compact, dims shape[i] + before[i] + "
        "after[i]) = the view of a with before[i] / after[i] zeros around dim i.", Release());
  m.def("ewise_setitem", EwiseSetitem,
        "ewise_setitem(a, out, shape, strides, offset): out[view index i] = a[i].", Release());
  m.def("scalar_setitem", ScalarSetitem,
        "scalar_setitem(size, val, out, shape, strides, offset): out[view index i] = val.", Release());
  m.def("scatter_add", ScatterAdd,
        "scatter_add(a, out, shape, strides, offset): out[view index i] += a[i]; the view may "
        "overlap itself (col2im), every contribution is summed.", Release());

  m.def("ewise_add", EwiseAdd, "ewise_add(a, b, out): out = a + b over out.size elements.", Release());
  m.def("ewise_mul", EwiseMul, "ewise_mul(a, b, out): out = a * b.", Release());
  m.def("ewise_add_strided", EwiseAddStrided,
        "ewise_add_strided(a, b, out, shape, strides, offset): out = a + (view of b); a, out compact.", Release());
  m.def("ewise_mul_strided", EwiseMulStrided,
        "ewise_mul_strided(a, b, out, shape, strides, offset): out = a * (view of b); a, out compact.", Release());
  m.def("ewise_div", EwiseDiv, "ewise_div(a, b, out): out = a / b.", Release());
  m.def("ewise_pow", EwisePow, "ewise_pow(a, b, out): out = a ** b (powf; NaN for a < 0, b fractional).", Release());
  m.def("ewise_maximum", EwiseMaximum, "ewise_maximum(a, b, out): numpy.maximum (NaN wins).", Release());
  m.def("ewise_eq", EwiseEq, "ewise_eq(a, b, out): 1.0 where a == b, else 0.0.", Release());
  m.def("ewise_ge", EwiseGe, "ewise_ge(a, b, out): 1.0 where a >= b, else 0.0.", Release());
  m.def("ewise_gt", EwiseGt, "ewise_gt(a, b, out): 1.0 where a > b, else 0.0 (NaN: 0.0).", Release());
  m.def("scalar_add", ScalarAdd, "scalar_add(a, val, out): out = a + float32(val).", Release());
  m.def("scalar_mul", ScalarMul, "scalar_mul(a, val, out): out = a * float32(val).", Release());
  m.def("scalar_div", ScalarDiv, "scalar_div(a, val, out): out = a / float32(val).", Release());
  m.def("scalar_power", ScalarPower, "scalar_power(a, val, out): out = a ** float32(val), as numpy.", Release());
  m.def("scalar_maximum", ScalarMaximum, "scalar_maximum(a, val, out): numpy.maximum(a, val).", Release());
  m.def("scalar_eq", ScalarEq, "scalar_eq(a, val, out): 1.0 where a == val, else 0.0.", Release());
  m.def("scalar_ge", ScalarGe, "scalar_ge(a, val, out): 1.0 where a >= val, else 0.0.", Release());
  m.def("scalar_gt", ScalarGt, "scalar_gt(a, val, out): 1.0 where a > val, else 0.0 (NaN: 0.0).", Release());
  m.def("ewise_log", EwiseLog, "ewise_log(a, out): natural log (vector Cephes logf, <= 3 ulp).", Release());
  m.def("ewise_exp", EwiseExp, "ewise_exp(a, out): exp (vector Cephes expf, <= 3 ulp).", Release());
  m.def("ewise_tanh", EwiseTanh, "ewise_tanh(a, out): tanh (vector Cephes tanhf, <= 2 ulp).", Release());

  // the matmuls release the GIL themselves, after validation
  m.def("matmul", Matmul, "matmul(a, b, out, m, n, p): out (m x p) = a (m x n) @ b (n x p).");
  m.def("matmul_tiled", MatmulTiled,
        "matmul_tiled(a, b, out, m, n, p): as matmul on 8 x 8 tiled layouts (contract 3.6); "
        "m, n, p multiples of 8; out is overwritten.");
  m.def("gemm", Gemm,
        "gemm(a, b, out, batch, m, n, p, a_offset, a_batch_stride, a_transposed, b_offset, "
        "b_batch_stride, b_transposed): out[i] (m x p) = opA_i (m x n) @ opB_i (n x p), i < batch.");
  m.def("gemm_strided_a", GemmStridedA,
        "gemm_strided_a(a, b, out, m, n, p, a_shape, a_strides, a_offset, a_row_dims, b_offset, "
        "b_transposed): out (m x p) = A @ opB, A (m x n) a strided view of a (implicit GEMM).");
  m.def("reduce_sum", ReduceSum, "reduce_sum(a, out, reduce_size): out[i] = sum of row i of a.", Release());
  m.def("reduce_max", ReduceMax, "reduce_max(a, out, reduce_size): out[i] = max of row i of a.", Release());
  m.def("softmax_rows", SoftmaxRowsFn, "softmax_rows(a, out, row_size): stable softmax of each row.", Release());
  m.def("log_softmax_rows", LogSoftmaxRows,
        "log_softmax_rows(a, out, row_size): stable log-softmax of each row.", Release());

  m.def("sgd_update", SgdUpdate,
        "sgd_update(w, grad, u, w_out, u_out, hyper, decay, has_u): one SGD step over w_out.size "
        "elements; hyper = [momentum, dampening, neg_lr, weight_decay].", Release());
  m.def("adam_update", AdamUpdate,
        "adam_update(w, grad, m, v, w_out, m_out, v_out, hyper, t, decay, has_state): one Adam step over "
        "w_out.size elements; hyper = [lr, b1, 1-b1, b2, 1-b2, eps, wd, 1-lr*wd], t the step count; "
        "decay 0 none, 1 L2, 2 decoupled (AdamW).", Release());
  m.def("batch_norm_forward", BatchNormForward,
        "batch_norm_forward(x, w, b, out, mean, var, rows, channels, inner, eps): x rows x C x inner; "
        "per-channel mean and biased var; out = (x - mean) * w / sqrt(var + eps) + b.", Release());
  m.def("batch_norm_forward_strided", BatchNormForwardStrided,
        "batch_norm_forward_strided(x, w, b, out, mean, var, rows, channels, inner, strides, eps): "
        "batch_norm_forward with x and out laid out by the dense (row, channel, inner) strides.", Release());
  m.def("batch_norm_running_update", BatchNormRunningUpdate,
        "batch_norm_running_update(mean, var, running_mean, running_var, momentum, keep): running = "
        "running * keep + batch * momentum for both statistics, in place (C = running_mean.size).",
        Release());
  m.def("batch_norm_backward", BatchNormBackward,
        "batch_norm_backward(x, out_grad, w, mean, var, dx, dw, db, rows, channels, inner, eps): the "
        "gradients of batch_norm_forward given its mean and var.", Release());
  m.def("batch_norm_backward_strided", BatchNormBackwardStrided,
        "batch_norm_backward_strided(x, out_grad, w, mean, var, dx, dw, db, rows, channels, inner, strides, eps): "
        "batch_norm_backward with x, out_grad and dx laid out by the dense (row, channel, inner) strides.",
        Release());

  m.def("softmax_rows_backward", SoftmaxRowsBackward,
        "softmax_rows_backward(y, out_grad, out, row_size): out = y * (g - sum(g * y)) per row.", Release());
  m.def("max_pool2d", MaxPool2d,
        "max_pool2d(a, out, N, H, W, C, kh, kw, sh, sw, ph, pw): N x H x W x C -> N x Ho x Wo x C.",
        Release());
  m.def("max_pool2d_backward", MaxPool2dBackward,
        "max_pool2d_backward(a, dout, dinp, N, H, W, C, kh, kw, sh, sw, ph, pw): dout to the first "
        "maximum of each window.", Release());
  m.def("avg_pool2d", AvgPool2d,
        "avg_pool2d(a, out, N, H, W, C, kh, kw, sh, sw, ph, pw): window means, padding counts as 0.",
        Release());
  m.def("avg_pool2d_backward", AvgPool2dBackward,
        "avg_pool2d_backward(dout, dinp, N, H, W, C, kh, kw, sh, sw, ph, pw): dout / (kh*kw) to "
        "every in-bounds window element.", Release());
  m.def("depthwise_conv2d", DepthwiseConv2d,
        "depthwise_conv2d(a, w, out, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw): N x H x W x C "
        "with a kh x kw x C weight (one filter per channel) -> N x Ho x Wo x C.", Release());
  m.def("depthwise_conv2d_backward_input", DepthwiseConv2dBackwardInput,
        "depthwise_conv2d_backward_input(dout, w, dinp, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, "
        "dw): the N x H x W x C input gradient.", Release());
  m.def("depthwise_conv2d_backward_weight", DepthwiseConv2dBackwardWeight,
        "depthwise_conv2d_backward_weight(a, dout, dweight, N, H, W, C, kh, kw, sh, sw, ph, pw, "
        "dh, dw): the kh x kw x C weight gradient.", Release());
  m.def("winograd_input_transform", WinogradInputTransform,
        "winograd_input_transform(a, bt, out, N, H, W, C, ph, pw, m, alpha, th, tw): out[xi, t, c] "
        "= (B^T d_t B)[xi] for the alpha x alpha input patch d_t of every tile.", Release());
  m.def("winograd_input_transform_adjoint", WinogradInputTransformAdjoint,
        "winograd_input_transform_adjoint(dv, bt, dinp, N, H, W, C, ph, pw, m, alpha, th, tw): "
        "dinp = sum over tiles of B dv_t B^T at the tile's patch.", Release());
  m.def("winograd_output_transform", WinogradOutputTransform,
        "winograd_output_transform(mm, at, out, N, H, W, C, m, alpha, th, tw): every m x m output "
        "tile = A^T M_t A, cropped at the edges.", Release());
  m.def("winograd_output_transform_adjoint", WinogradOutputTransformAdjoint,
        "winograd_output_transform_adjoint(dout, at, dm, N, H, W, C, m, alpha, th, tw): dm_t = "
        "A dout_t A^T.", Release());
}
