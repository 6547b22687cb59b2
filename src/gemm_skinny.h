// needle SGEMM through a strided A (an im2col view) into a C with few columns (n <= 8): the
// output-channel counts of small convolutions (LeNet: 6). Included by gemm.h (after StridedA).
//
// The packed kernels tile C in 32-column micro-tiles, so n = 6 wastes most of every FMA, and
// they gather A into panels that are then used for n columns only. Here each C element is a
// dot product vectorised along k instead: the rows of an im2col view are runs of contiguous
// floats along k (a tap's channels, or an image row), read where they lie, 16 at a time, against
// op(B)^T (n x k, contiguous along k; packed once when B is not already transposed). A tile of
// R rows x NJ columns keeps R * NJ <= 24 accumulators in registers; the 16 lanes of each are
// added up at the end of the tile. Threads split the rows, or k (partial products added at the
// end) when there are too few rows: a weight gradient (m = 25 taps, k = 50176 pixels).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu_threads.h"
#include "gemm_kernels.h"

namespace needle {
namespace gemm_detail {

constexpr int64_t kSkinnyMaxN = 8;  // at 16, the packed kernels do better (conv2 of LeNet)
// Runs shorter than this would leave most of the 16 lanes of their last chunk empty.
constexpr int64_t kSkinnyMinRun = 12;

// Whether the skinny path takes this product: few columns, A's column view ends in runs of
// contiguous floats, and the AVX-512 kernel is the one selected.
inline bool SkinnyApplies(const StridedA& v, int64_t n, int64_t k, bool avx512) {
#if NEEDLE_GEMM_X86
  return avx512 && n <= kSkinnyMaxN && v.col_strides[2] == 1 &&
         v.col_shape[2] >= kSkinnyMinRun && k >= 2 * kSkinnyMinRun;
#else
  (void)v, (void)n, (void)k, (void)avx512;
  return false;
#endif
}

// A run of contiguous floats of every A row: offset from the row's start, first k step, length.
struct SkinnyRun {
  int64_t a_off, p, len;
};

#if NEEDLE_GEMM_X86
// Rows per tile for NJ columns: R * NJ <= 24 accumulators, and at most 8 A loads per chunk.
template <int NJ>
constexpr int SkinnyTileRows() {
  return std::min(8, 24 / NJ);
}

// sums[r * NJ + j] = sum over the runs of row r of A (rows[r] + run.a_off, run.len floats)
// times row j of bt (bt + j * ldbt + run.p).
template <int NJ>
__attribute__((target(NEEDLE_GEMM_AVX512_TARGET))) void SkinnyTile(
    const float* const* rows, const SkinnyRun* runs, int64_t nruns, const float* bt,
    int64_t ldbt, float* sums) {
  constexpr int R = SkinnyTileRows<NJ>();
  __m512 acc[R][NJ];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < NJ; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t u = 0; u < nruns; ++u) {
    const SkinnyRun run = runs[u];
    const float* b = bt + run.p;
    int64_t q = 0;
    for (; q + 16 <= run.len; q += 16) {
      __m512 a[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) a[r] = _mm512_loadu_ps(rows[r] + run.a_off + q);
#pragma GCC unroll 16
      for (int j = 0; j < NJ; ++j) {
        const __m512 bj = _mm512_loadu_ps(b + j * ldbt + q);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r][j] = _mm512_fmadd_ps(a[r], bj, acc[r][j]);
      }
    }
    if (q < run.len) {  // both operands masked: 0 * a NaN past the run would poison the sum
      const __mmask16 mask = static_cast<__mmask16>((1u << (run.len - q)) - 1);
      __m512 a[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) a[r] = _mm512_maskz_loadu_ps(mask, rows[r] + run.a_off + q);
#pragma GCC unroll 16
      for (int j = 0; j < NJ; ++j) {
        const __m512 bj = _mm512_maskz_loadu_ps(mask, b + j * ldbt + q);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r][j] = _mm512_fmadd_ps(a[r], bj, acc[r][j]);
      }
    }
  }
  // Lane sums, 8 accumulators at a time: halves added, then a horizontal-add tree whose
  // result holds the 8 sums in order.
  constexpr int kCount = R * NJ, kGroups = (kCount + 7) / 8;
  alignas(64) float spill[kGroups * 8][16] = {};
#pragma GCC unroll 24
  for (int i = 0; i < kCount; ++i) _mm512_storeu_ps(spill[i], acc[i / NJ][i % NJ]);
  alignas(32) float out[kGroups * 8];
  for (int g = 0; g < kGroups; ++g) {
    __m256 v[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i)
      v[i] = _mm256_add_ps(_mm256_load_ps(spill[g * 8 + i]), _mm256_load_ps(spill[g * 8 + i] + 8));
    const __m256 s01 = _mm256_hadd_ps(v[0], v[1]), s23 = _mm256_hadd_ps(v[2], v[3]);
    const __m256 s45 = _mm256_hadd_ps(v[4], v[5]), s67 = _mm256_hadd_ps(v[6], v[7]);
    const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
    // lanes: (0123 low halves | 0123 high halves) and the same for 4567
    const __m256 lo = _mm256_permute2f128_ps(s0123, s4567, 0x20);
    const __m256 hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
    _mm256_store_ps(out + g * 8, _mm256_add_ps(lo, hi));
  }
  for (int i = 0; i < kCount; ++i) sums[i] = out[i];
}

