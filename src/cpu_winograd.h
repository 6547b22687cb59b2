// needle CPU backend: the tile transforms of Winograd convolution F(m x m, 3 x 3) (any m; the
// alpha x alpha = (m+2) x (m+2) transform matrices come from Python, see
// python/needle/ops/ops_conv_algos.py), on NHWC buffers with the channels innermost.
//   input transform    V[xi, t, c] = (B^T d_t B)[xi]    d_t: the alpha x alpha input patch of tile t
//   output transform   Y tile t    = A^T M[., t, .] A   (cropped at the bottom/right edge)
// and their adjoints (the transposed linear maps), which give the input and weight gradients.
// Tiles t = (n, ty, tx) cover the output in m x m steps; the patch of tile t starts at input row
// ty*m - ph, column tx*m - pw (positions outside the input read 0).
// Every loop keeps C (or K) innermost, so each step is a vectorised run over the channels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_common.h"

namespace needle {
namespace cpu {

struct WinogradDims {
  int64_t N, H, W, C, ph, pw, m, alpha, th, tw;  // H, W, C: the transformed side (in or out)
  int64_t tiles() const { return N * th * tw; }
};

inline WinogradDims CheckWinograd(const char* fn, int64_t N, int64_t H, int64_t W, int64_t C,
                                  int64_t ph, int64_t pw, int64_t m, int64_t alpha, int64_t th,
                                  int64_t tw) {
  if (std::min({N, H, W, C, ph, pw, th, tw}) < 0 || m < 1 || alpha < m || alpha > 8)
    throw std::invalid_argument(std::string(fn) + ": bad sizes N=" + std::to_string(N) + " H=" +
                                std::to_string(H) + " W=" + std::to_string(W) + " C=" +
                                std::to_string(C) + " m=" + std::to_string(m) + " alpha=" +
                                std::to_string(alpha));
  CheckedProduct(fn, {alpha, alpha, N, th, tw, C});
  return WinogradDims{N, H, W, C, ph, pw, m, alpha, th, tw};
}

// out[i, j, :] = sum over k, l of T[i, k] * P[k, l, :] * T[j, l] for an r x r x C patch P and a
// q x r matrix T (q x q x C result). tmp: q x r x C scratch.
inline void TwoSided(const float* T, int64_t q, int64_t r, const float* P, float* tmp, float* out,
                     int64_t C) {
  std::fill(tmp, tmp + q * r * C, 0.0f);
  for (int64_t i = 0; i < q; ++i)
    for (int64_t k = 0; k < r; ++k) {
      const float t = T[i * r + k];
      if (t == 0.0f) continue;
      float* dst = tmp + (i * r) * C;
      const float* src = P + (k * r) * C;
      for (int64_t l = 0; l < r * C; ++l) dst[l] += t * src[l];
    }
  std::fill(out, out + q * q * C, 0.0f);
  for (int64_t i = 0; i < q; ++i)
    for (int64_t j = 0; j < q; ++j)
      for (int64_t l = 0; l < r; ++l) {
        const float t = T[j * r + l];
        if (t == 0.0f) continue;
        float* dst = out + (i * q + j) * C;
        const float* src = tmp + (i * r + l) * C;
        for (int64_t c = 0; c < C; ++c) dst[c] += t * src[c];
      }
}

// a: N x H x W x C input; bt: alpha x alpha; v: alpha^2 x tiles x C.
inline void WinogradInputTransformKernel(const float* a, const float* bt, float* v, const WinogradDims& d) {
  const int64_t A = d.alpha, C = d.C, T = d.tiles();
  ParallelRange(T, T * A * A * C * A, kParallelMinCopy, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> patch(size_t(A * A * C)), tmp(size_t(A * A * C)), res(size_t(A * A * C));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (d.th * d.tw), ty = (t / d.tw) % d.th, tx = t % d.tw;
      for (int64_t k = 0; k < A; ++k)  // gather the patch, zeros outside the input
        for (int64_t l = 0; l < A; ++l) {
          const int64_t h = ty * d.m - d.ph + k, w = tx * d.m - d.pw + l;
          float* dst = patch.data() + (k * A + l) * C;
          if (h < 0 || h >= d.H || w < 0 || w >= d.W) {
            std::fill(dst, dst + C, 0.0f);
          } else {
            const float* src = a + ((n * d.H + h) * d.W + w) * C;
            std::copy(src, src + C, dst);
          }
        }
      TwoSided(bt, A, A, patch.data(), tmp.data(), res.data(), C);
      for (int64_t xi = 0; xi < A * A; ++xi)
        std::copy(res.data() + xi * C, res.data() + (xi + 1) * C, v + (xi * T + t) * C);
    }
  });
}

