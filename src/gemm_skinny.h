// needle SGEMM through a strided A (an im2col view) into a C with few columns (n <= 8): the
// output-channel counts of small convolutions (LeNet: 6). Included by gemm.h (after StridedA).
//
// The packed kernels tile C in 32-column micro-tiles, so n = 6 wastes most of every FMA, and
// they gather A into panels that are then used for n columns only. Here each C element is a
// dot product vectorised along k instead: k is cut into chunks of 16 steps, and each A row's
// chunk is read where it lies, as one load or, where the chunk crosses from one contiguous run
// of the view (a tap's channels, an image row) to the next, as a few masked loads. op(B)^T
// (n x k, padded to whole chunks) is packed once. A tile of R rows x NJ columns keeps
// R * NJ <= 24 accumulators in registers; the 16 lanes of each are added up at the end of the
// tile. Threads split the rows, or k (partial products added at the end, in thread order) when
// there are too few rows: a weight gradient (m = 25 taps, k = 50176 pixels).
// gemm_skinny_rows.h covers the other narrow case, a tiny k and rows contiguous in memory.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu_threads.h"
#include "gemm_kernels.h"

namespace needle {
namespace gemm_detail {

constexpr int64_t kSkinnyMaxN = 8;  // at 16, the packed kernels do better (conv2 of LeNet)
// Runs shorter than this would split most chunks into several masked loads.
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

// Lanes [l0, l1) of a 16-lane mask.
inline uint16_t LaneMask(int l0, int l1) {
  return static_cast<uint16_t>(((1u << l1) - 1) & ~((1u << l0) - 1));
}

// 16 consecutive elements of a strided vector (a chunk) as up to 3 contiguous pieces: lane l in
// mask[s] is at base + shift[s] + l, base being where the vector is read from (an A row, a k
// step's column). Unused pieces have mask 0; lanes in no piece read as 0.
struct LaneChunk {
  static constexpr int kMaxPieces = 3;  // runs of >= 8 floats cross a chunk at most twice
  int64_t shift[kMaxPieces];
  uint16_t mask[kMaxPieces];
  bool whole() const { return mask[0] == 0xFFFF; }
};

// Permute tables between NJ vectors of 16 lanes (lane l of vector j: row l, column j) and the
// 16 x NJ row-major block they hold (16 * NJ floats, i.e. NJ vectors, the other way round).
// Vector t of one side takes its lanes from vectors 2s and 2s + 1 of the other (one
// two-source permute each, s < (NJ + 1) / 2), blended in by lane mask.
struct LaneTranspose {
  static constexpr int kMaxNJ = 8;
  int32_t index[kMaxNJ][kMaxNJ / 2][16];
  uint16_t mask[kMaxNJ][kMaxNJ / 2];
};

// to_rows: from NJ column vectors to the row-major block; else the reverse.
inline LaneTranspose MakeLaneTranspose(int nj, bool to_rows) {
  LaneTranspose lt{};
  for (int t = 0; t < nj; ++t)
    for (int l = 0; l < 16; ++l) {
      // Lane l of result vector t is lane `lane` of source vector `src`.
      const int q = to_rows ? 16 * t + l : l * nj + t;
      const int src = to_rows ? q % nj : q / 16, lane = to_rows ? q / nj : q % 16;
      lt.index[t][src / 2][l] = lane + (src % 2) * 16;
      lt.mask[t][src / 2] |= static_cast<uint16_t>(1u << l);
    }
  return lt;
}

#if NEEDLE_GEMM_X86
// out[t] (t < NJ) = the lanes of in[0 .. NJ) that `lt` sends there.
template <int NJ>
__attribute__((target(NEEDLE_GEMM_AVX512_TARGET), always_inline)) inline void TransposeLanes(
    const LaneTranspose& lt, const __m512* in, __m512* out) {
  constexpr int kPairs = (NJ + 1) / 2;
#pragma GCC unroll 8
  for (int t = 0; t < NJ; ++t) {
    __m512 v = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int s = 0; s < kPairs; ++s) {
      const __m512i idx = _mm512_loadu_si512(lt.index[t][s]);
      const __m512 w = _mm512_permutex2var_ps(in[2 * s], idx, in[std::min(2 * s + 1, NJ - 1)]);
      v = s == 0 ? w : _mm512_mask_blend_ps(lt.mask[t][s], v, w);
    }
    out[t] = v;
  }
}

// The 16 floats of a chunk that is not whole(), read from `base`.
__attribute__((target(NEEDLE_GEMM_AVX512_TARGET), always_inline)) inline __m512 LoadPieces(
    const LaneChunk& ch, const float* base) {
  __m512 v = _mm512_maskz_loadu_ps(ch.mask[0], base + ch.shift[0]);
  v = _mm512_mask_loadu_ps(v, ch.mask[1], base + ch.shift[1]);
  return ch.mask[2] == 0 ? v : _mm512_mask_loadu_ps(v, ch.mask[2], base + ch.shift[2]);
}

// Rows per tile for NJ columns: R * NJ <= 24 accumulators, and at most 8 A loads per chunk.
template <int NJ>
constexpr int SkinnyTileRows() {
  return std::min(8, 24 / NJ);
}

// Chunks [c0, c1) of steps [0, k) of A's column view (runs of v.col_shape[2] >= 8 floats):
// lane l of chunk c is column 16 c + l.
inline void MakeKChunks(const StridedA& v, int64_t k, int64_t c0, int64_t c1, LaneChunk* out) {
  const int64_t len = v.col_shape[2];
  if (c0 >= c1) return;
  const int64_t p_end = std::min(k, 16 * c1);
  const int64_t u0 = 16 * c0 / len, u1 = (p_end - 1) / len + 1;  // runs touched
  std::vector<int64_t> starts(static_cast<size_t>(u1 - u0));
  const int64_t outer_shape[3] = {1, v.col_shape[0], v.col_shape[1]};
  const int64_t outer_strides[3] = {0, v.col_strides[0], v.col_strides[1]};
  StridedOffsets(outer_shape, outer_strides, u0, u1 - u0, starts.data());
  int64_t u = u0;
  for (int64_t c = c0; c < c1; ++c) {
    LaneChunk& ch = out[c - c0];
    ch = LaneChunk{};
    int64_t p = 16 * c;
    const int64_t pe = std::min(p_end, 16 * c + 16);
    for (int s = 0; p < pe; ++s) {
      while ((u + 1) * len <= p) ++u;
      const int64_t run_end = std::min(pe, (u + 1) * len);
      const int l0 = static_cast<int>(p - 16 * c), l1 = static_cast<int>(run_end - 16 * c);
      ch.shift[s] = starts[u - u0] + (p - u * len) - l0;
      ch.mask[s] = LaneMask(l0, l1);
      p = run_end;
    }
  }
}

// acc (R * NJ accumulators of 16 lanes, r-major) += row r of A (read from rows[r]) times row j
// of bt (bt + j * ldbt + 16 (c - c0) for chunk c; zero past k), over chunks [c0, c1).
template <int NJ>
__attribute__((target(NEEDLE_GEMM_AVX512_TARGET))) void SkinnyTile(
    const float* const* rows, const LaneChunk* chunks, int64_t c0, int64_t c1, const float* bt,
    int64_t ldbt, float (*acc_store)[16]) {
  constexpr int R = SkinnyTileRows<NJ>();
  __m512 acc[R][NJ];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < NJ; ++j) acc[r][j] = _mm512_loadu_ps(acc_store[r * NJ + j]);
  for (int64_t c = c0; c < c1; ++c) {
    const LaneChunk& ch = chunks[c - c0];
    __m512 a[R];
    if (ch.whole()) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) a[r] = _mm512_loadu_ps(rows[r] + ch.shift[0]);
    } else {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) a[r] = LoadPieces(ch, rows[r]);
    }
    const float* b = bt + 16 * (c - c0);
