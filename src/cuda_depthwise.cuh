// needle CUDA backend: direct depthwise 2-D convolution (groups == channels) on N x H x W x C
// buffers with a KH x KW x C weight: forward, input gradient and weight gradient.
// One thread per output (forward) or input (input gradient) element, channel fastest so that a
// warp reads consecutive floats; the weight gradient is one block per (tap, channel), whose
// threads stride over the N*Ho*Wo output pixels and reduce in shared memory (no atomics, a
// deterministic sum). Launches go through Launch<Kernel> (cuda_common.cuh).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda_common.cuh"
#include "cuda_launch.cuh"

namespace needle {
namespace cuda {

struct DepthwiseDims {
  int64_t N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
};

inline DepthwiseDims MakeDepthwiseDims(const char* fn, int64_t N, int64_t H, int64_t W, int64_t C,
                                       int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                                       int64_t pw, int64_t dh, int64_t dw) {
  if (std::min({N, H, W, C}) < 0 || std::min({kh, kw, sh, sw, dh, dw}) < 1 || std::min(ph, pw) < 0)
    throw std::invalid_argument(std::string(fn) + ": bad sizes N=" + Str(N) + " H=" + Str(H) +
                                " W=" + Str(W) + " C=" + Str(C) + " kernel=(" + Str(kh) + "," +
                                Str(kw) + ")");
  if (H + 2 * ph < dh * (kh - 1) + 1 || W + 2 * pw < dw * (kw - 1) + 1)
    throw std::invalid_argument(std::string(fn) + ": dilated kernel larger than padded input (" +
                                Str(H + 2 * ph) + "," + Str(W + 2 * pw) + ")");
  DepthwiseDims d{N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw, 0, 0};
  d.Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
  d.Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  return d;
}

__global__ void DepthwiseForwardKernel(const float* x, const float* w, float* out, DepthwiseDims d,
                                       int64_t count) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % d.C, j = (e / d.C) % d.Wo, i = (e / (d.C * d.Wo)) % d.Ho;
    const int64_t n = e / (d.C * d.Wo * d.Ho);
    float acc = 0.0f;
    for (int64_t a = 0; a < d.kh; ++a) {
      const int64_t ih = i * d.sh - d.ph + a * d.dh;
      if (ih < 0 || ih >= d.H) continue;
      for (int64_t b = 0; b < d.kw; ++b) {
        const int64_t iw = j * d.sw - d.pw + b * d.dw;
        if (iw < 0 || iw >= d.W) continue;
        acc += x[((n * d.H + ih) * d.W + iw) * d.C + c] * w[(a * d.kw + b) * d.C + c];
      }
    }
    out[e] = acc;
  }
}

__global__ void DepthwiseInputGradKernel(const float* dout, const float* w, float* dinp,
                                         DepthwiseDims d, int64_t count) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % d.C, iw = (e / d.C) % d.W, ih = (e / (d.C * d.W)) % d.H;
    const int64_t n = e / (d.C * d.W * d.H);
    float acc = 0.0f;
    for (int64_t a = 0; a < d.kh; ++a) {
      const int64_t t = ih + d.ph - a * d.dh;  // = i * sh for the output row that reads ih
      if (t < 0 || t % d.sh || t / d.sh >= d.Ho) continue;
      for (int64_t b = 0; b < d.kw; ++b) {
        const int64_t u = iw + d.pw - b * d.dw;
        if (u < 0 || u % d.sw || u / d.sw >= d.Wo) continue;
        acc += dout[((n * d.Ho + t / d.sh) * d.Wo + u / d.sw) * d.C + c] * w[(a * d.kw + b) * d.C + c];
      }
    }
    dinp[e] = acc;
  }
}

// block (tap, c): sum over the output pixels p of x[p shifted by the tap, c] * dout[p, c]
__global__ void DepthwiseWeightGradKernel(const float* x, const float* dout, float* dweight,
                                          DepthwiseDims d) {
  __shared__ float partial[kThreads];
  const int64_t c = blockIdx.x % d.C, tap = blockIdx.x / d.C;
  const int64_t a = tap / d.kw, b = tap % d.kw;
  const int64_t pixels = d.N * d.Ho * d.Wo;
  float acc = 0.0f;
  for (int64_t p = threadIdx.x; p < pixels; p += blockDim.x) {
    const int64_t j = p % d.Wo, i = (p / d.Wo) % d.Ho, n = p / (d.Wo * d.Ho);
    const int64_t ih = i * d.sh - d.ph + a * d.dh, iw = j * d.sw - d.pw + b * d.dw;
    if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
    acc += x[((n * d.H + ih) * d.W + iw) * d.C + c] * dout[p * d.C + c];
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) dweight[tap * d.C + c] = partial[0];
}

inline void LaunchDepthwiseForward(const float* x, const float* w, float* out, const DepthwiseDims& d) {
  const int64_t count = d.N * d.Ho * d.Wo * d.C;
  if (count == 0) return;
  Launch<DepthwiseForwardKernel>(GridFor(count), kThreads, x, w, out, d, count);
}

inline void LaunchDepthwiseInputGrad(const float* dout, const float* w, float* dinp,
                                     const DepthwiseDims& d) {
  const int64_t count = d.N * d.H * d.W * d.C;
  if (count == 0) return;
  Launch<DepthwiseInputGradKernel>(GridFor(count), kThreads, dout, w, dinp, d, count);
}

inline void LaunchDepthwiseWeightGrad(const float* x, const float* dout, float* dweight,
                                      const DepthwiseDims& d) {
  const int64_t blocks = d.kh * d.kw * d.C;
  if (blocks == 0) return;
  Launch<DepthwiseWeightGradKernel>(static_cast<unsigned>(blocks), kThreads, x, dout, dweight, d);
}

}  // namespace cuda
}  // namespace needle
