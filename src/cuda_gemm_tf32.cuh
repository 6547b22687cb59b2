// needle CUDA backend: GEMM on TF32 tensor cores (nvcuda::wmma m16n16k8, FP32 accumulate), the
// opt-in alternative to the FP32 SgemmKernel (NEEDLE_CUDA_TF32=1, see cuda_gemm_launch.cuh).
//
// TF32 keeps FP32's range but only 10 mantissa bits of each operand (products are accumulated in
// FP32), so results differ from FP32 by ~1e-3 relative: faster, not exact.
//
// Each block (8 warps) computes a 128 x 128 tile of C, stepping through n in slices of 16:
//   * global -> registers -> shared exactly like SgemmKernel (the same quad loaders, so the same
//     layouts: row-major, transposed, strided-view A), two float4s of A and two of B per thread
//     per slice, double-buffered, rounded to TF32 once on the way into shared memory;
//   * each operand is kept in shared memory in the orientation its quads arrive in (A as m x k
//     rows or k x m columns, B likewise) and read by wmma::load_matrix_sync as row_major or
//     col_major accordingly, so every shared store is one float4;
//   * each warp owns a 64 x 32 block of C: 4 x 2 accumulator fragments of 16 x 16;
//   * edges: loads are zero-filled, and each accumulator fragment goes through a per-warp
//     16 x 16 staging area in shared memory so that only the elements inside C are stored.
// The body needs sm_80; compiled for an older architecture the kernel is empty, and the host
// never launches it there (Tf32KernelUsable checks the compiled version).
#pragma once

#include <mma.h>

#include <type_traits>

#include "cuda_gemm.cuh"

