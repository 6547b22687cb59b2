// Tests only: runs the AVX-512 SGEMM micro-kernel (src/gemm_kernels.h) on a CPU with AVX2 + FMA
// and no AVX-512, so that its indexing, edge masks and arithmetic are checked where no AVX-512
// hardware is at hand. Lane for lane the arithmetic is the same: a 512-bit FMA is two 256-bit
// ones, each lane rounded once. Not emulated: speed, register pressure, the real encoding.
//
// Force-include it ahead of gemm.h and pick the kernel by name:
//   c++ -O2 -fopenmp -std=c++17 -Isrc -include tests/avx512_emulation.h
//       tests/gemm_plans_check.cc -o /tmp/plans512   # one command line
//   NEEDLE_GEMM_KERNEL=avx512 /tmp/plans512
#pragma once
#if !defined(__GNUC__) || !(defined(__x86_64__) || defined(__i386__))
#error "the AVX-512 emulation needs an x86 compiler with GNU attributes"
#endif
#include <cstdint>
// The real declarations first: the macros below rename the _mm512 names only after them.
#include <immintrin.h>

#define NEEDLE_GEMM_EMULATE_AVX512 1
#define NEEDLE_GEMM_AVX512_TARGET "avx2,fma"
#define NEEDLE_GEMM_CPU_HAS_AVX512() \
  (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))

namespace needle_avx512_emulation {

struct Vec {  // lanes 0-7 in lo, 8-15 in hi
  __m256 lo, hi;
};

#define NEEDLE_EMU_FN __attribute__((target("avx2,fma"), always_inline)) inline

NEEDLE_EMU_FN Vec SetZero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
NEEDLE_EMU_FN Vec Set1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
NEEDLE_EMU_FN Vec Load(const float* p) {  // 64-byte aligned, as the real one demands
  if (reinterpret_cast<uintptr_t>(p) % 64 != 0) __builtin_trap();
  return {_mm256_load_ps(p), _mm256_load_ps(p + 8)};
}
NEEDLE_EMU_FN Vec Loadu(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
NEEDLE_EMU_FN void Storeu(float* p, Vec v) {
  _mm256_storeu_ps(p, v.lo);
  _mm256_storeu_ps(p + 8, v.hi);
}
NEEDLE_EMU_FN Vec Add(Vec x, Vec y) {
  return {_mm256_add_ps(x.lo, y.lo), _mm256_add_ps(x.hi, y.hi)};
}
NEEDLE_EMU_FN Vec Fmadd(Vec x, Vec y, Vec z) {  // x * y + z
  return {_mm256_fmadd_ps(x.lo, y.lo, z.lo), _mm256_fmadd_ps(x.hi, y.hi, z.hi)};
}
// Lane j takes p[j] when bit j of the mask is set, else 0; other lanes of p are never read.
NEEDLE_EMU_FN Vec MaskzLoadu(__mmask16 mask, const float* p) {
  alignas(32) float v[16];
  for (int j = 0; j < 16; ++j) v[j] = (mask >> j) & 1 ? p[j] : 0.0f;
  return {_mm256_load_ps(v), _mm256_load_ps(v + 8)};
}
// Writes lane j to p[j] when bit j of the mask is set; other lanes of p are never touched.
NEEDLE_EMU_FN void MaskStoreu(float* p, __mmask16 mask, Vec v) {
  alignas(32) float w[16];
  _mm256_store_ps(w, v.lo);
  _mm256_store_ps(w + 8, v.hi);
  for (int j = 0; j < 16; ++j)
    if ((mask >> j) & 1) p[j] = w[j];
}

struct IVec {  // 16 int32 lanes: lanes 0-7 in lo, 8-15 in hi
  __m256i lo, hi;
};
NEEDLE_EMU_FN IVec LoaduSi(const void* p) {
  const __m256i* q = static_cast<const __m256i*>(p);
  return {_mm256_loadu_si256(q), _mm256_loadu_si256(q + 1)};
}
// Lane j takes p[j] when bit j of the mask is set, else src's lane j.
NEEDLE_EMU_FN Vec MaskLoadu(Vec src, __mmask16 mask, const float* p) {
  alignas(32) float v[16];
  _mm256_store_ps(v, src.lo);
  _mm256_store_ps(v + 8, src.hi);
  for (int j = 0; j < 16; ++j)
    if ((mask >> j) & 1) v[j] = p[j];
  return {_mm256_load_ps(v), _mm256_load_ps(v + 8)};
}
// Lane j: y's lane j when bit j of the mask is set, else x's.
NEEDLE_EMU_FN Vec MaskBlend(__mmask16 mask, Vec x, Vec y) {
  alignas(32) float a[16], b[16];
  _mm256_store_ps(a, x.lo), _mm256_store_ps(a + 8, x.hi);
  _mm256_store_ps(b, y.lo), _mm256_store_ps(b + 8, y.hi);
  for (int j = 0; j < 16; ++j)
    if ((mask >> j) & 1) a[j] = b[j];
  return {_mm256_load_ps(a), _mm256_load_ps(a + 8)};
}
// Lane j: lane idx[j] % 32 of the 32 lanes of x (0-15) then y (16-31).
NEEDLE_EMU_FN Vec Permutex2var(Vec x, IVec idx, Vec y) {
  alignas(32) float a[32], r[16];
  alignas(32) int32_t ix[16];
  _mm256_store_ps(a, x.lo), _mm256_store_ps(a + 8, x.hi);
  _mm256_store_ps(a + 16, y.lo), _mm256_store_ps(a + 24, y.hi);
  _mm256_store_si256(reinterpret_cast<__m256i*>(ix), idx.lo);
  _mm256_store_si256(reinterpret_cast<__m256i*>(ix + 8), idx.hi);
  for (int j = 0; j < 16; ++j) r[j] = a[ix[j] & 31];
  return {_mm256_load_ps(r), _mm256_load_ps(r + 8)};
}

#undef NEEDLE_EMU_FN

}  // namespace needle_avx512_emulation

#define __m512 needle_avx512_emulation::Vec
#define _mm512_setzero_ps needle_avx512_emulation::SetZero
#define _mm512_set1_ps needle_avx512_emulation::Set1
#define _mm512_load_ps needle_avx512_emulation::Load
#define _mm512_loadu_ps needle_avx512_emulation::Loadu
#define _mm512_storeu_ps needle_avx512_emulation::Storeu
#define _mm512_add_ps needle_avx512_emulation::Add
#define _mm512_fmadd_ps needle_avx512_emulation::Fmadd
#define _mm512_maskz_loadu_ps needle_avx512_emulation::MaskzLoadu
#define _mm512_mask_storeu_ps needle_avx512_emulation::MaskStoreu
#define __m512i needle_avx512_emulation::IVec
#define _mm512_loadu_si512 needle_avx512_emulation::LoaduSi
#define _mm512_mask_loadu_ps needle_avx512_emulation::MaskLoadu
#define _mm512_mask_blend_ps needle_avx512_emulation::MaskBlend
#define _mm512_permutex2var_ps needle_avx512_emulation::Permutex2var
