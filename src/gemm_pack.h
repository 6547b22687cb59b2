// needle SGEMM operands and packing (included by gemm.h): the strided-A view of an implicit
// GEMM, and the copies of A and B blocks into the micro-panel layouts the kernels read
// (gemm_kernels.h: kc x MR panels of A, kc x NR panels of B, zero-padded at the edges).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "gemm_kernels.h"

namespace needle {
namespace gemm_detail {

constexpr int64_t kMaxKC = 512;  // bound on the k block depth of every kernel (stack arrays)

// op(A) read through a strided view (implicit GEMM): element (i, p) is
// a[RowOffset(i) + ColOffset(p)], the offsets being i and p written in the mixed radix of up to
// three dims each (an im2col view N, Ho, Wo | KH, KW, C, or its transpose), so the im2col
// matrix is never materialised: PackA gathers straight into the micro-panel layout.
struct StridedA {
  static constexpr int kDims = 3;
  int64_t row_shape[kDims], row_strides[kDims];  // unused leading dims: (1, 0)
  int64_t col_shape[kDims], col_strides[kDims];
};

// Offsets of the `count` consecutive flat indices from `start` of a 3-dim mixed radix.
inline void StridedOffsets(const int64_t shape[3], const int64_t strides[3], int64_t start,
                           int64_t count, int64_t* out) {
  int64_t d2 = start % shape[2], rest = start / shape[2];
  int64_t d1 = rest % shape[1], d0 = rest / shape[1];
  int64_t off = d0 * strides[0] + d1 * strides[1] + d2 * strides[2];
  for (int64_t i = 0; i < count; ++i) {
    out[i] = off;
    if (++d2 < shape[2]) {
      off += strides[2];
      continue;
    }
    d2 = 0;
    if (++d1 < shape[1]) {
      off += strides[1] - (shape[2] - 1) * strides[2];
      continue;
    }
    d1 = 0;
    ++d0;
    off = d0 * strides[0];
  }
}

// One matrix of the batch: op(A) is m x k, op(B) is k x n, C is m x n. With `strided_a`, op(A)
// is that view of `a` (lda and trans_a unused) and is always packed.
struct Operands {
  const float* a;
  int64_t lda;
  bool trans_a;
  const float* b;
  int64_t ldb;
  bool trans_b;
  float* c;
  int64_t ldc;
  const StridedA* strided_a = nullptr;
};

inline void PrefetchRead(const float* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

// Transposes ROWS rows, row r starting at src[r], k steps of each, into dst[p * LD + r]: the
// packing of a non-transposed A or a transposed B. SSE 4x4 transposes over 4 k steps; returns
// the number of k steps done (the caller finishes the remainder with scalar code). With
// next_panel != 0, the same columns of the rows that far on are prefetched.
template <int ROWS, int LD>
inline int64_t TransposeRowPointers(const float* const src[ROWS], int64_t kc, float* dst,
                                    int64_t next_panel = 0) {
#if NEEDLE_GEMM_X86
  static_assert(ROWS % 2 == 0, "row groups of 4, then at most one pair");
  int64_t p = 0;
  for (; p + 4 <= kc; p += 4) {
    if (next_panel != 0 && p % 16 == 0)
      for (int r = 0; r < ROWS; ++r) PrefetchRead(src[r] + next_panel + p);
    int r = 0;
    for (; r + 4 <= ROWS; r += 4) {
      __m128 r0 = _mm_loadu_ps(src[r + 0] + p);
      __m128 r1 = _mm_loadu_ps(src[r + 1] + p);
      __m128 r2 = _mm_loadu_ps(src[r + 2] + p);
      __m128 r3 = _mm_loadu_ps(src[r + 3] + p);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(dst + (p + 0) * LD + r, r0);
      _mm_storeu_ps(dst + (p + 1) * LD + r, r1);
      _mm_storeu_ps(dst + (p + 2) * LD + r, r2);
      _mm_storeu_ps(dst + (p + 3) * LD + r, r3);
    }
    if (r < ROWS) {  // the last two rows: interleave them, two floats per k step
      const __m128 x = _mm_loadu_ps(src[r + 0] + p);
      const __m128 y = _mm_loadu_ps(src[r + 1] + p);
      const __m128 lo = _mm_unpacklo_ps(x, y), hi = _mm_unpackhi_ps(x, y);
      _mm_storel_pi(reinterpret_cast<__m64*>(dst + (p + 0) * LD + r), lo);
      _mm_storeh_pi(reinterpret_cast<__m64*>(dst + (p + 1) * LD + r), lo);
      _mm_storel_pi(reinterpret_cast<__m64*>(dst + (p + 2) * LD + r), hi);
      _mm_storeh_pi(reinterpret_cast<__m64*>(dst + (p + 3) * LD + r), hi);
    }
  }
  return p;
#else
  (void)src, (void)kc, (void)dst, (void)next_panel;
  return 0;
#endif
}

// TransposeRowPointers over ROWS rows `ld` apart. Each row is read for only kc floats, too short
// for the hardware prefetcher to ramp up: the next panel's rows are fetched one panel ahead.
template <int ROWS, int LD>
inline int64_t TransposeRows(const float* src, int64_t ld, int64_t kc, float* dst) {
  const float* rows[ROWS];
  for (int r = 0; r < ROWS; ++r) rows[r] = src + r * ld;
  return TransposeRowPointers<ROWS, LD>(rows, kc, dst, ROWS * ld);
}

// Packs W-wide column panels [panel0, panel1) of a row-major kc x width block (leading dim
// ld): row p of panel q, src[p * ld + q * W ...], goes to dst[q * W * kc + p * W ...],
// zero-padded past `width`. Works on 4 source rows at a time: the reads are 4 sequential
// streams and each panel receives 4 * W contiguous floats (row by row, the writes would hit
// one cache line per panel, all W * kc floats apart: the same cache set).
template <int W>
inline void PackPanelsByRow(const float* src, int64_t ld, int64_t kc, int64_t width,
                            int64_t panel0, int64_t panel1, float* dst) {
  constexpr int64_t kRows = 4;
  const int64_t full_end = std::max(panel0, std::min(panel1, width / W));
  const int64_t lo = panel0 * W, hi = std::min(width, panel1 * W);
  for (int64_t p0 = 0; p0 < kc; p0 += kRows) {
    const int64_t rows = std::min(kRows, kc - p0);
    const float* s = src + p0 * ld;
    // Source rows are ld apart, too far for the hardware prefetcher: ask a group ahead.
    if (p0 + 2 * kRows <= kc && hi - lo <= 1024)
      for (int64_t r = kRows; r < 2 * kRows; ++r)
        for (int64_t j = lo; j < hi; j += 16) PrefetchRead(s + r * ld + j);
    for (int64_t q = panel0; q < full_end; ++q) {
      float* d = dst + q * W * kc + p0 * W;
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(d + r * W, s + r * ld + q * W, sizeof(float) * W);
    }
    for (int64_t q = full_end; q < panel1; ++q) {
      const int64_t w = std::min<int64_t>(W, width - q * W);
      for (int64_t r = 0; r < rows; ++r) {
        float* d = dst + q * W * kc + (p0 + r) * W;
        for (int64_t j = 0; j < w; ++j) d[j] = s[r * ld + q * W + j];
        for (int64_t j = w; j < W; ++j) d[j] = 0.0f;
      }
    }
  }
}

// Packs W-wide panels [panel0, panel1) of the transpose of a row-major width x kc block:
// element (p, j) of panel q is src[(q * W + j) * ld + p], stored at dst[q * W * kc + p * W + j].
template <int W>
inline void PackPanelsByColumn(const float* src, int64_t ld, int64_t kc, int64_t width,
                               int64_t panel0, int64_t panel1, float* dst) {
  for (int64_t q = panel0; q < panel1; ++q) {
    const float* s = src + q * W * ld;
    float* d = dst + q * W * kc;
    const int64_t w = std::min<int64_t>(W, width - q * W);
    if (w == W) {
      // Walks W rows of the source side by side, one element of each per k step.
      int64_t p = TransposeRows<W, W>(s, ld, kc, d);
      for (; p < kc; ++p)
        for (int j = 0; j < W; ++j) d[p * W + j] = s[j * ld + p];
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        for (int64_t j = 0; j < w; ++j) d[p * W + j] = s[j * ld + p];
        for (int64_t j = w; j < W; ++j) d[p * W + j] = 0.0f;
      }
    }
  }
}

// PackA of a strided A, one MR-row panel at a time, two ways:
// - rows in few runs of adjacent offsets (a weight gradient's transposed im2col: rows are the
//   channels of a tap): per k step, each run is one short copy;
// - otherwise (a forward im2col: rows are pixels), over each run of k steps whose column
//   offsets are consecutive (the channels of a tap), the rows are plain memory: 4 x 4
//   transposes, as when packing a stored matrix.
template <int MR>
inline void PackStridedA(const Operands& op, int64_t i0, int64_t p0, int64_t mc, int64_t kc,
                         float* dst) {
  const StridedA& v = *op.strided_a;
  int64_t col_off[kMaxKC];
  StridedOffsets(v.col_shape, v.col_strides, p0, kc, col_off);
  for (int64_t r0 = 0; r0 < mc; r0 += MR, dst += MR * kc) {
    const int rows = static_cast<int>(std::min<int64_t>(MR, mc - r0));
    int64_t row_off[MR];
    StridedOffsets(v.row_shape, v.row_strides, i0 + r0, rows, row_off);
    int runs = 1;  // of rows with adjacent offsets
    for (int r = 1; r < rows; ++r) runs += row_off[r] != row_off[r - 1] + 1;
    const float* row[MR];
    for (int r = 0; r < MR; ++r) row[r] = op.a + (r < rows ? row_off[r] : 0);
    if (runs == 1 && rows == MR) {  // a fixed-size copy per k step
      for (int64_t p = 0; p < kc; ++p)
        std::memcpy(dst + p * MR, row[0] + col_off[p], sizeof(float) * MR);
      continue;
    }
    if (runs <= MR / 3) {  // tap boundaries or the last panel: element by element
      for (int64_t p = 0; p < kc; ++p) {
        float* d = dst + p * MR;
        for (int r = 0; r < MR; ++r) d[r] = r < rows ? row[r][col_off[p]] : 0.0f;
      }
      continue;
    }
    int64_t p = 0;
    while (p < kc) {
      int64_t run = 1;
      while (p + run < kc && col_off[p + run] == col_off[p] + run) ++run;
      int64_t done = 0;
      if (rows == MR) {
        const float* src[MR];
        for (int r = 0; r < MR; ++r) src[r] = row[r] + col_off[p];
        done = TransposeRowPointers<MR, MR>(src, run, dst + p * MR);
      }
      for (int64_t q = p + done; q < p + run; ++q)
        for (int r = 0; r < MR; ++r) dst[q * MR + r] = r < rows ? row[r][col_off[q]] : 0.0f;
      p += run;
    }
  }
}

// Packs op(A)[i0:i0+mc, p0:p0+kc] into MR-row micro-panels, each kc x MR (k-major),
// zero-padding the last panel to MR rows.
template <int MR>
inline void PackA(const Operands& op, int64_t i0, int64_t p0, int64_t mc, int64_t kc, float* dst) {
  if (op.strided_a != nullptr) return PackStridedA<MR>(op, i0, p0, mc, kc, dst);
  const int64_t panels = (mc + MR - 1) / MR;
  if (op.trans_a)  // op(A)[i, p] = A[p, i]: rows of the stored A are k steps
    PackPanelsByRow<MR>(op.a + p0 * op.lda + i0, op.lda, kc, mc, 0, panels, dst);
  else
    PackPanelsByColumn<MR>(op.a + i0 * op.lda + p0, op.lda, kc, mc, 0, panels, dst);
}

// Packs micro-panels [panel0, panel1) of op(B)[p0:p0+kc, j0:j0+nc]; panel q covers columns
// j0 + q*NR ... and is stored kc x NR (row per k step), zero-padded to NR columns.
template <int NR>
inline void PackB(const Operands& op, int64_t p0, int64_t j0, int64_t nc, int64_t kc,
                  int64_t panel0, int64_t panel1, float* dst) {
  if (op.trans_b)  // op(B)[p, j] = B[j, p]
    PackPanelsByColumn<NR>(op.b + j0 * op.ldb + p0, op.ldb, kc, nc, panel0, panel1, dst);
  else
    PackPanelsByRow<NR>(op.b + p0 * op.ldb + j0, op.ldb, kc, nc, panel0, panel1, dst);
}

}  // namespace gemm_detail
}  // namespace needle
