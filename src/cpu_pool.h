// needle CPU backend: 2-D pooling on N x H x W x C buffers (C innermost, so every window
// element is a contiguous run of C floats: the inner loops are over C and vectorise).
// Forward: parallel over the N*Ho output rows. Backward: parallel over N, since windows of
// different images never overlap.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cpu_common.h"
#include "cpu_simd.h"

namespace needle {
namespace cpu {

struct PoolDims {
  int64_t N, H, W, C, kh, kw, sh, sw, ph, pw, Ho, Wo;
  int64_t in_size() const { return N * H * W * C; }
  int64_t out_size() const { return N * Ho * Wo * C; }
};

inline PoolDims CheckPool(const char* fn, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
                          int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const std::string f(fn);
  if (std::min({N, H, W, C}) < 0 || std::min({kh, kw, sh, sw}) < 1 || std::min(ph, pw) < 0 ||
      std::max({H, W, kh, kw, ph, pw}) > (int64_t(1) << 30))
    throw std::invalid_argument(f + ": bad sizes N=" + std::to_string(N) + " H=" + std::to_string(H) +
                                " W=" + std::to_string(W) + " C=" + std::to_string(C) + " kernel=(" +
                                std::to_string(kh) + "," + std::to_string(kw) + ") stride=(" +
                                std::to_string(sh) + "," + std::to_string(sw) + ") padding=(" +
                                std::to_string(ph) + "," + std::to_string(pw) + ")");
  const int64_t Ho = (H + 2 * ph - kh) / sh + 1, Wo = (W + 2 * pw - kw) / sw + 1;
  if (H + 2 * ph < kh || W + 2 * pw < kw)
    throw std::invalid_argument(f + ": kernel (" + std::to_string(kh) + "," + std::to_string(kw) +
                                ") larger than padded input (" + std::to_string(H + 2 * ph) + "," +
                                std::to_string(W + 2 * pw) + ")");
  CheckedProduct(fn, {N, H, W, C});
  CheckedProduct(fn, {N, Ho, Wo, C});
  return {N, H, W, C, kh, kw, sh, sw, ph, pw, Ho, Wo};
}

// Window of output (ho, wo) clipped to the input: rows [h0, h1), cols [w0, w1).
NEEDLE_INLINE void Window(const PoolDims& d, int64_t ho, int64_t wo, int64_t* h0, int64_t* h1,
                          int64_t* w0, int64_t* w1) {
  *h0 = ho * d.sh - d.ph;
  *w0 = wo * d.sw - d.pw;
  *h1 = std::min(*h0 + d.kh, d.H);
  *w1 = std::min(*w0 + d.kw, d.W);
  *h0 = std::max<int64_t>(*h0, 0);
  *w0 = std::max<int64_t>(*w0, 0);
}

// Output rows (n, ho) for r in [r0, r1): max (NaN wins, padding never) or mean of each window.
template <bool kMax>
struct PoolForward {
  const float* a;
  float* out;
  PoolDims d;
  NEEDLE_INLINE void operator()(int64_t r0, int64_t r1) const {
    const int64_t C = d.C;
    const float init = kMax ? -std::numeric_limits<float>::infinity() : 0.0f;
    const float count = float(d.kh * d.kw);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / d.Ho, ho = r % d.Ho;
      for (int64_t wo = 0; wo < d.Wo; ++wo) {
        float* o = out + (r * d.Wo + wo) * C;
        for (int64_t c = 0; c < C; ++c) o[c] = init;
        int64_t h0, h1, w0, w1;
        Window(d, ho, wo, &h0, &h1, &w0, &w1);
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) {
            const float* x = a + ((n * d.H + h) * d.W + w) * C;  // C floats of pixel (h, w)
            if (kMax)
              for (int64_t c = 0; c < C; ++c) o[c] = ((x[c] != x[c]) | (x[c] > o[c])) ? x[c] : o[c];
            else
              for (int64_t c = 0; c < C; ++c) o[c] += x[c];
          }
        if (!kMax)
          for (int64_t c = 0; c < C; ++c) o[c] /= count;
      }
    }
  }
};

// Images n in [n0, n1): dinp = 0, then every dout element goes to the first maximum of its
// window in row-major (kh, kw) order (a NaN counts as the maximum).
struct MaxPoolBackward {
  const float* a;
  const float* dout;
  float* dinp;
  float* best;    // C floats of scratch per thread
  int64_t* where; // C pixel indices of scratch per thread
  PoolDims d;
  NEEDLE_INLINE void operator()(int64_t n0, int64_t n1) const {
    const int64_t C = d.C, HW = d.H * d.W;
    const int64_t t = ThreadSlot();
    float* bv = best + t * C;
    int64_t* bi = where + t * C;
    for (int64_t n = n0; n < n1; ++n) {
      const float* an = a + n * HW * C;
      float* gn = dinp + n * HW * C;
      std::fill_n(gn, HW * C, 0.0f);
      for (int64_t ho = 0; ho < d.Ho; ++ho)
        for (int64_t wo = 0; wo < d.Wo; ++wo) {
          int64_t h0, h1, w0, w1;
          Window(d, ho, wo, &h0, &h1, &w0, &w1);
          if (h0 >= h1 || w0 >= w1) continue;  // window entirely in the padding
          const int64_t first = h0 * d.W + w0;
          for (int64_t c = 0; c < C; ++c) {
            bv[c] = an[first * C + c];
            bi[c] = first;
          }
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) {
              const int64_t pix = h * d.W + w;
              const float* x = an + pix * C;
              for (int64_t c = 0; c < C; ++c) {
                const bool take = (x[c] > bv[c]) | ((x[c] != x[c]) & (bv[c] == bv[c]));
                bv[c] = take ? x[c] : bv[c];
                bi[c] = take ? pix : bi[c];
              }
            }
          const float* g = dout + ((n * d.Ho + ho) * d.Wo + wo) * C;
          for (int64_t c = 0; c < C; ++c) gn[bi[c] * C + c] += g[c];
        }
    }
  }
};

// Images n in [n0, n1): dinp = 0, then dout / (kh*kw) added to every in-bounds window element.
struct AvgPoolBackward {
  const float* dout;
  float* dinp;
  PoolDims d;
  NEEDLE_INLINE void operator()(int64_t n0, int64_t n1) const {
    const int64_t C = d.C, HW = d.H * d.W;
    const float count = float(d.kh * d.kw);
    for (int64_t n = n0; n < n1; ++n) {
      float* gn = dinp + n * HW * C;
      std::fill_n(gn, HW * C, 0.0f);
      for (int64_t ho = 0; ho < d.Ho; ++ho)
        for (int64_t wo = 0; wo < d.Wo; ++wo) {
          int64_t h0, h1, w0, w1;
          Window(d, ho, wo, &h0, &h1, &w0, &w1);
          const float* g = dout + ((n * d.Ho + ho) * d.Wo + wo) * C;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) {
              float* x = gn + (h * d.W + w) * C;
              for (int64_t c = 0; c < C; ++c) x[c] += g[c] / count;
            }
        }
    }
  }
};

}  // namespace cpu
}  // namespace needle
