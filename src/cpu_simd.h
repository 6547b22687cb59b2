// needle CPU backend: 8-lane float vectors (GCC/Clang vector extensions), vector exp/log/tanh,
// and run-time dispatch between a portable build and an AVX2+FMA build of the same kernel.
//
// A kernel is a functor with an always-inline `operator()(i0, i1)`. Dispatch() calls it through
// one of two thin wrappers: RunBase (baseline ISA: each V op becomes two SSE ops) or RunAvx2
// (target "avx2,fma": one AVX op). Everything the functor calls is always-inline, so the whole
// body is compiled for the wrapper's ISA. No -march flags are needed.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#if defined(__GNUC__) && !defined(__clang__)
// V is only ever passed between always-inline functions, so the AVX ABI note does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define NEEDLE_INLINE inline __attribute__((always_inline))

namespace needle {
namespace cpu {

typedef float V __attribute__((vector_size(32)));    // 8 x float
typedef int32_t VI __attribute__((vector_size(32)));  // 8 x int32 (also comparison masks)
typedef float V4 __attribute__((vector_size(16)));   // 4 x float (half of a V)
typedef double VD __attribute__((vector_size(32)));  // 4 x double (sum accumulators)
constexpr int64_t kLanes = 8;

NEEDLE_INLINE V Splat(float x) { return V{x, x, x, x, x, x, x, x}; }
NEEDLE_INLINE V Load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
NEEDLE_INLINE void Store(float* p, const V& v) { std::memcpy(p, &v, sizeof(V)); }
// The first n (< 8) lanes from p, the other lanes `pad`.
NEEDLE_INLINE V LoadPartial(const float* p, int64_t n, float pad) {
  V v = Splat(pad);
  std::memcpy(&v, p, size_t(n) * sizeof(float));
  return v;
}
NEEDLE_INLINE void StorePartial(float* p, const V& v, int64_t n) { std::memcpy(p, &v, size_t(n) * sizeof(float)); }
NEEDLE_INLINE VI AsInt(const V& v) { return (VI)v; }
NEEDLE_INLINE V AsFloat(const VI& v) { return (V)v; }

// numpy.maximum: NaN in either operand gives NaN.
NEEDLE_INLINE V MaxNan(const V& a, const V& b) { return ((a != a) | (a > b)) ? a : b; }
NEEDLE_INLINE float MaxNan(float a, float b) { return (a != a || a > b) ? a : b; }

// exp, Cephes expf polynomial (max error ~1 ulp); 2^n is applied in two halves so results
// reach the denormal range and +inf like expf.
NEEDLE_INLINE V Exp(const V& x) {
  const V lo = Splat(-104.0f), hi = Splat(89.0f), magic = Splat(12582912.0f);  // 1.5 * 2^23
  V xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const V t = xc * 1.44269504088896341f + magic;  // round(x / ln 2) in the low mantissa bits
  const V n = t - magic;
  const VI ni = AsInt(t) - AsInt(magic);
  V r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = Splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const VI n1 = ni >> 1, n2 = ni - n1;
  const V y = p * AsFloat((n1 + 127) << 23) * AsFloat((n2 + 127) << 23);
  return x != x ? x : y;
}

// log, Cephes logf (max error ~1 ulp); IEEE special values as numpy.
NEEDLE_INLINE V Log(const V& x) {
  const VI denormal = x < Splat(1.17549435e-38f);
  const V xs = denormal ? x * 8388608.0f : x;  // scale denormals by 2^23 into the normal range
  const VI bits = AsInt(xs);
  VI e = ((bits >> 23) & 0xff) - 126 + (denormal & -23);
  V m = AsFloat((bits & 0x007fffff) | 0x3f000000);  // mantissa in [0.5, 1)
  const VI small = m < Splat(0.707106781186547524f);
  e = e + small;  // masks are -1: e - 1 where m < sqrt(1/2)
  m = small ? m + m - 1.0f : m - 1.0f;
  const V ef = __builtin_convertvector(e, V);
  const V z = m * m;
  V y = Splat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y = y + ef * -2.12194440e-4f;
  y = y - 0.5f * z;
  V r = m + y;
  r = r + ef * 0.693359375f;
  const float inf = std::numeric_limits<float>::infinity();
  r = x == Splat(0.0f) ? Splat(-inf) : r;
  r = x < Splat(0.0f) ? Splat(std::numeric_limits<float>::quiet_NaN()) : r;
  r = x == Splat(inf) ? x : r;
  return x != x ? x : r;
}

// tanh, Cephes tanhf: odd polynomial below 0.625, 1 - 2 / (exp(2|x|) + 1) above.
NEEDLE_INLINE V Tanh(const V& x) {
  const VI sign = AsInt(x) & int32_t(0x80000000);
  const V z = AsFloat(AsInt(x) & 0x7fffffff);
  const V zc = z > Splat(44.0f) ? Splat(44.0f) : z;  // tanh(44) == 1 in float
  const V s = Exp(zc + zc);
  const V big = AsFloat(AsInt(1.0f - 2.0f / (s + 1.0f)) | sign);
  const V x2 = x * x;
  V p = -5.70498872745e-3f * x2 + 2.06390887954e-2f;
  p = p * x2 - 5.37397155531e-2f;
  p = p * x2 + 1.33314422036e-1f;
  p = p * x2 - 3.33332819422e-1f;
  const V small = AsFloat(AsInt(p * x2 * x + x) | sign);  // keeps tanh(-0) == -0
  return z < Splat(0.625f) ? small : big;
}

// acc += the 8 lanes of v widened to double (two 4-lane halves: wider vectors are scalarised).
NEEDLE_INLINE void AddWide(const V& v, VD* lo, VD* hi) {
  *lo += __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), VD);
  *hi += __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), VD);
}
NEEDLE_INLINE double HorizontalSum(const VD& v) { return (v[0] + v[1]) + (v[2] + v[3]); }
NEEDLE_INLINE float HorizontalMax(const V& v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = MaxNan(m, v[i]);
  return m;
}

// ------------------------------------------------------------------------ dispatch
// NEEDLE_CPU_ISA=generic forces the baseline build (to test it on an AVX2 machine).
inline bool HasAvx2Fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          !(std::getenv("NEEDLE_CPU_ISA") && std::string(std::getenv("NEEDLE_CPU_ISA")) == "generic");
  return has;
#else
  return false;
#endif
}

template <class K>
void RunBase(const K& k, int64_t i0, int64_t i1) {
  k(i0, i1);
}

#if defined(__x86_64__) || defined(__i386__)
template <class K>
__attribute__((target("avx2,fma"))) void RunAvx2(const K& k, int64_t i0, int64_t i1) {
  k(i0, i1);
}
#endif

template <class K>
void Dispatch(const K& k, int64_t i0, int64_t i1) {
#if defined(__x86_64__) || defined(__i386__)
  if (HasAvx2Fma()) {
    RunAvx2(k, i0, i1);
    return;
  }
#endif
  RunBase(k, i0, i1);
}

}  // namespace cpu
}  // namespace needle