#pragma GCC unroll 16
    for (int j = 0; j < NJ; ++j) {
      const __m512 bj = _mm512_loadu_ps(b + j * ldbt);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][j] = _mm512_fmadd_ps(a[r], bj, acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < NJ; ++j) _mm512_storeu_ps(acc_store[r * NJ + j], acc[r][j]);
}

// sums[i] = the 16 lanes of acc_store[i] added up, i < count (a multiple of 8 rows stored):
// 8 at a time, halves added, then a horizontal-add tree whose result holds the 8 sums in order.
__attribute__((target(NEEDLE_GEMM_AVX512_TARGET))) inline void LaneSums(
    const float (*acc_store)[16], int count, float* sums) {
  for (int g = 0; g * 8 < count; ++g) {
    __m256 v[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i)
      v[i] = _mm256_add_ps(_mm256_loadu_ps(acc_store[g * 8 + i]),
                           _mm256_loadu_ps(acc_store[g * 8 + i] + 8));
    const __m256 s01 = _mm256_hadd_ps(v[0], v[1]), s23 = _mm256_hadd_ps(v[2], v[3]);
    const __m256 s45 = _mm256_hadd_ps(v[4], v[5]), s67 = _mm256_hadd_ps(v[6], v[7]);
    const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
    // lanes: (0123 low halves | 0123 high halves) and the same for 4567
    const __m256 lo = _mm256_permute2f128_ps(s0123, s4567, 0x20);
    const __m256 hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
    alignas(32) float out[8];
    _mm256_store_ps(out, _mm256_add_ps(lo, hi));
    for (int i = 0; i < 8 && g * 8 + i < count; ++i) sums[g * 8 + i] = out[i];
  }
}

