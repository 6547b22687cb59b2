// needle CUDA backend: the tile transforms of Winograd convolution F(m x m, 3 x 3) and their
// adjoints (see src/cpu_winograd.h for the layouts: V / M are alpha^2 x tiles x C, images NHWC,
// tiles t = (n, ty, tx) with patches starting at (ty*m - ph, tx*m - pw)). The small transform
// matrices (alpha <= 8 here) are kernel arguments copied into a struct.
// One thread per (tile, channel) for the tile-wise maps; the input adjoint gathers, one thread
// per input element, from the (at most ceil(alpha/m)^2) tiles whose patch covers it, so no two
// threads write the same float. Launches go through Launch<Kernel> (cuda_common.cuh).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda_common.cuh"
#include "cuda_launch.cuh"

namespace needle {
namespace cuda {

constexpr int kWinogradMaxAlpha = 8;

struct WinogradDims {
  int64_t N, H, W, C, ph, pw, m, alpha, th, tw;
};

struct WinogradMatrix {  // row-major rows x cols, rows, cols <= kWinogradMaxAlpha
  float v[kWinogradMaxAlpha * kWinogradMaxAlpha];
};

__global__ void WinogradInputTransformKernel(const float* a, WinogradMatrix bt, float* v,
                                             WinogradDims d, int64_t count) {
  const int64_t A = d.alpha, T = d.N * d.th * d.tw;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % d.C, t = e / d.C;
    const int64_t n = t / (d.th * d.tw), ty = (t / d.tw) % d.th, tx = t % d.tw;
    float p[kWinogradMaxAlpha * kWinogradMaxAlpha];
    for (int64_t k = 0; k < A; ++k)
      for (int64_t l = 0; l < A; ++l) {
        const int64_t h = ty * d.m - d.ph + k, w = tx * d.m - d.pw + l;
        p[k * A + l] = (h < 0 || h >= d.H || w < 0 || w >= d.W) ? 0.0f
                                                                 : a[((n * d.H + h) * d.W + w) * d.C + c];
      }
    for (int64_t i = 0; i < A; ++i)
      for (int64_t j = 0; j < A; ++j) {
        float s = 0.0f;
        for (int64_t k = 0; k < A; ++k)
          for (int64_t l = 0; l < A; ++l) s += bt.v[i * A + k] * p[k * A + l] * bt.v[j * A + l];
        v[((i * A + j) * T + t) * d.C + c] = s;
      }
  }
}

__global__ void WinogradInputAdjointKernel(const float* dv, WinogradMatrix bt, float* dinp,
                                           WinogradDims d, int64_t count) {
  const int64_t A = d.alpha, T = d.N * d.th * d.tw;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % d.C, w = (e / d.C) % d.W, h = (e / (d.C * d.W)) % d.H;
    const int64_t n = e / (d.C * d.W * d.H);
    float s = 0.0f;
    const int64_t y0 = MaxI64(0, (h + d.ph - A + d.m) / d.m), y1 = MinI64(d.th - 1, (h + d.ph) / d.m);
    const int64_t x0 = MaxI64(0, (w + d.pw - A + d.m) / d.m), x1 = MinI64(d.tw - 1, (w + d.pw) / d.m);
    for (int64_t ty = y0; ty <= y1; ++ty)
      for (int64_t tx = x0; tx <= x1; ++tx) {
        const int64_t k = h + d.ph - ty * d.m, l = w + d.pw - tx * d.m;  // place in the patch
        if (k < 0 || k >= A || l < 0 || l >= A) continue;
        const int64_t t = (n * d.th + ty) * d.tw + tx;
        for (int64_t i = 0; i < A; ++i)  // (B dv B^T)[k, l] = sum bt[i, k] dv[i, j] bt[j, l]
          for (int64_t j = 0; j < A; ++j)
            s += bt.v[i * A + k] * dv[((i * A + j) * T + t) * d.C + c] * bt.v[j * A + l];
      }
    dinp[e] = s;
  }
}

