// needle CPU backend: 2-D pooling on N x H x W x C buffers (C innermost, so every window
// element is a contiguous run of C floats: the inner loops are over C and vectorise).
// Forward: parallel over the N*Ho output rows. Backward: parallel over N, since windows of
// different images never overlap.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu_common.h"
#include "cpu_simd.h"

namespace needle {
namespace cpu {

struct PoolDims {
  int64_t N, H, W, C, kh, kw, sh, sw, ph, pw, Ho, Wo;
  // Element strides of the input (compact NHWC unless WithStrides says otherwise).
  int64_t sN = 0, sH = 0, sW = 0, sC = 0;
  int64_t in_size() const { return N * H * W * C; }
  int64_t out_size() const { return N * Ho * Wo * C; }
  // Every input element lies in exactly one window.
  bool tiles() const {
    return sh == kh && sw == kw && ph == 0 && pw == 0 && H == Ho * kh && W == Wo * kw;
  }
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
  return {N, H, W, C, kh, kw, sh, sw, ph, pw, Ho, Wo, H * W * C, W * C, C, 1};
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

// Window arithmetic on 8 channels at a time (V, when C is contiguous) or on one (float):
// the same kernel code serves both, so that C = 6 does not pay for 8-lane remainders.
struct ScalarLanes {
  using F = float;
  using I = int32_t;
  static constexpr int64_t kWidth = 1;
  static NEEDLE_INLINE F Load(const float* p) { return *p; }
  static NEEDLE_INLINE void Store(float* p, F v) { *p = v; }
  static NEEDLE_INLINE F Splat(float x) { return x; }
  static NEEDLE_INLINE I SplatI(int32_t x) { return x; }
  // All-ones / zero, as the vector comparisons give; selects are bit blends, not `m ? a : b`,
  // which GCC turns into branches on the data (mispredicted at every other random maximum).
  static NEEDLE_INLINE I Mask(bool b) { return -I(b); }
  static NEEDLE_INLINE I SelectI(I m, I a, I b) { return (a & m) | (b & ~m); }
  static NEEDLE_INLINE F Select(I m, F a, F b) {
    I ai, bi;
    std::memcpy(&ai, &a, sizeof(F));
    std::memcpy(&bi, &b, sizeof(F));
    const I r = SelectI(m, ai, bi);
    F out;
    std::memcpy(&out, &r, sizeof(F));
    return out;
  }
  static NEEDLE_INLINE I Gt(F a, F b) { return Mask(a > b); }
  static NEEDLE_INLINE I IsNan(F a) { return Mask(a != a); }
  static NEEDLE_INLINE I EqI(I a, I b) { return Mask(a == b); }
};
struct VectorLanes {
  using F = V;
  using I = VI;
  static constexpr int64_t kWidth = kLanes;
  static NEEDLE_INLINE F Load(const float* p) { return cpu::Load(p); }
  static NEEDLE_INLINE void Store(float* p, F v) { cpu::Store(p, v); }
  static NEEDLE_INLINE F Splat(float x) { return cpu::Splat(x); }
  static NEEDLE_INLINE I SplatI(int32_t x) { return I{x, x, x, x, x, x, x, x}; }
  static NEEDLE_INLINE F Select(I m, F a, F b) { return m ? a : b; }
  static NEEDLE_INLINE I SelectI(I m, I a, I b) { return m ? a : b; }
  static NEEDLE_INLINE I Gt(F a, F b) { return a > b; }
  static NEEDLE_INLINE I IsNan(F a) { return a != a; }
  static NEEDLE_INLINE I EqI(I a, I b) { return a == b; }
};
// The last TW (< 8) contiguous channels: 8 floats loaded (the caller has checked that they lie
// in the buffer; the extra lanes are never stored), TW stored.
template <int TW>
struct OverreadLanes : VectorLanes {
  static NEEDLE_INLINE void Store(float* p, F v) { StorePartial(p, v, TW); }
};

// Calls body(std::integral_constant<int, TW>) with TW = C % 8 when the channels are contiguous
// (the tail then goes as one vector), else 0 (channel by channel). Inlined lambdas only, so that
// they are compiled for Dispatch's ISA.
#define NEEDLE_INLINE_LAMBDA __attribute__((always_inline))
template <class Body>
NEEDLE_INLINE void WithTailWidth(const PoolDims& d, const Body& body) {
  switch (d.sC == 1 ? d.C % kLanes : 0) {
    case 1: return body(std::integral_constant<int, 1>());
    case 2: return body(std::integral_constant<int, 2>());
    case 3: return body(std::integral_constant<int, 3>());
    case 4: return body(std::integral_constant<int, 4>());
    case 5: return body(std::integral_constant<int, 5>());
    case 6: return body(std::integral_constant<int, 6>());
    case 7: return body(std::integral_constant<int, 7>());
    default: return body(std::integral_constant<int, 0>());
  }
}

// One window of L::kWidth channels: x points at its top-left in-bounds tap; rows x cols taps,
// sH / sW apart. Max: NaN wins (the first NaN); padding never counts. Avg: sum / (kh*kw).
// KH, KW > 0: the window is known to be KH x KW (loops the compiler unrolls: a 2 x 2 window of
// C = 6 is otherwise mostly loop overhead).
template <class L, bool kMax, int KH = 0, int KW = 0>
NEEDLE_INLINE typename L::F WindowReduce(const float* x, int64_t rows, int64_t cols, int64_t sH,
                                         int64_t sW, float count) {
  using F = typename L::F;
  if (KH > 0) rows = KH;
  if (KW > 0) cols = KW;
  F acc = L::Splat(kMax ? -std::numeric_limits<float>::infinity() : 0.0f);
  // rows or cols <= 0 (a window all padding, only if called natively): no tap is read.
  for (int64_t h = 0; h < rows; ++h)
    for (int64_t w = 0; w < cols; ++w) {
      const F v = L::Load(x + h * sH + w * sW);
      acc = kMax ? MaxNan(v, acc) : acc + v;  // the first NaN stays
    }
  return kMax ? acc : acc / L::Splat(count);
}

// Output rows (n, ho) for r in [r0, r1): max or mean of each window of the input, read through
// its strides (d.sN .. d.sC: NHWC memory, or an NCHW buffer seen as NHWC); out is compact NHWC.
template <bool kMax>
struct PoolForward {
  const float* a;
  float* out;
  PoolDims d;
  NEEDLE_INLINE void operator()(int64_t r0, int64_t r1) const {
    WithTailWidth(d, [&](auto tw) NEEDLE_INLINE_LAMBDA { Run<decltype(tw)::value>(r0, r1); });
  }

