// needle CUDA backend: GEMM launchers (host side). Chooses between the FP32 SgemmKernel
// (cuda_gemm.cuh; tile size by problem size) and, when NEEDLE_CUDA_TF32=1, the TF32
// tensor-core kernel (cuda_gemm_tf32.cuh), and turns a strided A view into the kernels'
// StridedDims3 metadata (implicit GEMM). Arguments are validated by the callers in
// ndarray_backend_cuda.cu; every launch is checked.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda_common.cuh"
#include "cuda_gemm.cuh"
#include "cuda_gemm_tf32.cuh"
#include "cuda_launch.cuh"
#include "cuda_memory.cuh"

namespace needle {
namespace cuda {

// ------------------------------------------------------------------------------------ FP32

// Tiles of BM x BN over C, grid-stride over tiles (x) and batches (z).
template <class T>
dim3 GemmGrid(GemmArgs* g) {
  g->tiles_p = (g->p + T::BN - 1) / T::BN;
  g->tiles = ((g->m + T::BM - 1) / T::BM) * g->tiles_p;
  return dim3(static_cast<unsigned>(std::min<int64_t>(g->tiles, INT_MAX)), 1,
              static_cast<unsigned>(std::min<int64_t>(g->batch, 65535)));
}

template <class T, Layout LA, Layout LB>
void LaunchSgemmT(GemmArgs g) {
  const dim3 grid = GemmGrid<T>(&g);
  Launch<SgemmKernel<T, LA, LB>>(grid, T::kThreads, g);
}

// Big 128 x 128 tiles when they alone fill the GPU, else 64 x 64 tiles for more parallelism.
template <Layout LA, Layout LB>
void LaunchSgemm(const GemmArgs& g) {
  const int64_t big = ((g.m + BigTile::BM - 1) / BigTile::BM) * ((g.p + BigTile::BN - 1) / BigTile::BN);
  if (big * g.batch >= NumSMs())
    LaunchSgemmT<BigTile, LA, LB>(g);
  else
    LaunchSgemmT<SmallTile, LA, LB>(g);
}

// ------------------------------------------------------------------------------------ TF32 (opt-in)

// NEEDLE_CUDA_TF32=1, read once at the first GEMM, and a device of compute capability 8.0+.
inline bool Tf32Enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("NEEDLE_CUDA_TF32");
    if (env == nullptr || std::strcmp(env, "1") != 0) return false;
    int major = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, CurrentDevice()));
    return major >= 8;
  }();
  return enabled;
}

// The kernel the driver picked for this device was compiled from sm_80+ code (an older -arch
// build, JIT-compiled for a newer GPU, would carry the empty body of Tf32GemmKernel).
template <Layout LA, Layout LB>
bool Tf32KernelUsable() {
  static const bool usable = [] {
    cudaFuncAttributes attr{};
    CUDA_CHECK(cudaFuncGetAttributes(&attr, Tf32GemmKernel<LA, LB>));
    return attr.ptxVersion >= 80;
  }();
  return usable;
}

// C = opA @ opB: the TF32 tensor-core kernel when enabled and usable, else the FP32 kernel.
template <Layout LA, Layout LB>
void LaunchGemm(GemmArgs g) {
  if (Tf32Enabled() && Tf32KernelUsable<LA, LB>()) {
    const dim3 grid = GemmGrid<Tf32Tile>(&g);
    Launch<Tf32GemmKernel<LA, LB>>(grid, Tf32Tile::kThreads, g);
  } else {
    LaunchSgemm<LA, LB>(g);
  }
}

// ------------------------------------------------------------------------------------ strided A

// One side (rows or columns) of a strided A view, at most 3 dims: coalesced (size-1 dims
// dropped, contiguous neighbours merged) and padded in front with size-1 dims.
struct ViewSide {
  int64_t shape[3] = {1, 1, 1};
  int64_t strides[3] = {0, 0, 0};

  ViewSide(const std::vector<int64_t>& shape_in, const std::vector<int64_t>& strides_in) {
    std::vector<int64_t> sh, st;
    Coalesce(shape_in, strides_in, &sh, &st);
    const size_t pad = 3 - sh.size();
    for (size_t d = 0; d < sh.size(); ++d) {
      shape[pad + d] = sh[d];
      strides[pad + d] = st[d];
    }
  }

  StridedDims3 Dims() const {
    StridedDims3 dims{};
    dims.inner = FastDivmod::For(static_cast<uint32_t>(shape[2]));
    dims.middle = FastDivmod::For(static_cast<uint32_t>(shape[1]));
    std::copy(strides, strides + 3, dims.stride);
    return dims;
  }

  // A quad of consecutive indices is one aligned float4 (with a 16-byte aligned start): the
  // innermost dim is contiguous and a multiple of 4 long, and every other stride is a multiple
  // of 4 floats.
  bool Float4Quads() const {
    return strides[2] == 1 && shape[2] % 4 == 0 && (shape[1] == 1 || strides[1] % 4 == 0) &&
           (shape[0] == 1 || strides[0] % 4 == 0);
  }
  bool StridesAll4() const {
    return (shape[2] == 1 || strides[2] % 4 == 0) && (shape[1] == 1 || strides[1] % 4 == 0) &&
           (shape[0] == 1 || strides[0] % 4 == 0);
  }
  int64_t InnerStride() const { return shape[2] == 1 ? INT64_MAX : std::abs(strides[2]); }
};

// C (m x p) = A @ opB with A the non-empty view (shape, strides) of g.a from g.a_offset, its
// first row_dims dims the rows. A's quads run along whichever side is closer to contiguous:
// k for the im2col view (channels innermost), m for its permutation.
template <Layout LB>
void LaunchGemmStridedA(GemmArgs g, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                        size_t row_dims) {
  const ViewSide rows({shape.begin(), shape.begin() + row_dims}, {strides.begin(), strides.begin() + row_dims});
  const ViewSide cols({shape.begin() + row_dims, shape.end()}, {strides.begin() + row_dims, strides.end()});
  g.a_rows = rows.Dims();
  g.a_cols = cols.Dims();
  const bool start_aligned = Aligned16(g.a) && g.a_offset % 4 == 0;
  if (rows.InnerStride() < cols.InnerStride()) {
    g.vec_a = start_aligned && rows.Float4Quads() && cols.StridesAll4();
    LaunchGemm<Layout::kStridedViewM, LB>(g);
  } else {
    g.vec_a = start_aligned && cols.Float4Quads() && rows.StridesAll4();
    LaunchGemm<Layout::kStridedViewK, LB>(g);
  }
}

}  // namespace cuda
}  // namespace needle
