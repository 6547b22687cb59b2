// needle SGEMM micro-kernels (included by gemm.h).
//
// A micro-kernel computes one MR x NR tile of C, c = a b (+ c when accumulate), from
//   a: MR rows x kc steps, element (i, p) at
//        kPacked: a[p * MR + i]         (a packed panel; a_stride is ignored)
//        kRows:   a[i * a_stride + p]   (a non-transposed A read in place)
//        kCols:   a[p * a_stride + i]   (a transposed A read in place);
//   b: a packed panel, kc x NR, row p holds op(B)[p, j0 .. j0+NR] (64-byte aligned);
//   c: row-major with leading dim ldc; only its top-left mr x nr corner is written (edge tiles
//      of C; the zero padding of the packed B panel makes the other columns zero).
// kHalf: nr <= NR / 2, so the kernel may skip the right half of the tile. A kernel with
// kInPlaceA false only ever gets packed panels. The driver never hands a kernel an A panel with
// missing rows (it packs them, zero-padded). kc >= 1.
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

enum ALayout { kPacked, kRows, kCols };

// Portable kernel: plain loops over a small accumulator tile; the compiler vectorises them
// for the baseline ISA (SSE2 on x86-64). Also the reference the SIMD kernels are tested against.
// Packed A only (kInPlaceA false): on a strided A the compiler vectorises the k loop instead of
// the j loop, and gathering A into a packed chunk per call costs more than packing it once.
struct GenericKernel {
  static constexpr int kMR = 4;
  static constexpr int kNR = 8;
  static constexpr bool kInPlaceA = false;
  static constexpr const char* kName = "generic";
  template <int kLayout, bool kHalf>
  static void Run(int64_t kc, const float* a, int64_t /*a_stride*/, const float* b, float* c,
                  int64_t ldc, bool accumulate, int mr, int nr) {
    static_assert(kLayout == kPacked, "the generic kernel reads packed A panels only");
    float acc[kMR][kNR] = {};
    for (int64_t p = 0; p < kc; ++p) {
      for (int i = 0; i < kMR; ++i)
        for (int j = 0; j < kNR; ++j) acc[i][j] += a[i] * b[j];
      a += kMR;
      b += kNR;
    }
    if (mr == kMR && nr == kNR) {
      for (int i = 0; i < kMR; ++i) {
        float* ci = c + i * ldc;
        if (accumulate)
          for (int j = 0; j < kNR; ++j) ci[j] += acc[i][j];
        else
          for (int j = 0; j < kNR; ++j) ci[j] = acc[i][j];
      }
      return;
    }
    // Through a copy: indexing acc itself with the runtime mr / nr would keep it in memory
    // during the k loop.
    float tile[kMR][kNR];
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) tile[i][j] = acc[i][j];
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < nr; ++j)
        c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + tile[i][j];
  }
};

#if NEEDLE_GEMM_X86
// One k step of the 6 x 16 AVX2 tile: the B row in two ymm, each A value broadcast once.
// A macro, not a lambda: a lambda would not inherit the avx2 target of the enclosing function.
#define NEEDLE_GEMM_AVX2_STEP(A0, A1, A2, A3, A4, A5)      \
  do {                                                      \
    const __m256 b0 = _mm256_load_ps(b);                    \
    const __m256 b1 = kHalf ? b0 : _mm256_load_ps(b + 8);   \
    __m256 av = _mm256_broadcast_ss(A0);                    \
    c00 = _mm256_fmadd_ps(av, b0, c00);                     \
    if (!kHalf) c01 = _mm256_fmadd_ps(av, b1, c01);         \
    av = _mm256_broadcast_ss(A1);                           \
    c10 = _mm256_fmadd_ps(av, b0, c10);                     \
    if (!kHalf) c11 = _mm256_fmadd_ps(av, b1, c11);         \
    av = _mm256_broadcast_ss(A2);                           \
    c20 = _mm256_fmadd_ps(av, b0, c20);                     \
    if (!kHalf) c21 = _mm256_fmadd_ps(av, b1, c21);         \
    av = _mm256_broadcast_ss(A3);                           \
    c30 = _mm256_fmadd_ps(av, b0, c30);                     \
    if (!kHalf) c31 = _mm256_fmadd_ps(av, b1, c31);         \
    av = _mm256_broadcast_ss(A4);                           \
    c40 = _mm256_fmadd_ps(av, b0, c40);                     \
    if (!kHalf) c41 = _mm256_fmadd_ps(av, b1, c41);         \
    av = _mm256_broadcast_ss(A5);                           \
    c50 = _mm256_fmadd_ps(av, b0, c50);                     \
    if (!kHalf) c51 = _mm256_fmadd_ps(av, b1, c51);         \
    b += kNR;                                               \
  } while (0)

