// needle SGEMM through a strided A whose consecutive rows are mostly consecutive floats into a C
// with few columns (n <= 8): the forward im2col of a one-channel image (LeNet's first conv,
// 50176 pixels x 25 taps x 6 channels). Included by gemm.h, after gemm_skinny.h.
//
// k is too short for dot products along k (gemm_skinny.h) and n too narrow for the packed
// kernels, so here 16 rows of C are one vector: per k step, each vector of 16 rows is one load
// of A where it lies (a few masked loads where the rows cross from one image row to the next)
// times op(B)[p, j] broadcast, into R x NJ accumulators (R * NJ <= 24). Each C element is one
// FMA chain over p in order, so results do not depend on the thread count. The NJ column
// vectors of a 16-row chunk go to C through LaneTranspose as 16 * NJ consecutive floats.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu_threads.h"
#include "gemm_kernels.h"
#include "gemm_skinny.h"

namespace needle {
namespace gemm_detail {

// Runs of adjacent rows this long keep most 16-row chunks in one piece.
constexpr int64_t kSkinnyRowsMinRun = 16;
// Beyond this k, dot products along k (or the packed kernels) do as well.
constexpr int64_t kSkinnyRowsMaxK = 512;

// Whether this path takes the product: few columns, A's innermost row dim contiguous, and the
// AVX-512 kernel selected.
inline bool SkinnyRowsApplies(const StridedA& v, int64_t n, int64_t k, bool avx512) {
#if NEEDLE_GEMM_X86
  return avx512 && n <= kSkinnyMaxN && k <= kSkinnyRowsMaxK && v.row_strides[2] == 1 &&
         v.row_shape[2] >= kSkinnyRowsMinRun;
#else
  (void)v, (void)n, (void)k, (void)avx512;
  return false;
#endif
}

#if NEEDLE_GEMM_X86
// Cuts A's rows, from row `start` on, into chunks of 16 (see LaneChunk): lane l of a chunk
// reads a + shift + l + the column's offset. The innermost row dim is contiguous (stride 1) in
// runs of len >= 16 rows, so a chunk is one piece, or two where it crosses into the next run.
class RowChunker {
 public:
  RowChunker(const StridedA& v, int64_t start) : v_(v), len_(v.row_shape[2]) {
    d2_ = start % len_;
    const int64_t rest = start / len_;
    d1_ = rest % v.row_shape[1];
    d0_ = rest / v.row_shape[1];
    run_ = d0_ * v.row_strides[0] + d1_ * v.row_strides[1];
  }
  // The next `rows` (<= 16) rows; rows == 0 gives an empty chunk.
  void Next(int rows, LaneChunk& ch) {
    ch = LaneChunk{};
    if (rows == 0) return;
    const int first = static_cast<int>(std::min<int64_t>(rows, len_ - d2_));
    ch.shift[0] = run_ + d2_;
    ch.mask[0] = LaneMask(0, first);
    d2_ += first;
    if (d2_ < len_) return;
    NextRun();
    d2_ = rows - first;
    if (d2_ == 0) return;
    const int64_t shift = run_ - first;
    if (shift == ch.shift[0]) {  // the next run follows on in memory
      ch.mask[0] = LaneMask(0, rows);
    } else {
      ch.shift[1] = shift;
      ch.mask[1] = LaneMask(first, rows);
    }
  }

