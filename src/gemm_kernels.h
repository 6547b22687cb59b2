// needle SGEMM micro-kernels (included by gemm.h).
//
// A micro-kernel computes one MR x NR tile of C from packed panels:
//   a: kc x MR, column p holds op(A)[i0 .. i0+MR, p]   (MR floats per k step)
//   b: kc x NR, row p holds op(B)[p, j0 .. j0+NR]       (NR floats per k step, 64-byte aligned)
//   c: row-major with leading dim ldc; c = a^T b (+ c when accumulate).
// Every kernel writes the full MR x NR tile; the driver routes partial edge tiles through a
// scratch tile. kc >= 1.
#pragma once
#include <cstdint>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define NEEDLE_GEMM_X86 1
#include <immintrin.h>
#else
#define NEEDLE_GEMM_X86 0
#endif

namespace needle {
namespace gemm_detail {

using KernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                          bool accumulate);

// Portable kernel: plain loops over a small accumulator tile; the compiler vectorises them
// for the baseline ISA (SSE2 on x86-64). Also the reference the SIMD kernels are tested against.
struct GenericKernel {
  static constexpr int kMR = 4;
  static constexpr int kNR = 8;
  static constexpr const char* kName = "generic";
  static void Run(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                  bool accumulate) {
    float acc[kMR][kNR] = {};
    for (int64_t p = 0; p < kc; ++p) {
      for (int i = 0; i < kMR; ++i)
        for (int j = 0; j < kNR; ++j) acc[i][j] += a[i] * b[j];
      a += kMR;
      b += kNR;
    }
    for (int i = 0; i < kMR; ++i) {
      float* ci = c + i * ldc;
      if (accumulate)
        for (int j = 0; j < kNR; ++j) ci[j] += acc[i][j];
      else
        for (int j = 0; j < kNR; ++j) ci[j] = acc[i][j];
    }
  }
};

#if NEEDLE_GEMM_X86
// AVX2 + FMA, 6 x 16: 12 ymm accumulators, 2 ymm for the B row, 1 for the A broadcast.
// Per k step: 2 loads + 6 broadcasts feed 12 FMAs, which keeps both FMA pipes of
// Haswell/Zen busy (6 cycles of FMA per step, 8 loads).
struct Avx2Kernel {
  static constexpr int kMR = 6;
  static constexpr int kNR = 16;
  static constexpr const char* kName = "avx2";
  __attribute__((target("avx2,fma"))) static void Run(int64_t kc, const float* a,
                                                        const float* b, float* c, int64_t ldc,
                                                        bool accumulate) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int i = 0; i < kMR; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; ++p) {
      const __m256 b0 = _mm256_load_ps(b);
      const __m256 b1 = _mm256_load_ps(b + 8);
      __m256 av = _mm256_broadcast_ss(a + 0);
      c00 = _mm256_fmadd_ps(av, b0, c00);
      c01 = _mm256_fmadd_ps(av, b1, c01);
      av = _mm256_broadcast_ss(a + 1);
      c10 = _mm256_fmadd_ps(av, b0, c10);
      c11 = _mm256_fmadd_ps(av, b1, c11);
      av = _mm256_broadcast_ss(a + 2);
      c20 = _mm256_fmadd_ps(av, b0, c20);
      c21 = _mm256_fmadd_ps(av, b1, c21);
      av = _mm256_broadcast_ss(a + 3);
      c30 = _mm256_fmadd_ps(av, b0, c30);
      c31 = _mm256_fmadd_ps(av, b1, c31);
      av = _mm256_broadcast_ss(a + 4);
      c40 = _mm256_fmadd_ps(av, b0, c40);
      c41 = _mm256_fmadd_ps(av, b1, c41);
      av = _mm256_broadcast_ss(a + 5);
      c50 = _mm256_fmadd_ps(av, b0, c50);
      c51 = _mm256_fmadd_ps(av, b1, c51);
      a += kMR;
      b += kNR;
    }
    Store(c + 0 * ldc, c00, c01, accumulate);
    Store(c + 1 * ldc, c10, c11, accumulate);
    Store(c + 2 * ldc, c20, c21, accumulate);
    Store(c + 3 * ldc, c30, c31, accumulate);
    Store(c + 4 * ldc, c40, c41, accumulate);
    Store(c + 5 * ldc, c50, c51, accumulate);
  }

 private:
  __attribute__((target("avx2,fma"), always_inline)) static inline void Store(
      float* c, __m256 lo, __m256 hi, bool accumulate) {
    if (accumulate) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(c));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(c + 8));
    }
    _mm256_storeu_ps(c, lo);
    _mm256_storeu_ps(c + 8, hi);
  }
};
#endif  // NEEDLE_GEMM_X86

}  // namespace gemm_detail
}  // namespace needle
