// needle CUDA backend: SGEMM (FP32), shared-memory tiled and register tiled, and the operand
// loaders it shares with the TF32 tensor-core kernel (cuda_gemm_tf32.cuh).
//
// Each block computes a BM x BN tile of C = opA (m x n) @ opB (n x p), stepping through n in
// slices of BK:
//   * global -> registers: every thread fetches one float4 of A and one of B per slice
//     (BM*BK == BN*BK == 4 * threads), vectorised when the operand is 16-byte aligned;
//   * registers -> shared: As[k][i] (A transposed, so a column of opA is contiguous) and
//     Bs[k][j], double-buffered: slice t+1 is fetched from global memory while slice t is
//     multiplied, with a single __syncthreads per slice;
//   * shared -> registers -> FMA: each thread owns a TM x TN block of C, split into 4 x 4
//     sub-blocks spaced BM*4/TM rows and BN*4/TN columns apart, so the float4 reads from shared
//     memory of a warp are contiguous (conflict-free) and the C stores are coalesced.
// Edges (any m, n, p, including 1) are zero-filled on load and masked on store.
// Operand layouts: row-major, transposed (the stored matrix is opA^T / opB^T), the 8x8 tile
// layout of matmul_tiled (contract section 3.6), and, for A only, a strided view whose leading
// dims are the rows and trailing dims the columns (implicit GEMM: an im2col view read in place).
#pragma once

#include "cuda_common.cuh"

namespace needle {
namespace cuda {

// kStridedViewK / kStridedViewM: A is a strided view (GemmArgs::a_rows, a_cols), loaded in quads
// along k (its columns: the im2col view N,Ho,Wo | KH,KW,C, channels contiguous) or along m (its
// rows: the permuted view KH,KW,C | N,Ho,Wo), whichever axis is contiguous in memory.
enum class Layout { kRowMajor, kTransposed, kTiled8, kStridedViewK, kStridedViewM };

// The A quads of a layout run along m (a column of opA) rather than along k.
__host__ __device__ constexpr bool QuadsAlongM(Layout l) {
  return l == Layout::kTransposed || l == Layout::kStridedViewM;
}

// n / d for 0 <= n < 2^31 by a multiply-high, an add and a shift, with the magic number made once
// on the host (round-up method, as in PyTorch's IntDivider): the strided-A loads decode indices
// into view dims with these instead of hardware-less 32-bit division.
struct FastDivmod {
  uint32_t d, magic, shift;

  static FastDivmod For(uint32_t divisor) {
    FastDivmod f{};
    f.d = divisor == 0 ? 1 : divisor;
    while (f.shift < 32 && (uint64_t{1} << f.shift) < f.d) ++f.shift;
    f.magic = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << f.shift) - f.d)) / f.d + 1);
    return f;
  }
  __device__ __forceinline__ uint32_t Div(uint32_t n) const { return (__umulhi(n, magic) + n) >> shift; }
};

// Up to three view dims (s0, s1, s2), row-major, with strides (t0, t1, t2): Offset(idx) is the
// buffer offset of flat index idx < s0*s1*s2 (< 2^31). Fewer dims are padded in front with size 1.
struct StridedDims3 {
  FastDivmod inner, middle;  // s2 and s1
  int64_t stride[3];

  __device__ __forceinline__ int64_t Offset(uint32_t idx) const {
    const uint32_t q = inner.Div(idx), d2 = idx - q * inner.d;
    const uint32_t d0 = middle.Div(q), d1 = q - d0 * middle.d;
    return d0 * stride[0] + d1 * stride[1] + d2 * stride[2];
  }
};

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct GemmTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kThreadsX = BN / TN;  // threads along a row of the C tile
  static constexpr int kThreadsY = BM / TM;
  static constexpr int kThreads = kThreadsX * kThreadsY;
  static constexpr int kRowChunk = BM * 4 / TM;  // distance between a thread's 4-row groups
  static constexpr int kColChunk = BN * 4 / TN;
  static constexpr int kPad = 4;  // keeps transposing stores off one bank, rows 16-byte aligned
  static_assert(BM * BK == 4 * kThreads && BN * BK == 4 * kThreads,
                "each thread loads one float4 of A and one of B per k-slice");
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "4 x 4 sub-blocks");
};

using BigTile = GemmTile<128, 128, 8, 8, 8>;   // 256 threads, 64 accumulators each
using SmallTile = GemmTile<64, 64, 16, 4, 4>;  // 256 threads, for problems with few big tiles