// Accumulators of one tile, rounded up to whole groups of 8 for LaneSums.
template <int NJ>
struct SkinnyAcc {
  static constexpr int kCount = SkinnyTileRows<NJ>() * NJ;
  alignas(64) float lanes[(kCount + 7) / 8 * 8][16];
};

// The R rows of A from row i (spare rows past i1 read row i; their sums are dropped).
template <int R>
inline void SkinnyTileRowPointers(const float* a, const StridedA& v, int64_t i, int64_t i1,
                                  const float* rows[R]) {
  const int count = static_cast<int>(std::min<int64_t>(R, i1 - i));
  int64_t off[R];
  StridedOffsets(v.row_shape, v.row_strides, i, count, off);
  for (int r = 0; r < R; ++r) rows[r] = a + off[r < count ? r : 0];
}

// Rows [i0, i1) of C (leading dim ldc) = A' @ op(B) over chunks [c0, c1) (descriptors and
// packed op(B)^T of those chunks).
template <int NJ>
void SkinnyRowRange(const float* a, const StridedA& v, int64_t i0, int64_t i1,
                    const LaneChunk* chunks, int64_t c0, int64_t c1, const float* bt,
                    int64_t ldbt, float* c, int64_t ldc) {
  constexpr int R = SkinnyTileRows<NJ>();
  for (int64_t i = i0; i < i1; i += R) {
    const float* rows[R];
    SkinnyTileRowPointers<R>(a, v, i, i1, rows);
    SkinnyAcc<NJ> acc{};
    SkinnyTile<NJ>(rows, chunks, c0, c1, bt, ldbt, acc.lanes);
    float sums[SkinnyAcc<NJ>::kCount];
    LaneSums(acc.lanes, SkinnyAcc<NJ>::kCount, sums);
    for (int r = 0; r < R && i + r < i1; ++r)
      for (int j = 0; j < NJ; ++j) c[(i + r) * ldc + j] = sums[r * NJ + j];
  }
}

// Chunks [c0, c1) of op(B)^T into bt (NJ rows, ldbt apart, chunk c at 16 (c - c0), zero past k). A stored B (k x NJ,
// rows ldb apart) goes through LaneTranspose 16 rows at a time where the rows are adjacent.
template <int NJ>
__attribute__((target(NEEDLE_GEMM_AVX512_TARGET))) void PackSkinnyB(
    bool trans_b, int64_t k, const float* b, int64_t ldb, const LaneTranspose& lt, int64_t c0,
    int64_t c1, float* bt, int64_t ldbt) {
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t p0 = 16 * c, steps = std::min<int64_t>(16, k - p0);
    if (!trans_b && ldb == NJ && steps == 16) {
      __m512 in[NJ], out[NJ];
#pragma GCC unroll 8
      for (int t = 0; t < NJ; ++t) in[t] = _mm512_loadu_ps(b + p0 * NJ + 16 * t);
      TransposeLanes<NJ>(lt, in, out);
#pragma GCC unroll 8
      for (int j = 0; j < NJ; ++j) _mm512_storeu_ps(bt + j * ldbt + 16 * (c - c0), out[j]);
      continue;
    }
    for (int j = 0; j < NJ; ++j)
      for (int64_t q = 0; q < 16; ++q)
        bt[j * ldbt + 16 * (c - c0) + q] =
            q >= steps ? 0.0f : trans_b ? b[j * ldb + p0 + q] : b[(p0 + q) * ldb + j];
  }
}

// Per-thread scratch of the narrow paths, kept across calls (fresh pages cost more than the
// kernels).
inline std::vector<LaneChunk>& ThreadChunks(int64_t count) {
  static thread_local std::vector<LaneChunk> chunks;
  if (static_cast<int64_t>(chunks.size()) < count) chunks.resize(static_cast<size_t>(count));
  return chunks;
}

// A K split works through its share of k in blocks of this many chunks, packing op(B)^T one
// block at a time (NJ x 2 K floats: L1 / L2) instead of all of it (L3 and back).
constexpr int64_t kSkinnyBlockChunks = 128;

