// needle CPU backend: direct depthwise 2-D convolution (groups == channels, one filter per
// channel) on N x H x W x C buffers, weight KH x KW x C. The implicit GEMM serves a depthwise
// conv badly (C separate GEMMs with one output column each); here every loop runs over the
// C channels innermost, contiguous in input, weight and output, so it vectorises.
// Forward and input gradient: parallel over output / input rows (no two threads write the same
// row). Weight gradient: per-thread partial sums over rows, added up at the end.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu_common.h"

namespace needle {
namespace cpu {

struct DepthwiseDims {
  int64_t N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
  int64_t in_size() const { return N * H * W * C; }
  int64_t out_size() const { return N * Ho * Wo * C; }
  int64_t taps_size() const { return kh * kw * C; }
};

inline DepthwiseDims CheckDepthwise(const char* fn, int64_t N, int64_t H, int64_t W, int64_t C,
                                    int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                                    int64_t pw, int64_t dh, int64_t dw) {
  const std::string f(fn);
  if (std::min({N, H, W, C}) < 0 || std::min({kh, kw, sh, sw, dh, dw}) < 1 ||
      std::min(ph, pw) < 0 || std::max({H, W, kh, kw, ph, pw, dh, dw}) > (int64_t(1) << 30))
    throw std::invalid_argument(f + ": bad sizes N=" + std::to_string(N) + " H=" +
                                std::to_string(H) + " W=" + std::to_string(W) + " C=" +
                                std::to_string(C) + " kernel=(" + std::to_string(kh) + "," +
                                std::to_string(kw) + ")");
  const int64_t Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
  const int64_t Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  if (H + 2 * ph < dh * (kh - 1) + 1 || W + 2 * pw < dw * (kw - 1) + 1)
    throw std::invalid_argument(f + ": dilated kernel larger than padded input (" +
                                std::to_string(H + 2 * ph) + "," + std::to_string(W + 2 * pw) + ")");
  CheckedProduct(fn, {N, H, W, C});
  CheckedProduct(fn, {N, Ho, Wo, C});
  return DepthwiseDims{N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo};
}

// out[n, i, j, c] = sum over taps (a, b) of x[n, i*sh - ph + a*dh, j*sw - pw + b*dw, c] * w[a, b, c]
inline void DepthwiseForwardRows(const float* x, const float* w, float* out, const DepthwiseDims& d,
                                 int64_t r0, int64_t r1) {
  const int64_t C = d.C;
  for (int64_t r = r0; r < r1; ++r) {  // r = n * Ho + i: one output row
    const int64_t n = r / d.Ho, i = r % d.Ho;
    float* orow = out + r * d.Wo * C;
    std::fill(orow, orow + d.Wo * C, 0.0f);
    for (int64_t a = 0; a < d.kh; ++a) {
      const int64_t ih = i * d.sh - d.ph + a * d.dh;
      if (ih < 0 || ih >= d.H) continue;
      const float* xrow = x + (n * d.H + ih) * d.W * C;
      for (int64_t b = 0; b < d.kw; ++b) {
        const float* wt = w + (a * d.kw + b) * C;
        for (int64_t j = 0; j < d.Wo; ++j) {
          const int64_t iw = j * d.sw - d.pw + b * d.dw;
          if (iw < 0 || iw >= d.W) continue;
          const float* xp = xrow + iw * C;
          float* op = orow + j * C;
          for (int64_t c = 0; c < C; ++c) op[c] += xp[c] * wt[c];  // C contiguous floats
        }
      }
    }
  }
}

// dinp[n, ih, iw, c] = sum over the (tap, output pixel) pairs that read it of dout * w: a gather
// per input row, so rows are independent.
inline void DepthwiseInputGradRows(const float* dout, const float* w, float* dinp,
                                   const DepthwiseDims& d, int64_t r0, int64_t r1) {
  const int64_t C = d.C;
  for (int64_t r = r0; r < r1; ++r) {  // r = n * H + ih: one input row
    const int64_t n = r / d.H, ih = r % d.H;
    float* drow = dinp + r * d.W * C;
    std::fill(drow, drow + d.W * C, 0.0f);
    for (int64_t a = 0; a < d.kh; ++a) {
      const int64_t t = ih + d.ph - a * d.dh;  // = i * sh for the output row i that reads ih
      if (t < 0 || t % d.sh) continue;
      const int64_t i = t / d.sh;
      if (i >= d.Ho) continue;
      const float* grow = dout + (n * d.Ho + i) * d.Wo * C;
      for (int64_t b = 0; b < d.kw; ++b) {
        const float* wt = w + (a * d.kw + b) * C;
        for (int64_t iw = 0; iw < d.W; ++iw) {
          const int64_t u = iw + d.pw - b * d.dw;
          if (u < 0 || u % d.sw || u / d.sw >= d.Wo) continue;
          const float* gp = grow + (u / d.sw) * C;
          float* dp = drow + iw * C;
          for (int64_t c = 0; c < C; ++c) dp[c] += gp[c] * wt[c];
        }
      }
    }
  }
}

// dweight[a, b, c] += sum over output rows r0..r1 of x (at the tap's offset) * dout.
inline void DepthwiseWeightGradRows(const float* x, const float* dout, float* dweight,
                                    const DepthwiseDims& d, int64_t r0, int64_t r1) {
  const int64_t C = d.C;
  for (int64_t r = r0; r < r1; ++r) {  // r = n * Ho + i: one output row
    const int64_t n = r / d.Ho, i = r % d.Ho;
    const float* grow = dout + r * d.Wo * C;
    for (int64_t a = 0; a < d.kh; ++a) {
      const int64_t ih = i * d.sh - d.ph + a * d.dh;
      if (ih < 0 || ih >= d.H) continue;
      const float* xrow = x + (n * d.H + ih) * d.W * C;
      for (int64_t b = 0; b < d.kw; ++b) {
        float* acc = dweight + (a * d.kw + b) * C;
        for (int64_t j = 0; j < d.Wo; ++j) {
          const int64_t iw = j * d.sw - d.pw + b * d.dw;
          if (iw < 0 || iw >= d.W) continue;
          const float* xp = xrow + iw * C;
          const float* gp = grow + j * C;
          for (int64_t c = 0; c < C; ++c) acc[c] += xp[c] * gp[c];
        }
      }
    }
  }
}

inline void DepthwiseForward(const float* x, const float* w, float* out, const DepthwiseDims& d) {
  ParallelRange(d.N * d.Ho, d.out_size() * d.kh * d.kw, kParallelMinCopy, 1,
                [&](int64_t r0, int64_t r1) { DepthwiseForwardRows(x, w, out, d, r0, r1); });
}

inline void DepthwiseInputGrad(const float* dout, const float* w, float* dinp,
                               const DepthwiseDims& d) {
  ParallelRange(d.N * d.H, d.in_size() * d.kh * d.kw, kParallelMinCopy, 1,
                [&](int64_t r0, int64_t r1) { DepthwiseInputGradRows(dout, w, dinp, d, r0, r1); });
}

inline void DepthwiseWeightGrad(const float* x, const float* dout, float* dweight,
                                const DepthwiseDims& d) {
  const int64_t rows = d.N * d.Ho, taps = d.taps_size();
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(MaxThreads(), rows));
  std::vector<float> partial(size_t(nt * taps), 0.0f);  // one kh x kw x C sum per piece
  const int64_t pieces = d.out_size() * d.kh * d.kw >= kParallelMinCopy ? nt : 1;
  ParallelRange(pieces, d.out_size() * d.kh * d.kw, kParallelMinCopy, 1,
                [&](int64_t p0, int64_t p1) {
                  for (int64_t p = p0; p < p1; ++p)
                    DepthwiseWeightGradRows(x, dout, partial.data() + p * taps, d,
                                            rows * p / pieces, rows * (p + 1) / pieces);
                });
  std::fill(dweight, dweight + taps, 0.0f);
  for (int64_t p = 0; p < pieces; ++p)
    for (int64_t t = 0; t < taps; ++t) dweight[t] += partial[size_t(p * taps + t)];
}

}  // namespace cpu
}  // namespace needle