// The adjoint: dinp (N x H x W x C) = sum over tiles of B dv_t B^T placed at the tile's patch.
// Patches overlap (alpha > m), so the work is split by image.
inline void WinogradInputTransformAdjointKernel(const float* dv, const float* bt, float* dinp,
                                          const WinogradDims& d) {
  const int64_t A = d.alpha, C = d.C, T = d.tiles();
  std::vector<float> b(size_t(A * A));  // B = (B^T)^T
  for (int64_t i = 0; i < A; ++i)
    for (int64_t j = 0; j < A; ++j) b[size_t(i * A + j)] = bt[j * A + i];
  ParallelRange(d.N, T * A * A * C * A, kParallelMinCopy, 1, [&](int64_t n0, int64_t n1) {
    std::vector<float> patch(size_t(A * A * C)), tmp(size_t(A * A * C)), res(size_t(A * A * C));
    std::fill(dinp + n0 * d.H * d.W * C, dinp + n1 * d.H * d.W * C, 0.0f);
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t ty = 0; ty < d.th; ++ty)
        for (int64_t tx = 0; tx < d.tw; ++tx) {
          const int64_t t = (n * d.th + ty) * d.tw + tx;
          for (int64_t xi = 0; xi < A * A; ++xi)
            std::copy(dv + (xi * T + t) * C, dv + (xi * T + t + 1) * C, patch.data() + xi * C);
          TwoSided(b.data(), A, A, patch.data(), tmp.data(), res.data(), C);
          for (int64_t k = 0; k < A; ++k)
            for (int64_t l = 0; l < A; ++l) {
              const int64_t h = ty * d.m - d.ph + k, w = tx * d.m - d.pw + l;
              if (h < 0 || h >= d.H || w < 0 || w >= d.W) continue;
              float* dst = dinp + ((n * d.H + h) * d.W + w) * C;
              const float* src = res.data() + (k * A + l) * C;
              for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
            }
        }
  });
}

// mm: alpha^2 x tiles x K; at: m x alpha; out: N x Ho x Wo x K (d.H, d.W, d.C = Ho, Wo, K).
inline void WinogradOutputTransformKernel(const float* mm, const float* at, float* out,
                                    const WinogradDims& d) {
  const int64_t A = d.alpha, M = d.m, K = d.C, T = d.tiles();
  ParallelRange(T, T * A * A * K * M, kParallelMinCopy, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> patch(size_t(A * A * K)), tmp(size_t(M * A * K)), res(size_t(M * M * K));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (d.th * d.tw), ty = (t / d.tw) % d.th, tx = t % d.tw;
      for (int64_t xi = 0; xi < A * A; ++xi)
        std::copy(mm + (xi * T + t) * K, mm + (xi * T + t + 1) * K, patch.data() + xi * K);
      TwoSided(at, M, A, patch.data(), tmp.data(), res.data(), K);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < M; ++j) {
          const int64_t h = ty * M + i, w = tx * M + j;
          if (h >= d.H || w >= d.W) continue;  // the last tiles overhang the output
          std::copy(res.data() + (i * M + j) * K, res.data() + (i * M + j + 1) * K,
                    out + ((n * d.H + h) * d.W + w) * K);
        }
    }
  });
}

// The adjoint: dm[., t, .] = A dout_t A^T, dout_t the tile's m x m output block (0 past the edge).
inline void WinogradOutputTransformAdjointKernel(const float* dout, const float* at, float* dm,
                                           const WinogradDims& d) {
  const int64_t A = d.alpha, M = d.m, K = d.C, T = d.tiles();
  std::vector<float> a(size_t(A * M));  // A = (A^T)^T, alpha x m
  for (int64_t i = 0; i < A; ++i)
    for (int64_t j = 0; j < M; ++j) a[size_t(i * M + j)] = at[j * A + i];
  ParallelRange(T, T * A * A * K * M, kParallelMinCopy, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> patch(size_t(M * M * K)), tmp(size_t(A * M * K)), res(size_t(A * A * K));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (d.th * d.tw), ty = (t / d.tw) % d.th, tx = t % d.tw;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < M; ++j) {
          const int64_t h = ty * M + i, w = tx * M + j;
          float* dst = patch.data() + (i * M + j) * K;
          if (h >= d.H || w >= d.W) {
            std::fill(dst, dst + K, 0.0f);
          } else {
            const float* src = dout + ((n * d.H + h) * d.W + w) * K;
            std::copy(src, src + K, dst);
          }
        }
      TwoSided(a.data(), A, M, patch.data(), tmp.data(), res.data(), K);
      for (int64_t xi = 0; xi < A * A; ++xi)
        std::copy(res.data() + xi * K, res.data() + (xi + 1) * K, dm + (xi * T + t) * K);
    }
  });
}

}  // namespace cpu
}  // namespace needle