struct GemmArgs {
  const float* a;
  const float* b;
  float* c;
  int64_t batch;
  int m, n, p;
  int64_t a_offset, a_batch_stride, b_offset, b_batch_stride;
  bool vec_a, vec_b, vec_c;  // operand is float4-aligned along its contiguous axis
  int64_t tiles_p, tiles;    // C tiles per row of tiles, C tiles per matrix
  StridedDims3 a_rows, a_cols;  // the kStridedView* layouts: A(i, k) = A[a_rows(i) + a_cols(k)]
};

// Element (r, c) of a rows x cols matrix stored in the 8 x 8 tile layout.
__device__ __forceinline__ int64_t Tiled8Offset(int r, int c, int cols) {
  return static_cast<int64_t>(r >> 3) * 8 * cols + (r & 7) * 8 + (c >> 3) * 64 + (c & 7);
}

// Four consecutive elements p[0..3], the run starting at position pos of a line of len;
// positions >= len read as 0.
__device__ __forceinline__ float4 LoadRun(const float* p, int pos, int len, bool vec) {
  if (vec && pos + 3 < len) return *reinterpret_cast<const float4*>(p);
  float4 r = make_float4(0.f, 0.f, 0.f, 0.f);
  if (pos < len) r.x = p[0];
  if (pos + 1 < len) r.y = p[1];
  if (pos + 2 < len) r.z = p[2];
  if (pos + 3 < len) r.w = p[3];
  return r;
}

// A quad of opA (m x n), along its contiguous axis: (i, k..k+3), or (i..i+3, k) if transposed.
template <Layout L>
__device__ __forceinline__ float4 LoadQuadA(const float* A, int m, int n, int i, int k, bool vec) {
  if (L == Layout::kTransposed) {
    if (k >= n) return make_float4(0.f, 0.f, 0.f, 0.f);
    return LoadRun(A + static_cast<int64_t>(k) * m + i, i, m, vec);
  }
  if (i >= m) return make_float4(0.f, 0.f, 0.f, 0.f);
  const int64_t off = L == Layout::kRowMajor ? static_cast<int64_t>(i) * n + k : Tiled8Offset(i, k, n);
  return LoadRun(A + off, k, n, vec);
}

// A quad of opB (n x p): (k, j..j+3), or (k..k+3, j) if transposed.
template <Layout L>
__device__ __forceinline__ float4 LoadQuadB(const float* B, int n, int p, int k, int j, bool vec) {
  if (L == Layout::kTransposed) {
    if (j >= p) return make_float4(0.f, 0.f, 0.f, 0.f);
    return LoadRun(B + static_cast<int64_t>(j) * n + k, k, n, vec);
  }
  if (k >= n) return make_float4(0.f, 0.f, 0.f, 0.f);
  const int64_t off = L == Layout::kRowMajor ? static_cast<int64_t>(k) * p + j : Tiled8Offset(k, j, p);
  return LoadRun(B + off, j, p, vec);
}

// Strided view, quads along k: (i, k..k+3), row i's offset decoded once per tile. vec_a: the
// innermost column dim has stride 1 and a size divisible by 4, every other stride and the start
// are multiples of 4, so a quad starting at k % 4 == 0 is one aligned float4.
__device__ __forceinline__ float4 LoadQuadViewK(const float* A, const GemmArgs& g, int64_t row_offset,
                                                int i, int k) {
  float4 r = make_float4(0.f, 0.f, 0.f, 0.f);
  if (i >= g.m) return r;
  const float* row = A + row_offset;
  if (g.vec_a && k + 3 < g.n) return *reinterpret_cast<const float4*>(row + g.a_cols.Offset(k));
  if (k < g.n) r.x = row[g.a_cols.Offset(k)];
  if (k + 1 < g.n) r.y = row[g.a_cols.Offset(k + 1)];
  if (k + 2 < g.n) r.z = row[g.a_cols.Offset(k + 2)];
  if (k + 3 < g.n) r.w = row[g.a_cols.Offset(k + 3)];
  return r;
}