 private:
  template <int TW>
  NEEDLE_INLINE void Run(int64_t r0, int64_t r1) const {
    const int64_t C = d.C, in_size = d.in_size();
    const int64_t vec_end = d.sC == 1 ? C / kLanes * kLanes : 0;
    const float count = float(d.kh * d.kw);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / d.Ho, ho = r % d.Ho;
      for (int64_t wo = 0; wo < d.Wo; ++wo) {
        float* o = out + (r * d.Wo + wo) * C;
        int64_t h0, h1, w0, w1;
        Window(d, ho, wo, &h0, &h1, &w0, &w1);
        const float* x = a + n * d.sN + h0 * d.sH + w0 * d.sW;
        const int64_t rows = h1 - h0, cols = w1 - w0;
        int64_t c = 0;
        for (; c < vec_end; c += kLanes)
          VectorLanes::Store(o + c, WindowReduce<VectorLanes, kMax>(x + c, rows, cols, d.sH,
                                                                     d.sW, count));
        // The tail channels as one vector, as in MaxPoolBackward.
        if (TW > 0 && (x - a) + c + (rows - 1) * d.sH + (cols - 1) * d.sW + kLanes <= in_size) {
          using L = OverreadLanes<TW>;
          L::Store(o + c, rows == 2 && cols == 2
                              ? WindowReduce<L, kMax, 2, 2>(x + c, 2, 2, d.sH, d.sW, count)
                              : WindowReduce<L, kMax>(x + c, rows, cols, d.sH, d.sW, count));
          continue;
        }
        if (rows == 2 && cols == 2)
          for (; c < C; ++c)
            o[c] = WindowReduce<ScalarLanes, kMax, 2, 2>(x + c * d.sC, 2, 2, d.sH, d.sW, count);
        for (; c < C; ++c)
          o[c] = WindowReduce<ScalarLanes, kMax>(x + c * d.sC, rows, cols, d.sH, d.sW, count);
      }
    }
  }
};

// Max pooling backward for L::kWidth channels of one window: the first maximum in row-major
// (kh, kw) order (a NaN counts as the maximum) gets g, the other taps 0 (kAssign: windows tile
// the input, nothing else writes there) or nothing (added).
template <class L, bool kAssign, int KH = 0, int KW = 0>
NEEDLE_INLINE void MaxWindowBackward(const float* x, float* gx, int64_t sH, int64_t sW,
                                     int64_t gH, int64_t gW, int64_t rows, int64_t cols,
                                     typename L::F g) {
  using F = typename L::F;
  using I = typename L::I;
  if (KH > 0) rows = KH;  // as in WindowReduce
  if (KW > 0) cols = KW;
  F best = L::Load(x);
  I where = L::SplatI(0);
  for (int64_t h = 0; h < rows; ++h)
    for (int64_t w = 0; w < cols; ++w) {
      const F v = L::Load(x + h * sH + w * sW);
      const I take = L::Gt(v, best) | (L::IsNan(v) & ~L::IsNan(best));
      best = L::Select(take, v, best);
      where = L::SelectI(take, L::SplatI(int32_t(h * cols + w)), where);
    }
  const F zero = L::Splat(0.0f);
  for (int64_t h = 0; h < rows; ++h)
    for (int64_t w = 0; w < cols; ++w) {
      float* p = gx + h * gH + w * gW;
      const F mine = L::Select(L::EqI(where, L::SplatI(int32_t(h * cols + w))), g, zero);
      L::Store(p, kAssign ? mine : L::Load(p) + mine);
    }
}

// Images n in [n0, n1): dinp (compact NHWC) gets every dout element at the first maximum of
// its window; `a` is read through its strides as in PoolForward. When the windows tile the
// input exactly (stride = kernel, no padding, sizes divisible) every element is written once
// and nothing is zeroed first.
struct MaxPoolBackward {
  const float* a;
  const float* dout;
  float* dinp;
  PoolDims d;
  NEEDLE_INLINE void operator()(int64_t n0, int64_t n1) const {
    const bool assign = d.tiles();
    if (!assign) std::fill(dinp + n0 * d.H * d.W * d.C, dinp + n1 * d.H * d.W * d.C, 0.0f);
    WithTailWidth(d, [&](auto tw) NEEDLE_INLINE_LAMBDA {
      if (assign)
        Run<true, decltype(tw)::value>(n0, n1);
      else
        Run<false, decltype(tw)::value>(n0, n1);
    });
  }