namespace needle {
namespace cuda {

struct Tf32Tile {
  static constexpr int BM = 128, BN = 128, BK = 16;
  static constexpr int kWarpsM = 2, kWarpsN = 4, kThreads = kWarpsM * kWarpsN * 32;
  static constexpr int kWarpM = BM / kWarpsM, kWarpN = BN / kWarpsN;  // 64 x 32 per warp
  static constexpr int kFragsM = kWarpM / 16, kFragsN = kWarpN / 16;
  static constexpr int kQuadsA = BM * BK / 4 / kThreads, kQuadsB = BN * BK / 4 / kThreads;
  // Padded leading dims: multiples of 4 floats (wmma's rule), and with fragment starts at rows
  // and columns that are multiples of 16 (and k at 0 or 8) every fragment pointer is 32-byte
  // aligned, as load_matrix_sync requires.
  static constexpr int kLdK = BK + 4;  // an operand stored with k contiguous (m x k or n x k)
  static constexpr int kLdM = BM + 4;  // A stored k x m
  static constexpr int kLdN = BN + 4;  // B stored k x n
  static_assert(BM * BK == 4 * kQuadsA * kThreads && BN * BK == 4 * kQuadsB * kThreads, "whole quads per thread");
  static_assert(kWarpsM * kWarpsN * 256 <= BM * kLdK && kWarpsM * kWarpsN * 256 <= BK * kLdM,
                "the C staging areas fit in one A buffer");
};

// Rounds to TF32 (10 mantissa bits, to nearest) before the value enters shared memory.
__device__ __forceinline__ float4 ToTf32(float4 v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using nvcuda::wmma::__float_to_tf32;
  return make_float4(__float_to_tf32(v.x), __float_to_tf32(v.y), __float_to_tf32(v.z), __float_to_tf32(v.w));
#else
  return v;
#endif
}

// C[bt] = opA[bt] @ opB[bt], C row-major m x p; batches and tiles grid-stride as in SgemmKernel.
template <Layout LA, Layout LB>
__global__ void __launch_bounds__(Tf32Tile::kThreads) Tf32GemmKernel(GemmArgs g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using T = Tf32Tile;
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK;
  constexpr bool kTA = QuadsAlongM(LA), kTB = LB == Layout::kTransposed;
  static_assert(LA != Layout::kTiled8 && LB != Layout::kTiled8, "matmul_tiled stays on the FP32 kernel");
  // A in shared memory: k x m (kTA: a quad is 4 rows of one column) or m x k; B: n x k or k x n.
  constexpr int kLdA = kTA ? T::kLdM : T::kLdK, kLdB = kTB ? T::kLdK : T::kLdN;
  constexpr int kSizeA = kTA ? BK * T::kLdM : BM * T::kLdK, kSizeB = kTB ? BN * T::kLdK : BK * T::kLdN;
  using LayoutFragA = typename std::conditional<kTA, wmma::col_major, wmma::row_major>::type;
  using LayoutFragB = typename std::conditional<kTB, wmma::col_major, wmma::row_major>::type;
  __shared__ __align__(128) float As[2][kSizeA];
  __shared__ __align__(128) float Bs[2][kSizeB];

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int warp_m = (warp / T::kWarpsN) * T::kWarpM, warp_n = (warp % T::kWarpsN) * T::kWarpN;
  // Quad q of a slice: A is BM x BK (BK / 4 quads per row, or BM / 4 per column when kTA).
  int a_r[T::kQuadsA], a_c[T::kQuadsA], b_r[T::kQuadsB], b_c[T::kQuadsB];
#pragma unroll
  for (int s = 0; s < T::kQuadsA; ++s) {
    const int q = tid + s * T::kThreads;
    a_r[s] = kTA ? q / (BM / 4) : q / (BK / 4);  // (k, i) when kTA, else (i, k)
    a_c[s] = kTA ? (q % (BM / 4)) * 4 : (q % (BK / 4)) * 4;
  }
#pragma unroll
  for (int s = 0; s < T::kQuadsB; ++s) {
    const int q = tid + s * T::kThreads;
    b_r[s] = kTB ? q / (BK / 4) : q / (BN / 4);  // (j, k) when kTB, else (k, j)
    b_c[s] = kTB ? (q % (BK / 4)) * 4 : (q % (BN / 4)) * 4;
  }
  const int ktiles = (g.n + BK - 1) / BK;

  ForEachBlockTile<BM, BN>(g, [&](const float* A, const float* B, float* C, int m0, int n0) {
    QuadLoaderA<LA> quads_a[T::kQuadsA];
#pragma unroll
    for (int s = 0; s < T::kQuadsA; ++s) quads_a[s].BeginTile(g, m0 + (kTA ? a_c[s] : a_r[s]));
    float4 va[T::kQuadsA], vb[T::kQuadsB];
    // Slice k0: global -> registers.
    auto load = [&](int k0) {
#pragma unroll
      for (int s = 0; s < T::kQuadsA; ++s)
        va[s] = kTA ? quads_a[s].Load(A, g, m0 + a_c[s], k0 + a_r[s])
                    : quads_a[s].Load(A, g, m0 + a_r[s], k0 + a_c[s]);
#pragma unroll
      for (int s = 0; s < T::kQuadsB; ++s)
        vb[s] = kTB ? LoadQuadB<LB>(B, g.n, g.p, k0 + b_c[s], n0 + b_r[s], g.vec_b)
                    : LoadQuadB<LB>(B, g.n, g.p, k0 + b_r[s], n0 + b_c[s], g.vec_b);
    };
    // Registers -> shared buffer `buf`, one float4 per quad in either orientation.
    auto store = [&](int buf) {
#pragma unroll
      for (int s = 0; s < T::kQuadsA; ++s)
        *reinterpret_cast<float4*>(&As[buf][a_r[s] * kLdA + a_c[s]]) = ToTf32(va[s]);
#pragma unroll
      for (int s = 0; s < T::kQuadsB; ++s)
        *reinterpret_cast<float4*>(&Bs[buf][b_r[s] * kLdB + b_c[s]]) = ToTf32(vb[s]);
    };

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[T::kFragsM][T::kFragsN];
#pragma unroll
    for (int i = 0; i < T::kFragsM; ++i)
#pragma unroll
      for (int j = 0; j < T::kFragsN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    if (ktiles > 0) {
      load(0);
      store(0);
    }
    __syncthreads();
    for (int t = 0; t < ktiles; ++t) {
      const int cur = t & 1;
      if (t + 1 < ktiles) load((t + 1) * BK);  // in flight while this slice is multiplied
#pragma unroll
      for (int kk = 0; kk < BK; kk += 8) {
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LayoutFragA> fa[T::kFragsM];
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LayoutFragB> fb[T::kFragsN];
#pragma unroll
        for (int i = 0; i < T::kFragsM; ++i) {
          const int row = warp_m + i * 16;
          wmma::load_matrix_sync(fa[i], &As[cur][kTA ? kk * kLdA + row : row * kLdA + kk], kLdA);
        }
#pragma unroll
        for (int j = 0; j < T::kFragsN; ++j) {
          const int col = warp_n + j * 16;
          wmma::load_matrix_sync(fb[j], &Bs[cur][kTB ? col * kLdB + kk : kk * kLdB + col], kLdB);
        }
#pragma unroll
        for (int i = 0; i < T::kFragsM; ++i)
#pragma unroll
          for (int j = 0; j < T::kFragsN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
      if (t + 1 < ktiles) store(cur ^ 1);
      __syncthreads();  // the other buffer is complete, and nobody still reads this one
    }

    // Accumulators -> C through this warp's 16 x 16 staging area (in As, free now): a half
    // warp writes one 16-float row segment, masked at the edges of C.
    float* stage = &As[0][warp * 256];
#pragma unroll
    for (int i = 0; i < T::kFragsM; ++i) {
#pragma unroll
      for (int j = 0; j < T::kFragsN; ++j) {
        wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_row_major);
        __syncwarp();
#pragma unroll
        for (int e = lane; e < 256; e += 32) {
          const int row = m0 + warp_m + i * 16 + e / 16, col = n0 + warp_n + j * 16 + e % 16;
          if (row < g.m && col < g.p) C[static_cast<int64_t>(row) * g.p + col] = stage[e];
        }
        __syncwarp();
      }
    }
    __syncthreads();  // staging done before the next tile's first store into As
  });
#endif
}

}  // namespace cuda
}  // namespace needle