// Strided view, quads along m: (i..i+3, k), the four rows' offsets decoded once per tile; vec_a
// as above with rows and columns swapped.
__device__ __forceinline__ float4 LoadQuadViewM(const float* A, const GemmArgs& g, const int64_t* row_offset,
                                                int i, int k) {
  float4 r = make_float4(0.f, 0.f, 0.f, 0.f);
  if (k >= g.n) return r;
  const float* col = A + g.a_cols.Offset(k);
  if (g.vec_a && i + 3 < g.m) return *reinterpret_cast<const float4*>(col + row_offset[0]);
  if (i < g.m) r.x = col[row_offset[0]];
  if (i + 1 < g.m) r.y = col[row_offset[1]];
  if (i + 2 < g.m) r.z = col[row_offset[2]];
  if (i + 3 < g.m) r.w = col[row_offset[3]];
  return r;
}

// The A quads one thread loads for one C tile, in any layout. A stored matrix needs no state;
// a strided view keeps the offsets of the thread's rows, which stay fixed while k moves.
template <Layout L>
struct QuadLoaderA {
  int64_t row_offset[L == Layout::kStridedViewM ? 4 : 1];

  // i: the first row of opA this thread loads in this tile.
  __device__ __forceinline__ void BeginTile(const GemmArgs& g, int i) {
    if constexpr (L == Layout::kStridedViewK) {
      row_offset[0] = i < g.m ? g.a_rows.Offset(i) : 0;
    } else if constexpr (L == Layout::kStridedViewM) {
#pragma unroll
      for (int e = 0; e < 4; ++e) row_offset[e] = i + e < g.m ? g.a_rows.Offset(i + e) : 0;
    }
  }

  // The quad at (i, k..k+3), or (i..i+3, k) when QuadsAlongM(L).
  __device__ __forceinline__ float4 Load(const float* A, const GemmArgs& g, int i, int k) const {
    if constexpr (L == Layout::kStridedViewK)
      return LoadQuadViewK(A, g, row_offset[0], i, k);
    else if constexpr (L == Layout::kStridedViewM)
      return LoadQuadViewM(A, g, row_offset, i, k);
    else
      return LoadQuadA<L>(A, g.m, g.n, i, k, g.vec_a);
  }
};

// Calls tile(A, B, C, m0, n0) for every BM x BN tile of C this block owns: batch matrix
// blockIdx.z and tile blockIdx.x onward, both grid-stride (the FP32 and the TF32 kernels).
template <int BM, int BN, class Tile>
__device__ __forceinline__ void ForEachBlockTile(const GemmArgs& g, Tile&& tile) {
  for (int64_t bt = blockIdx.z; bt < g.batch; bt += gridDim.z) {
    const float* A = g.a + g.a_offset + bt * g.a_batch_stride;
    const float* B = g.b + g.b_offset + bt * g.b_batch_stride;
    float* C = g.c + bt * static_cast<int64_t>(g.m) * g.p;
    for (int64_t t = blockIdx.x; t < g.tiles; t += gridDim.x)
      tile(A, B, C, static_cast<int>(t / g.tiles_p) * BM, static_cast<int>(t % g.tiles_p) * BN);
  }
}