 private:
  template <class L, bool kAssign>
  NEEDLE_INLINE void BackwardTail(const float* x, float* gx, int64_t gH, int64_t rows,
                                  int64_t cols, const float* g) const {
    if (rows == 2 && cols == 2)
      MaxWindowBackward<L, kAssign, 2, 2>(x, gx, d.sH, d.sW, gH, d.C, 2, 2, L::Load(g));
    else
      MaxWindowBackward<L, kAssign>(x, gx, d.sH, d.sW, gH, d.C, rows, cols, L::Load(g));
  }

  template <bool kAssign, int TW>
  NEEDLE_INLINE void Run(int64_t n0, int64_t n1) const {
    const int64_t C = d.C, gH = d.W * C;
    // TW > 0: the input is compact, as dout and dinp are.
    const int64_t in_size = d.in_size(), out_size = d.out_size();
    const int64_t vec_end = d.sC == 1 ? C / kLanes * kLanes : 0;
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t ho = 0; ho < d.Ho; ++ho)
        for (int64_t wo = 0; wo < d.Wo; ++wo) {
          int64_t h0, h1, w0, w1;
          Window(d, ho, wo, &h0, &h1, &w0, &w1);
          const float* x = a + n * d.sN + h0 * d.sH + w0 * d.sW;
          float* gx = dinp + ((n * d.H + h0) * d.W + w0) * C;
          const float* g = dout + ((n * d.Ho + ho) * d.Wo + wo) * C;
          const int64_t rows = h1 - h0, cols = w1 - w0;
          if (rows <= 0 || cols <= 0) continue;  // all padding (only if called natively)
          int64_t c = 0;
          for (; c < vec_end; c += kLanes)
            MaxWindowBackward<VectorLanes, kAssign>(x + c, gx + c, d.sH, d.sW, gH, C, rows,
                                                    cols, VectorLanes::Load(g + c));
          // The tail channels as one vector, unless its 8-float loads would leave a buffer.
          const int64_t last = (x - a) + c + (rows - 1) * d.sH + (cols - 1) * d.sW;
          const int64_t g_last = (gx - dinp) + c + (rows - 1) * gH + (cols - 1) * C;
          if (TW > 0 && last + kLanes <= in_size && (g - dout) + c + kLanes <= out_size &&
              (kAssign || g_last + kLanes <= in_size)) {
            // Tiled windows with C < 8 may store all 8 lanes when at least 8 floats of their
            // image row follow the window: the extra lanes land on taps to the right in the
            // same row (this window's, or later windows'), which are written after them (with
            // C >= 8 the vector part of those taps would already be written). Partial stores
            // cost a third of the kernel.
            if (kAssign && C < kLanes && (d.W - w0 - cols) * C >= kLanes)
              BackwardTail<VectorLanes, kAssign>(x + c, gx + c, gH, rows, cols, g + c);
            else
              BackwardTail<OverreadLanes<TW>, kAssign>(x + c, gx + c, gH, rows, cols, g + c);
            continue;
          }
          if (rows == 2 && cols == 2)
            for (; c < C; ++c)
              MaxWindowBackward<ScalarLanes, kAssign, 2, 2>(x + c * d.sC, gx + c, d.sH, d.sW, gH,
                                                            C, 2, 2, g[c]);
          for (; c < C; ++c)
            MaxWindowBackward<ScalarLanes, kAssign>(x + c * d.sC, gx + c, d.sH, d.sW, gH, C,
                                                    rows, cols, g[c]);
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
