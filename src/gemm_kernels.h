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
// missing rows (it packs them, zero-padded). 1 <= kc <= kKC, the kernel's k block depth (chosen
// so that a kKC x NR B micro-panel stays in L1 while the A panels stream past it).
#pragma once
#include <cstdint>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define NEEDLE_GEMM_X86 1
#include <immintrin.h>
// The AVX-512 kernel's target and the CPU check that selects it. tests/avx512_emulation.h
// defines both first (AVX2 + FMA) and emulates the _mm512 intrinsics, so that the same kernel
// source runs, and is tested, on machines without AVX-512.
#ifndef NEEDLE_GEMM_AVX512_TARGET
#define NEEDLE_GEMM_AVX512_TARGET "avx512f"
#endif
#ifndef NEEDLE_GEMM_CPU_HAS_AVX512
#define NEEDLE_GEMM_CPU_HAS_AVX512() __builtin_cpu_supports("avx512f")
#endif
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
  static constexpr int64_t kKC = 384;  // the AVX2 kernel's (rarely used; not tuned on its own)
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
  static constexpr int64_t kKC = 384;  // B micro-panel 384 x 16 floats = 24 KiB of a 32 KiB L1d
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

// AVX-512F, 12 x 32 (the BLIS Skylake-X tile): 24 zmm accumulators, 2 for the B row and 1 for
// the A broadcast, of 32 zmm registers. Per k step: 2 loads + 12 broadcasts feed 24 FMAs,
// 12 cycles on the two 512-bit FMA pipes of Skylake-SP .. Sapphire Rapids, 14 loads in them.
struct Avx512Kernel {
  static constexpr int kMR = 12;
  static constexpr int kNR = 32;
  // B micro-panel 256 x 32 floats = 32 KiB: 2/3 of the 48 KiB L1d of Ice Lake / Sapphire
  // Rapids, as the AVX2 kernel's 24 KiB of 32. At 384 it would be 48 KiB, the whole L1d.
  static constexpr int64_t kKC = 256;
  static constexpr bool kInPlaceA = true;
  static constexpr const char* kName = "avx512";
  template <int kLayout, bool kHalf>
  __attribute__((target(NEEDLE_GEMM_AVX512_TARGET))) static void Run(
      int64_t kc, const float* a, int64_t a_stride, const float* b, float* c, int64_t ldc,
      bool accumulate, int mr, int nr) {
    // Element (i, p) of the A panel is a[i * row_step] after p k steps of `a += k_step`.
    const int64_t row_step = kLayout == kRows ? a_stride : 1;
    const int64_t k_step = kLayout == kPacked ? kMR : kLayout == kRows ? 1 : a_stride;
    // Indexed by constants only (every loop over i is unrolled), so the array lives in registers.
    __m512 acc[kMR][2];
#pragma GCC unroll 12
    for (int i = 0; i < kMR; ++i) {
      acc[i][0] = _mm512_setzero_ps();
      acc[i][1] = _mm512_setzero_ps();
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + nr - 1), _MM_HINT_T0);
    }
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; ++p) {
      const __m512 b0 = _mm512_load_ps(b);
      const __m512 b1 = kHalf ? b0 : _mm512_load_ps(b + 16);
#pragma GCC unroll 12
      for (int i = 0; i < kMR; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i * row_step]);
        acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
        if (!kHalf) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
      }
      a += k_step;
      b += kNR;
    }
    if (!kHalf && mr == kMR && nr == kNR) {
#pragma GCC unroll 12
      for (int i = 0; i < kMR; ++i) {
        Store(c + i * ldc, acc[i][0], 0xFFFF, accumulate);
        Store(c + i * ldc + 16, acc[i][1], 0xFFFF, accumulate);
      }
      return;
    }
    // Edge tile: masked stores write only the valid corner (fast with AVX-512, unlike the
    // AVX2 vmaskmovps).
    const __mmask16 lo = nr >= 16 ? 0xFFFF : (1u << nr) - 1;
    const __mmask16 hi = nr <= 16 ? 0 : (1u << (nr - 16)) - 1;
#pragma GCC unroll 12
    for (int i = 0; i < kMR; ++i) {
      if (i >= mr) continue;
      Store(c + i * ldc, acc[i][0], lo, accumulate);
      if (!kHalf) Store(c + i * ldc + 16, acc[i][1], hi, accumulate);
    }
  }

 private:
  // 16 floats at c (the lanes set in `mask`) = v (+ c when accumulating).
  __attribute__((target(NEEDLE_GEMM_AVX512_TARGET), always_inline)) static inline void Store(
      float* c, __m512 v, __mmask16 mask, bool accumulate) {
    if (mask == 0xFFFF) {
      if (accumulate) v = _mm512_add_ps(v, _mm512_loadu_ps(c));
      _mm512_storeu_ps(c, v);
    } else {
      if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, c));
      _mm512_mask_storeu_ps(c, mask, v);
    }
  }
};
#endif  // NEEDLE_GEMM_X86

}  // namespace gemm_detail
}  // namespace needle