// C[bt] = opA[bt] @ opB[bt] for every batch index bt (blockIdx.z, grid-stride) and C tile
// (blockIdx.x, grid-stride). C is row-major m x p, or tiled when LA is kTiled8.
template <class T, Layout LA, Layout LB>
__global__ void __launch_bounds__(T::kThreads) SgemmKernel(GemmArgs g) {
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, TM = T::TM, TN = T::TN;
  constexpr bool kTiledC = LA == Layout::kTiled8;
  __shared__ __align__(16) float As[2][BK][BM + T::kPad];
  __shared__ __align__(16) float Bs[2][BK][BN + T::kPad];

  const int tid = threadIdx.x;
  const int tx = tid % T::kThreadsX, ty = tid / T::kThreadsX;
  // The (row, col) this thread loads inside the A and B slices (see the layout notes above).
  constexpr bool kTA = QuadsAlongM(LA), kTB = LB == Layout::kTransposed;
  const int a_r = kTA ? tid / (BM / 4) : tid / (BK / 4);
  const int a_c = kTA ? (tid % (BM / 4)) * 4 : (tid % (BK / 4)) * 4;
  const int b_r = kTB ? tid / (BK / 4) : tid / (BN / 4);
  const int b_c = kTB ? (tid % (BK / 4)) * 4 : (tid % (BN / 4)) * 4;
  const int ktiles = (g.n + BK - 1) / BK;

  ForEachBlockTile<BM, BN>(g, [&](const float* A, const float* B, float* C, int m0, int n0) {
    // Slice k0 of A / B: global -> registers, and registers -> shared buffer `buf`.
    QuadLoaderA<LA> quads_a;
    quads_a.BeginTile(g, kTA ? m0 + a_c : m0 + a_r);
    auto load_a = [&](int k0) {
      return kTA ? quads_a.Load(A, g, m0 + a_c, k0 + a_r) : quads_a.Load(A, g, m0 + a_r, k0 + a_c);
    };
    auto load_b = [&](int k0) {
      return kTB ? LoadQuadB<LB>(B, g.n, g.p, k0 + b_c, n0 + b_r, g.vec_b)
                 : LoadQuadB<LB>(B, g.n, g.p, k0 + b_r, n0 + b_c, g.vec_b);
    };
    auto store = [&](int buf, float4 va, float4 vb) {
      if (kTA) {
        *reinterpret_cast<float4*>(&As[buf][a_r][a_c]) = va;
      } else {
        As[buf][a_c + 0][a_r] = va.x;
        As[buf][a_c + 1][a_r] = va.y;
        As[buf][a_c + 2][a_r] = va.z;
        As[buf][a_c + 3][a_r] = va.w;
      }
      if (kTB) {
        Bs[buf][b_c + 0][b_r] = vb.x;
        Bs[buf][b_c + 1][b_r] = vb.y;
        Bs[buf][b_c + 2][b_r] = vb.z;
        Bs[buf][b_c + 3][b_r] = vb.w;
      } else {
        *reinterpret_cast<float4*>(&Bs[buf][b_r][b_c]) = vb;
      }
    };

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    if (ktiles > 0) store(0, load_a(0), load_b(0));
    __syncthreads();
    for (int t = 0; t < ktiles; ++t) {
      const int cur = t & 1;
      float4 next_a = make_float4(0.f, 0.f, 0.f, 0.f), next_b = next_a;
      if (t + 1 < ktiles) {  // in flight while this slice is multiplied
        next_a = load_a((t + 1) * BK);
        next_b = load_b((t + 1) * BK);
      }
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        float ra[TM], rb[TN];
#pragma unroll
        for (int c = 0; c < TM / 4; ++c) {
          const float4 v = *reinterpret_cast<const float4*>(&As[cur][kk][c * T::kRowChunk + ty * 4]);
          ra[c * 4 + 0] = v.x; ra[c * 4 + 1] = v.y; ra[c * 4 + 2] = v.z; ra[c * 4 + 3] = v.w;
        }
#pragma unroll
        for (int d = 0; d < TN / 4; ++d) {
          const float4 v = *reinterpret_cast<const float4*>(&Bs[cur][kk][d * T::kColChunk + tx * 4]);
          rb[d * 4 + 0] = v.x; rb[d * 4 + 1] = v.y; rb[d * 4 + 2] = v.z; rb[d * 4 + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
      }
      if (t + 1 < ktiles) store(cur ^ 1, next_a, next_b);
      __syncthreads();  // the other buffer is complete, and nobody still reads this one
    }

    // Registers -> C, one float4 (or masked scalars at the right edge) per 4 x 4 row.
#pragma unroll
    for (int c = 0; c < TM / 4; ++c) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = m0 + c * T::kRowChunk + ty * 4 + r;
        if (row >= g.m) continue;
#pragma unroll
        for (int d = 0; d < TN / 4; ++d) {
          const int col = n0 + d * T::kColChunk + tx * 4;
          if (col >= g.p) continue;
          float* dst = C + (kTiledC ? Tiled8Offset(row, col, g.p) : static_cast<int64_t>(row) * g.p + col);
          const float v0 = acc[c * 4 + r][d * 4 + 0], v1 = acc[c * 4 + r][d * 4 + 1];
          const float v2 = acc[c * 4 + r][d * 4 + 2], v3 = acc[c * 4 + r][d * 4 + 3];
          if (g.vec_c && col + 3 < g.p) {
            *reinterpret_cast<float4*>(dst) = make_float4(v0, v1, v2, v3);
          } else {  // constant indices only, so acc stays in registers
            dst[0] = v0;
            if (col + 1 < g.p) dst[1] = v1;
            if (col + 2 < g.p) dst[2] = v2;
            if (col + 3 < g.p) dst[3] = v3;
          }
        }
      }
    }
  });
}

}  // namespace cuda
}  // namespace needle