// AVX2 + FMA, 6 x 16: 12 ymm accumulators, 2 ymm for the B row, 1 for the A broadcast.
// Per k step: 2 loads + 6 broadcasts feed 12 FMAs, which keeps both FMA pipes of
// Haswell/Zen busy (6 cycles of FMA per step, 8 loads).
struct Avx2Kernel {
  static constexpr int kMR = 6;
  static constexpr int kNR = 16;
  static constexpr bool kInPlaceA = true;
  static constexpr const char* kName = "avx2";
  template <int kLayout, bool kHalf>
  __attribute__((target("avx2,fma"))) static void Run(int64_t kc, const float* a,
                                                        int64_t a_stride, const float* b,
                                                        float* c, int64_t ldc, bool accumulate,
                                                        int mr, int nr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int i = 0; i < kMR; ++i)
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    if (kLayout == kRows) {
      // Six rows of A side by side, each read left to right (six sequential streams).
      const float *a0 = a, *a1 = a + a_stride, *a2 = a + 2 * a_stride, *a3 = a + 3 * a_stride,
                  *a4 = a + 4 * a_stride, *a5 = a + 5 * a_stride;
#pragma GCC unroll 4
      for (int64_t p = 0; p < kc; ++p)
        NEEDLE_GEMM_AVX2_STEP(a0 + p, a1 + p, a2 + p, a3 + p, a4 + p, a5 + p);
    } else {
      const int64_t step = kLayout == kPacked ? kMR : a_stride;  // a constant when packed
#pragma GCC unroll 4
      for (int64_t p = 0; p < kc; ++p) {
        NEEDLE_GEMM_AVX2_STEP(a + 0, a + 1, a + 2, a + 3, a + 4, a + 5);
        a += step;
      }
    }
    if (!kHalf && mr == kMR && nr == kNR) {
      Store(c + 0 * ldc, c00, c01, accumulate);
      Store(c + 1 * ldc, c10, c11, accumulate);
      Store(c + 2 * ldc, c20, c21, accumulate);
      Store(c + 3 * ldc, c30, c31, accumulate);
      Store(c + 4 * ldc, c40, c41, accumulate);
      Store(c + 5 * ldc, c50, c51, accumulate);
      return;
    }
    // Edge tile: spill the registers, copy the valid corner (AVX masked stores are slow on Zen).
    alignas(32) float tile[kMR][kNR];
    _mm256_store_ps(tile[0], c00), _mm256_store_ps(tile[0] + 8, c01);
    _mm256_store_ps(tile[1], c10), _mm256_store_ps(tile[1] + 8, c11);
    _mm256_store_ps(tile[2], c20), _mm256_store_ps(tile[2] + 8, c21);
    _mm256_store_ps(tile[3], c30), _mm256_store_ps(tile[3] + 8, c31);
    _mm256_store_ps(tile[4], c40), _mm256_store_ps(tile[4] + 8, c41);
    _mm256_store_ps(tile[5], c50), _mm256_store_ps(tile[5] + 8, c51);
    for (int i = 0; i < mr; ++i) {
      float* ci = c + i * ldc;
      int j = 0;
      for (; j + 4 <= nr; j += 4) {
        __m128 v = _mm_load_ps(tile[i] + j);
        if (accumulate) v = _mm_add_ps(v, _mm_loadu_ps(ci + j));
        _mm_storeu_ps(ci + j, v);
      }
      for (; j < nr; ++j) ci[j] = (accumulate ? ci[j] : 0.0f) + tile[i][j];
    }
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
#undef NEEDLE_GEMM_AVX2_STEP
#endif  // NEEDLE_GEMM_X86

}  // namespace gemm_detail
}  // namespace needle