__global__ void WinogradOutputTransformKernel(const float* mm, WinogradMatrix at, float* out,
                                              WinogradDims d, int64_t count) {
  const int64_t A = d.alpha, M = d.m, T = d.N * d.th * d.tw;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % d.C, t = e / d.C;
    const int64_t n = t / (d.th * d.tw), ty = (t / d.tw) % d.th, tx = t % d.tw;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < M; ++j) {
        const int64_t h = ty * M + i, w = tx * M + j;
        if (h >= d.H || w >= d.W) continue;
        float s = 0.0f;
        for (int64_t k = 0; k < A; ++k)
          for (int64_t l = 0; l < A; ++l)
            s += at.v[i * A + k] * mm[((k * A + l) * T + t) * d.C + c] * at.v[j * A + l];
        out[((n * d.H + h) * d.W + w) * d.C + c] = s;
      }
  }
}

__global__ void WinogradOutputAdjointKernel(const float* dout, WinogradMatrix at, float* dm,
                                            WinogradDims d, int64_t count) {
  const int64_t A = d.alpha, M = d.m, T = d.N * d.th * d.tw;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % d.C, t = e / d.C;
    const int64_t n = t / (d.th * d.tw), ty = (t / d.tw) % d.th, tx = t % d.tw;
    for (int64_t k = 0; k < A; ++k)
      for (int64_t l = 0; l < A; ++l) {
        float s = 0.0f;  // (A g A^T)[k, l] = sum at[i, k] g[i, j] at[j, l]
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < M; ++j) {
            const int64_t h = ty * M + i, w = tx * M + j;
            if (h >= d.H || w >= d.W) continue;
            s += at.v[i * A + k] * dout[((n * d.H + h) * d.W + w) * d.C + c] * at.v[j * A + l];
          }
        dm[((k * A + l) * T + t) * d.C + c] = s;
      }
  }
}

inline WinogradMatrix CopyWinogradMatrix(const char* fn, const CudaArray& mat, int64_t rows, int64_t cols) {
  if (rows > kWinogradMaxAlpha || cols > kWinogradMaxAlpha)
    throw std::invalid_argument(std::string(fn) + ": transform larger than " + Str(kWinogradMaxAlpha) +
                                " x " + Str(kWinogradMaxAlpha));
  CheckSize(fn, "transform", mat.size, rows * cols);
  WinogradMatrix out{};
  if (rows * cols)
    CUDA_CHECK(cudaMemcpy(out.v, mat.data, rows * cols * sizeof(float), cudaMemcpyDeviceToHost));
  return out;
}

inline void LaunchWinogradInputTransform(const float* a, const WinogradMatrix& bt, float* v,
                                         const WinogradDims& d) {
  const int64_t count = d.N * d.th * d.tw * d.C;
  if (count == 0) return;
  Launch<WinogradInputTransformKernel>(GridFor(count), kThreads, a, bt, v, d, count);
}

inline void LaunchWinogradInputAdjoint(const float* dv, const WinogradMatrix& bt, float* dinp,
                                       const WinogradDims& d) {
  const int64_t count = d.N * d.H * d.W * d.C;
  if (count == 0) return;
  Launch<WinogradInputAdjointKernel>(GridFor(count), kThreads, dv, bt, dinp, d, count);
}

inline void LaunchWinogradOutputTransform(const float* mm, const WinogradMatrix& at, float* out,
                                          const WinogradDims& d) {
  const int64_t count = d.N * d.th * d.tw * d.C;
  if (count == 0) return;
  Launch<WinogradOutputTransformKernel>(GridFor(count), kThreads, mm, at, out, d, count);
}

inline void LaunchWinogradOutputAdjoint(const float* dout, const WinogradMatrix& at, float* dm,
                                        const WinogradDims& d) {
  const int64_t count = d.N * d.th * d.tw * d.C;
  if (count == 0) return;
  Launch<WinogradOutputAdjointKernel>(GridFor(count), kThreads, dout, at, dm, d, count);
}

}  // namespace cuda
}  // namespace needle
