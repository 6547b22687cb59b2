// needle CPU backend: element-wise kernels (ewise_*, scalar_*, the *_strided broadcasts), as
// 8-lane vector loops dispatched to the best ISA (cpu_simd.h) over parallel ranges.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu_common.h"
#include "cpu_simd.h"
#include "cpu_strided.h"

namespace needle {
namespace cpu {

// Runs kernel k over [0, n) with the best ISA, in parallel when n >= min_work.
template <class K>
void Launch(const K& k, int64_t n, int64_t min_work) {
  ParallelRange(n, n, min_work, 16, [&](int64_t i0, int64_t i1) { Dispatch(k, i0, i1); });
}

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

inline void EwiseAdd(const Array& a, const Array& b, Array& out) { Ewise<AddOp>("ewise_add", a, b, out); }
inline void EwiseMul(const Array& a, const Array& b, Array& out) { Ewise<MulOp>("ewise_mul", a, b, out); }
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

inline void EwiseAddStrided(const Array& a, const Array& b, Array& out, const Shape& shape, const Shape& strides,
                            int64_t offset) {
  EwiseWithView<AddOp>("ewise_add_strided", a, b, out, shape, strides, offset,
                       [](float x, float y) { return x + y; });
}

inline void EwiseMulStrided(const Array& a, const Array& b, Array& out, const Shape& shape, const Shape& strides,
                            int64_t offset) {
  EwiseWithView<MulOp>("ewise_mul_strided", a, b, out, shape, strides, offset,
                       [](float x, float y) { return x * y; });
}

inline void EwiseDiv(const Array& a, const Array& b, Array& out) { Ewise<DivOp>("ewise_div", a, b, out); }
inline void EwiseMaximum(const Array& a, const Array& b, Array& out) { Ewise<MaxOp>("ewise_maximum", a, b, out); }
inline void EwiseEq(const Array& a, const Array& b, Array& out) { Ewise<EqOp>("ewise_eq", a, b, out); }
inline void EwiseGe(const Array& a, const Array& b, Array& out) { Ewise<GeOp>("ewise_ge", a, b, out); }
inline void EwiseGt(const Array& a, const Array& b, Array& out) { Ewise<GtOp>("ewise_gt", a, b, out); }

inline void EwisePow(const Array& a, const Array& b, Array& out) {
  CheckHolds("ewise_pow", "a", a.size, out.size);
  CheckHolds("ewise_pow", "b", b.size, out.size);
  Launch(PowRange{a.ptr, b.ptr, 0.0f, out.ptr}, out.size, kParallelMinMath);
}

inline void ScalarAdd(const Array& a, double val, Array& out) { Scalar<AddOp>("scalar_add", a, val, out); }
inline void ScalarMul(const Array& a, double val, Array& out) { Scalar<MulOp>("scalar_mul", a, val, out); }
inline void ScalarDiv(const Array& a, double val, Array& out) { Scalar<DivOp>("scalar_div", a, val, out); }
inline void ScalarMaximum(const Array& a, double val, Array& out) { Scalar<MaxOp>("scalar_maximum", a, val, out); }
inline void ScalarEq(const Array& a, double val, Array& out) { Scalar<EqOp>("scalar_eq", a, val, out); }
inline void ScalarGe(const Array& a, double val, Array& out) { Scalar<GeOp>("scalar_ge", a, val, out); }
inline void ScalarGt(const Array& a, double val, Array& out) { Scalar<GtOp>("scalar_gt", a, val, out); }

inline void ScalarPower(const Array& a, double val, Array& out) {
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

inline void EwiseLog(const Array& a, Array& out) { Unary<LogOp>("ewise_log", a, out); }
inline void EwiseExp(const Array& a, Array& out) { Unary<ExpOp>("ewise_exp", a, out); }
inline void EwiseTanh(const Array& a, Array& out) { Unary<TanhOp>("ewise_tanh", a, out); }

}  // namespace cpu
}  // namespace needle