// Thread `tid` of `nthreads`: rows [i0, i1) over runs [u0, u1), into c (leading dim ldc).
template <int NJ>
void SkinnyRowRange(const float* a, const StridedA& v, int64_t i0, int64_t i1, const SkinnyRun* runs,
                int64_t u0, int64_t u1, const float* bt, int64_t ldbt, float* c, int64_t ldc) {
  constexpr int R = SkinnyTileRows<NJ>();
  for (int64_t i = i0; i < i1; i += R) {
    const int rows = static_cast<int>(std::min<int64_t>(R, i1 - i));
    int64_t off[R];
    StridedOffsets(v.row_shape, v.row_strides, i, rows, off);
    const float* row[R];
    for (int r = 0; r < R; ++r) row[r] = a + off[r < rows ? r : 0];  // spare rows: discarded
    float sums[R * NJ];
    SkinnyTile<NJ>(row, runs + u0, u1 - u0, bt, ldbt, sums);
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < NJ; ++j) c[(i + r) * ldc + j] = sums[r * NJ + j];
  }
}

// C (m x NJ) = A' @ op(B) with A' the strided view (see sgemm_strided_a), k = nruns runs.
template <int NJ>
void SkinnyGemm(bool trans_b, int64_t m, int64_t k, const float* a, const StridedA& v,
                const float* b, int64_t ldb, float* c, int64_t ldc, int nthreads) {
  constexpr int R = SkinnyTileRows<NJ>();
  // Runs: the innermost column dim is contiguous; the other two give each run's offset.
  const int64_t len = v.col_shape[2], nruns = k / len;
  std::vector<SkinnyRun> runs(static_cast<size_t>(nruns));
  std::vector<int64_t> starts(static_cast<size_t>(nruns));
  const int64_t outer_shape[3] = {1, v.col_shape[0], v.col_shape[1]};
  const int64_t outer_strides[3] = {0, v.col_strides[0], v.col_strides[1]};
  StridedOffsets(outer_shape, outer_strides, 0, nruns, starts.data());
  for (int64_t u = 0; u < nruns; ++u) runs[u] = {starts[u], u * len, len};
  // Row split when every thread gets a few tiles; else a K split over whole runs.
  const int64_t tiles = (m + R - 1) / R;
  const bool split_k = nthreads > 1 && tiles < 4 * nthreads && nruns >= 2 * nthreads;
  const float* bt = b;
  int64_t ldbt = ldb;
  std::vector<float> packed, partial;
  if (!trans_b) {  // op(B)^T, n x k, from the k x n B
    packed.resize(static_cast<size_t>(NJ * k));
    bt = packed.data();
    ldbt = k;
  }
  if (split_k) partial.resize(static_cast<size_t>((nthreads - 1) * m * NJ));
  float* const bt_out = packed.data();
  cpu::ParallelTeam(nthreads, [&](int tid, int team) {
    if (!trans_b) {
      const int64_t p0 = k * tid / team, p1 = k * (tid + 1) / team;
      for (int64_t p = p0; p < p1; ++p)
        for (int j = 0; j < NJ; ++j) bt_out[j * k + p] = b[p * ldb + j];
      cpu::TeamBarrier(team);
    }
    if (split_k && team == nthreads) {
      const int64_t u0 = nruns * tid / team, u1 = nruns * (tid + 1) / team;
      float* out = tid == 0 ? c : partial.data() + (tid - 1) * m * NJ;
      SkinnyRowRange<NJ>(a, v, 0, m, runs.data(), u0, u1, bt, ldbt, out, tid == 0 ? ldc : NJ);
      cpu::TeamBarrier(team);
      const int64_t r0 = m * tid / team, r1 = m * (tid + 1) / team;
      for (int t = 1; t < team; ++t)
        for (int64_t i = r0; i < r1; ++i)
          for (int j = 0; j < NJ; ++j) c[i * ldc + j] += partial[(t - 1) * m * NJ + i * NJ + j];
    } else if (!split_k || tid == 0) {
      const int parts = split_k ? 1 : team;  // fewer threads than asked: thread 0 does all
      const int me = split_k ? 0 : tid;
      const int64_t i0 = std::min(m, tiles * me / parts * R);
      const int64_t i1 = std::min(m, tiles * (me + 1) / parts * R);
      SkinnyRowRange<NJ>(a, v, i0, i1, runs.data(), 0, nruns, bt, ldbt, c, ldc);
    }
  });
}

// Runs SkinnyGemm for n (1 .. kSkinnyMaxN) columns.
static_assert(kSkinnyMaxN == 8, "one case per column count");
inline void SkinnyDispatch(bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                           const StridedA& v, const float* b, int64_t ldb, float* c, int64_t ldc,
                           int nthreads) {
  switch (n) {
#define NEEDLE_SKINNY_CASE(NJ) \
  case NJ:                     \
    return SkinnyGemm<NJ>(trans_b, m, k, a, v, b, ldb, c, ldc, nthreads);
    NEEDLE_SKINNY_CASE(1) NEEDLE_SKINNY_CASE(2) NEEDLE_SKINNY_CASE(3) NEEDLE_SKINNY_CASE(4)
    NEEDLE_SKINNY_CASE(5) NEEDLE_SKINNY_CASE(6) NEEDLE_SKINNY_CASE(7) NEEDLE_SKINNY_CASE(8)
#undef NEEDLE_SKINNY_CASE
    default:
      return;
  }
}
#endif  // NEEDLE_GEMM_X86

}  // namespace gemm_detail
}  // namespace needle