 private:
  void NextRun() {
    if (++d1_ == v_.row_shape[1]) d1_ = 0, ++d0_;
    run_ = d0_ * v_.row_strides[0] + d1_ * v_.row_strides[1];
  }
  const StridedA& v_;
  const int64_t len_;
  int64_t d0_, d1_, d2_, run_;  // run_: offset of row (d0_, d1_, 0)
};

template <int NJ>
constexpr int SkinnyRowsChunks() {
  return std::min(8, 24 / NJ);
}

// acc[r][j] += A[rows of chunk r, p] * bp[p * NJ + j] over p < k; kWhole: every chunk whole().
template <int NJ, bool kWhole>
__attribute__((target(NEEDLE_GEMM_AVX512_TARGET), always_inline)) inline void SkinnyRowsSteps(
    const float* a, const LaneChunk* chunks, const int64_t* col_off, int64_t k, const float* bp,
    __m512 (*acc)[NJ]) {
  constexpr int R = SkinnyRowsChunks<NJ>();
  for (int64_t p = 0; p < k; ++p) {
    const float* ap = a + col_off[p];
    __m512 x[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
      x[r] = kWhole || chunks[r].whole()
                 ? _mm512_loadu_ps(ap + chunks[r].shift[0])
                 : _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(chunks[r].mask[0], ap + chunks[r].shift[0]),
                                        chunks[r].mask[1], ap + chunks[r].shift[1]);
#pragma GCC unroll 8
    for (int j = 0; j < NJ; ++j) {
      const __m512 b = _mm512_set1_ps(bp[p * NJ + j]);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][j] = _mm512_fmadd_ps(x[r], b, acc[r][j]);
    }
  }
}

// Rows [i0, i0 + 16 R) of C (those below m): C[i, j] = sum_p A[i, p] bp[p * NJ + j].
template <int NJ>
__attribute__((target(NEEDLE_GEMM_AVX512_TARGET))) void SkinnyRowsTile(
    const float* a, RowChunker& walk, int64_t i0, int64_t m, const int64_t* col_off, int64_t k,
    const float* bp, const LaneTranspose& lt, float* c, int64_t ldc) {
  constexpr int R = SkinnyRowsChunks<NJ>();
  LaneChunk chunks[R];
  bool whole = true;
  for (int r = 0; r < R; ++r) {
    walk.Next(static_cast<int>(std::clamp<int64_t>(m - i0 - 16 * r, 0, 16)), chunks[r]);
    whole = whole && chunks[r].whole();
  }
  __m512 acc[R][NJ];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NJ; ++j) acc[r][j] = _mm512_setzero_ps();
  // One loop per kind of tile: a branch on each chunk inside the k loop costs more than its FMAs.
  if (whole)
    SkinnyRowsSteps<NJ, true>(a, chunks, col_off, k, bp, acc);
  else
    SkinnyRowsSteps<NJ, false>(a, chunks, col_off, k, bp, acc);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const int64_t i = i0 + 16 * r;
    const int rows = static_cast<int>(std::clamp<int64_t>(m - i, 0, 16));
    if (rows == 0) break;
    __m512 out[NJ];
    TransposeLanes<NJ>(lt, acc[r], out);
    float* ci = c + i * ldc;
    if (rows == 16 && ldc == NJ) {
#pragma GCC unroll 8
      for (int t = 0; t < NJ; ++t) _mm512_storeu_ps(ci + 16 * t, out[t]);
      continue;
    }
    alignas(64) float block[16 * NJ];
    for (int t = 0; t < NJ; ++t) _mm512_storeu_ps(block + 16 * t, out[t]);
    for (int l = 0; l < rows; ++l)
      for (int j = 0; j < NJ; ++j) ci[l * ldc + j] = block[l * NJ + j];
  }
}

// C (m x NJ) = A' @ op(B) with A' the strided view (see sgemm_strided_a).
template <int NJ>
void SkinnyRowsGemm(bool trans_b, int64_t m, int64_t k, const float* a, const StridedA& v,
                    const float* b, int64_t ldb, float* c, int64_t ldc, int nthreads) {
  constexpr int64_t kTileRows = 16 * SkinnyRowsChunks<NJ>();
  std::vector<int64_t> col_off(static_cast<size_t>(k));
  StridedOffsets(v.col_shape, v.col_strides, 0, k, col_off.data());
  std::vector<float> bp(static_cast<size_t>(k * NJ));  // op(B), k x NJ
  for (int64_t p = 0; p < k; ++p)
    for (int j = 0; j < NJ; ++j) bp[p * NJ + j] = trans_b ? b[j * ldb + p] : b[p * ldb + j];
  const LaneTranspose lt = MakeLaneTranspose(NJ, true);
  // Threads take contiguous ranges of tiles (results do not depend on the split).
  const int64_t tiles = (m + kTileRows - 1) / kTileRows;
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, tiles)));
  cpu::ParallelPieces(parts, parts, [&](int part, int) {
    const int64_t t0 = tiles * part / parts, t1 = tiles * (part + 1) / parts;
    RowChunker walk(v, t0 * kTileRows);
    for (int64_t t = t0; t < t1; ++t)
      SkinnyRowsTile<NJ>(a, walk, t * kTileRows, m, col_off.data(), k, bp.data(), lt, c, ldc);
  });
}

static_assert(kSkinnyMaxN == 8, "one case per column count");
inline void SkinnyRowsDispatch(bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                               const StridedA& v, const float* b, int64_t ldb, float* c,
                               int64_t ldc, int nthreads) {
  switch (n) {
#define NEEDLE_SKINNY_ROWS_CASE(NJ) \
  case NJ:                          \
    return SkinnyRowsGemm<NJ>(trans_b, m, k, a, v, b, ldb, c, ldc, nthreads);
    NEEDLE_SKINNY_ROWS_CASE(1) NEEDLE_SKINNY_ROWS_CASE(2) NEEDLE_SKINNY_ROWS_CASE(3)
    NEEDLE_SKINNY_ROWS_CASE(4) NEEDLE_SKINNY_ROWS_CASE(5) NEEDLE_SKINNY_ROWS_CASE(6)
    NEEDLE_SKINNY_ROWS_CASE(7) NEEDLE_SKINNY_ROWS_CASE(8)
#undef NEEDLE_SKINNY_ROWS_CASE
    default:
      return;
  }
}
#endif  // NEEDLE_GEMM_X86

}  // namespace gemm_detail
}  // namespace needle