// C (m x NJ) = A' @ op(B) with A' the strided view (see sgemm_strided_a).
template <int NJ>
void SkinnyGemm(bool trans_b, int64_t m, int64_t k, const float* a, const StridedA& v,
                const float* b, int64_t ldb, float* c, int64_t ldc, int nthreads) {
  constexpr int R = SkinnyTileRows<NJ>();
  const int64_t nchunks = (k + 15) / 16;
  // Few tiles (a weight gradient): k in blocks, split over the threads if long enough. Else
  // the threads split the rows.
  const int64_t tiles = (m + R - 1) / R;
  const bool split_k = tiles < 4 * std::max(nthreads, 2);
  const int64_t block = split_k ? std::min(kSkinnyBlockChunks, nchunks) : nchunks;
  const int shares = split_k && nchunks >= 2 * nthreads ? nthreads : 1;  // of k
  // Rows of bt one cache line further apart than whole chunks: a multiple of 4 KiB would put
  // the NJ rows, read side by side, in the same L1 sets.
  const int64_t ldbt = 16 * block + 16;
  // Every buffer is allocated here, so that nothing inside the team can fail.
  float* const bt = ThreadWorkspace().skinny.Get(shares * NJ * ldbt);
  if (bt == nullptr) throw std::bad_alloc();
  LaneChunk* const chunks = ThreadChunks(shares * block).data();
  std::vector<float> partial(static_cast<size_t>((shares - 1) * m * NJ));
  std::vector<SkinnyAcc<NJ>> acc(static_cast<size_t>(split_k ? shares * tiles : 0));
  const LaneTranspose lt = MakeLaneTranspose(NJ, false);
  const auto chunk_at = [nchunks](int t, int parts) { return nchunks * t / parts; };
  cpu::ParallelTeam(nthreads, [&](int tid, int team) {
    if (!split_k) {  // the team packs all of op(B)^T, then each thread takes its rows
      const int64_t c0 = chunk_at(tid, team), c1 = chunk_at(tid + 1, team);
      PackSkinnyB<NJ>(trans_b, k, b, ldb, lt, c0, c1, bt + 16 * c0, ldbt);
      MakeKChunks(v, k, c0, c1, chunks + c0);
      cpu::TeamBarrier(team);
      const int64_t i0 = std::min(m, tiles * tid / team * R);
      const int64_t i1 = std::min(m, tiles * (tid + 1) / team * R);
      SkinnyRowRange<NJ>(a, v, i0, i1, chunks, 0, nchunks, bt, ldbt, c, ldc);
      return;
    }
    // K split: share t of the chunks into C (t = 0) or partial t - 1, then added up in share
    // order. With fewer threads than asked, thread 0 does every share, in that order.
    for (int t = tid; t < shares; t += team) {
      float* const bt_block = bt + t * NJ * ldbt;
      LaneChunk* const block_chunks = chunks + t * block;
      SkinnyAcc<NJ>* const tile_acc = acc.data() + t * tiles;
      const int64_t k1 = chunk_at(t + 1, shares);
      for (int64_t cb = chunk_at(t, shares); cb < k1; cb += block) {
        const int64_t ce = std::min(k1, cb + block);
        PackSkinnyB<NJ>(trans_b, k, b, ldb, lt, cb, ce, bt_block, ldbt);
        MakeKChunks(v, k, cb, ce, block_chunks);
        for (int64_t tile = 0; tile < tiles; ++tile) {
          const float* rows[R];
          SkinnyTileRowPointers<R>(a, v, tile * R, m, rows);
          SkinnyTile<NJ>(rows, block_chunks, cb, ce, bt_block, ldbt, tile_acc[tile].lanes);
        }
      }
      float* const out = t == 0 ? c : partial.data() + (t - 1) * m * NJ;
      const int64_t ld = t == 0 ? ldc : NJ;
      for (int64_t tile = 0; tile < tiles; ++tile) {
        float sums[SkinnyAcc<NJ>::kCount];
        LaneSums(tile_acc[tile].lanes, SkinnyAcc<NJ>::kCount, sums);
        for (int64_t r = 0; r < R && tile * R + r < m; ++r)
          for (int j = 0; j < NJ; ++j) out[(tile * R + r) * ld + j] = sums[r * NJ + j];
      }
    }
    cpu::TeamBarrier(team);
    const int64_t r0 = m * tid / team, r1 = m * (tid + 1) / team;
    for (int t = 1; t < shares; ++t)
      for (int64_t i = r0; i < r1; ++i)
        for (int j = 0; j < NJ; ++j) c[i * ldc + j] += partial[(t - 1) * m * NJ + i * NJ + j];
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
