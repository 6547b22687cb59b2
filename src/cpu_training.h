// needle CPU backend: the fused kernels of a training step. Batch normalisation over an
// (rows, C, inner) array, i.e. N x C (inner = 1) or N x C x H x W (rows = N, inner = H*W),
// statistics per channel c. (The optimizer updates are in cpu_optim.h.) The `_strided` entry
// points read x in any dense layout, e.g. an NCHW view of an NHWC buffer (a conv's output), with
// the same sums in the same order as on its row-major copy: the same results bit for bit,
// without the copy.
//
// One call replaces the ~15 element-wise / reduction calls of the composed formula. Sums are
// accumulated in double, per thread, over whole rows, then combined in thread order (the
// result does not depend on scheduling). Variance is two-pass: sum (x - mean)^2.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cpu_common.h"
#include "cpu_transpose.h"
#include "norm_layout.h"

namespace needle {
namespace cpu {

// Tiles of pixels walked together where x is channels-last (ChannelSums, ForEachNormRun).
constexpr int64_t kNormTile = 16;

// out[c*K + j] (K = 1 or 2) = sum over rows r of the sums that add(xv, yv, c, s0, s1) adds
// into s0 (and s1), one call per element (r, c, k) in increasing k, with xv its value in x and yv
// in the row-major y (0 without y). Each (row, channel) sum starts from 0 and is added to its
// thread's total once; threads own whole rows and are combined in thread order. So the sums
// depend on neither the scheduling nor x's layout: a channels-last x is walked pixel by pixel with
// one accumulator per channel (y's values of a tile of pixels transposed first), the same
// additions in the same order.
template <int K, class F>
void ChannelSums(const NormLayout& d, const float* x, const float* y, double* out, const F& add) {
  static_assert(K == 1 || K == 2, "one or two sums per channel");
  const int64_t rows = d.rows, C = d.C, inner = d.inner;
  int nt = MaxThreads();
  if (d.size() < kParallelMinCopy || rows < 2) nt = 1;
  if (nt > rows) nt = int(rows);
  std::vector<double> part(size_t(nt) * size_t(C) * K, 0.0);
  const bool runs = d.sk == 1 || inner == 1;  // x's (row, channel) values contiguous
  auto body = [&](int t) {
    double* acc = part.data() + size_t(t) * size_t(C) * K;
    std::vector<double> row(runs ? 0 : size_t(C) * 2);  // the row's sums: [j * C + c]
    std::vector<float> tile(runs || !y ? 0 : size_t(kNormTile * C));
    const int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    for (int64_t r = r0; r < r1; ++r) {
      if (runs) {
        for (int64_t c = 0; c < C; ++c) {
          double s0 = 0.0, s1 = 0.0;
          const float* xr = x + d.X(r, c, 0);
          const float* yr = y ? y + (r * C + c) * inner : nullptr;
          for (int64_t k = 0; k < inner; ++k) add(xr[k], yr ? yr[k] : 0.0f, c, s0, s1);
          acc[c * K] += s0;
          if (K == 2) acc[c * K + 1] += s1;
        }
        continue;
      }
      std::fill(row.begin(), row.end(), 0.0);
      double* __restrict sum0 = row.data();
      double* __restrict sum1 = row.data() + C;
      for (int64_t k0 = 0; k0 < inner; k0 += kNormTile) {
        const int64_t len = std::min(kNormTile, inner - k0);
        if (y) TransposeTile(y + r * C * inner + k0, inner, tile.data(), C, C, len);  // tile[kk * C + c]
        for (int64_t kk = 0; kk < len; ++kk) {
          const float* xp = x + d.X(r, 0, k0 + kk);
          const float* yp = y ? tile.data() + kk * C : nullptr;
          if (d.sc == 1 && yp)
            for (int64_t c = 0; c < C; ++c) add(xp[c], yp[c], c, sum0[c], sum1[c]);
          else if (d.sc == 1)
            for (int64_t c = 0; c < C; ++c) add(xp[c], 0.0f, c, sum0[c], sum1[c]);
          else
            for (int64_t c = 0; c < C; ++c) add(xp[c * d.sc], yp ? yp[c] : 0.0f, c, sum0[c], sum1[c]);
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        acc[c * K] += sum0[c];
        if (K == 2) acc[c * K + 1] += sum1[c];
      }
    }
  };
  if (nt == 1) {
    body(0);
  } else {
    ParallelPieces(nt, nt, [&](int t, int) { body(t); });
  }
  for (int64_t i = 0; i < C * K; ++i) {
    double s = 0.0;
    for (int t = 0; t < nt; ++t) s += part[size_t(t) * size_t(C) * K + size_t(i)];
    out[i] = s;
  }
}

// run(xr, xs, yi, len, c) over every element (r, c, k), in parallel: a run of `len` elements of
// channel c, at xr[0], xr[xs], ... of x (or of a copy) and yi, yi + 1, ... of a row-major operand.
// Row-major x: one run per (row, channel). Otherwise tiles of kNormTile pixels x all channels, so
// that the reads of a channels-last x and the writes of the row-major result both stay within a
// few cache lines; channels innermost (sc == 1): each tile transposed first, so runs are contiguous.
template <class F>
void ForEachNormRun(const NormLayout& d, const float* x, const F& run) {
  const int64_t C = d.C, inner = d.inner, n = d.size();
  if (d.sk == 1 || inner == 1) {
    ParallelRange(d.rows * C, n, kParallelMinCopy, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) run(x + d.X(i / C, i % C, 0), 1, i * inner, inner, i % C);
    });
    return;
  }
  const int64_t tiles = (inner + kNormTile - 1) / kNormTile;
  ParallelRange(d.rows * tiles, n, kParallelMinCopy, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> tile(d.sc == 1 ? size_t(C * kNormTile) : 0);  // [c * kNormTile + kk]
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = i / tiles, k0 = i % tiles * kNormTile, len = std::min(inner - k0, kNormTile);
      if (d.sc == 1) TransposeTile(x + d.X(r, 0, k0), d.sk, tile.data(), kNormTile, len, C);
      for (int64_t c = 0; c < C; ++c) {
        const int64_t yi = (r * C + c) * inner + k0;
        if (d.sc == 1)
          run(tile.data() + c * kNormTile, 1, yi, len, c);
        else
          run(x + d.X(r, c, k0), d.sk, yi, len, c);
      }
    }
  });
}

// mean, var (biased) per channel; out = (x - mean) * (w / sqrt(var + eps)) + b.
inline void BatchNormForwardKernel(const float* x, const float* w, const float* b, float* out, float* mean,
                                   float* var, const NormLayout& d, double eps) {
  const int64_t C = d.C;
  const double m = double(d.rows) * double(d.inner);
  std::vector<double> sums(static_cast<size_t>(C)), mu(static_cast<size_t>(C));
  ChannelSums<1>(d, x, nullptr, sums.data(), [](float xv, float, int64_t, double& s, double&) { s += xv; });
  for (int64_t c = 0; c < C; ++c) mu[size_t(c)] = sums[size_t(c)] / m;
  const double* u = mu.data();
  ChannelSums<1>(d, x, nullptr, sums.data(),
                 [u](float xv, float, int64_t c, double& s, double&) { s += (xv - u[c]) * (xv - u[c]); });
  std::vector<float> scale(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double v = sums[size_t(c)] / m;
    mean[c] = float(mu[size_t(c)]);
    var[c] = float(v);
    scale[size_t(c)] = float(double(w[c]) / std::sqrt(v + eps));
  }
  ForEachNormRun(d, x, [&](const float* xr, int64_t xs, int64_t yi, int64_t len, int64_t c) {
    const float u = mean[c], s = scale[size_t(c)], t = b[c];  // centre first: no cancellation
    float* o = out + yi;
    if (xs == 1)
      for (int64_t k = 0; k < len; ++k) o[k] = (xr[k] - u) * s + t;
    else
      for (int64_t k = 0; k < len; ++k) o[k] = (xr[k * xs] - u) * s + t;
  });
}

// From the forward's mean and var: db = sum g, dw = sum g * xhat,
// dx = w * invstd * (g - db / M - xhat * dw / M), xhat = (x - mean) * invstd.
inline void BatchNormBackwardKernel(const float* x, const float* g, const float* w, const float* mean,
                                    const float* var, float* dx, float* dw, float* db, const NormLayout& d,
                                    double eps) {
  const int64_t C = d.C;
  const double m = double(d.rows) * double(d.inner);
  std::vector<double> sums(static_cast<size_t>(C) * 2), mu(mean, mean + C);
  const double* u = mu.data();
  ChannelSums<2>(d, x, g, sums.data(), [u](float xv, float gv, int64_t c, double& sg, double& sgx) {
    sg += gv;
    sgx += gv * (xv - u[c]);
  });
  std::vector<float> k1(static_cast<size_t>(C)), k2(static_cast<size_t>(C)), k3(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double invstd = 1.0 / std::sqrt(double(var[c]) + eps);
    const double sum_g = sums[size_t(2 * c)], sum_gxhat = sums[size_t(2 * c + 1)] * invstd;
    db[c] = float(sum_g);
    dw[c] = float(sum_gxhat);
    const double a = double(w[c]) * invstd;
    // dx = a*g + slope*(x - mean) - a*sum_g/M
    k1[size_t(c)] = float(a);
    k2[size_t(c)] = float(-a * invstd * sum_gxhat / m);
    k3[size_t(c)] = float(-a * sum_g / m);
  }
  ForEachNormRun(d, x, [&](const float* xr, int64_t xs, int64_t yi, int64_t len, int64_t c) {
    const float a = k1[size_t(c)], s = k2[size_t(c)], t = k3[size_t(c)], u = mean[c];
    const float* gr = g + yi;
    float* o = dx + yi;
    if (xs == 1)
      for (int64_t k = 0; k < len; ++k) o[k] = gr[k] * a + (xr[k] - u) * s + t;
    else
      for (int64_t k = 0; k < len; ++k) o[k] = gr[k] * a + (xr[k * xs] - u) * s + t;
  });
}

// ------------------------------------------------------------------------ entry points
using Buffer = AlignedArray;

// Sizes of a batch-norm call: x is rows x C x inner; rows * inner (the count per channel) > 0.
inline int64_t CheckNormSizes(const char* fn, int64_t rows, int64_t C, int64_t inner) {
  if (rows < 1 || C < 1 || inner < 1)
    throw std::invalid_argument(std::string(fn) + ": rows, channels and inner must be >= 1, got " +
                                std::to_string(rows) + ", " + std::to_string(C) + ", " + std::to_string(inner));
  return CheckedProduct(fn, {rows, C, inner});
}

using Named = std::pair<const char*, const Buffer*>;

inline void CheckedBatchNormForward(const char* fn, const Buffer& x, const Buffer& w, const Buffer& b, Buffer& out,
                                    Buffer& mean, Buffer& var, const NormLayout& d, double eps) {
  for (const auto& [what, arr] : {Named{"x", &x}, Named{"out", &out}}) CheckHolds(fn, what, arr->size, d.size());
  for (const auto& [what, arr] : {Named{"weight", &w}, Named{"bias", &b}, Named{"mean", &mean}, Named{"var", &var}})
    CheckHolds(fn, what, arr->size, d.C);
  BatchNormForwardKernel(x.ptr, w.ptr, b.ptr, out.ptr, mean.ptr, var.ptr, d, eps);
}

// x read through the (row, channel, inner) `strides`; out row-major.
inline void BatchNormForwardStrided(const Buffer& x, const Buffer& w, const Buffer& b, Buffer& out, Buffer& mean,
                                    Buffer& var, int64_t rows, int64_t C, int64_t inner, const Shape& strides,
                                    double eps) {
  const char* fn = "batch_norm_forward_strided";
  CheckNormSizes(fn, rows, C, inner);
  CheckedBatchNormForward(fn, x, w, b, out, mean, var, CheckNormLayout(fn, rows, C, inner, strides), eps);
}

// x and out row-major rows x C x inner.
inline void BatchNormForward(const Buffer& x, const Buffer& w, const Buffer& b, Buffer& out, Buffer& mean,
                             Buffer& var, int64_t rows, int64_t C, int64_t inner, double eps) {
  const char* fn = "batch_norm_forward";
  CheckNormSizes(fn, rows, C, inner);
  CheckedBatchNormForward(fn, x, w, b, out, mean, var, RowMajorNorm(rows, C, inner), eps);
}

// running = running * keep + batch * momentum for the mean and the variance (keep = 1 - momentum,
// rounded once), each product and sum rounded on its own: the array ops' arithmetic, in one call.
NEEDLE_NO_FMA inline void RunningUpdate(const float* stat, float* running, int64_t C, float momentum,
                                        float keep) {
  for (int64_t c = 0; c < C; ++c) {
    const float old = running[c] * keep, add = stat[c] * momentum;
    running[c] = old + add;
  }
}

inline void BatchNormRunningUpdate(const Buffer& mean, const Buffer& var, Buffer& running_mean, Buffer& running_var,
                                   double momentum, double keep) {
  const char* fn = "batch_norm_running_update";
  const int64_t C = running_mean.size;
  for (const auto& [what, arr] : {Named{"mean", &mean}, Named{"var", &var}, Named{"running_var", &running_var}})
    CheckHolds(fn, what, arr->size, C);
  RunningUpdate(mean.ptr, running_mean.ptr, C, float(momentum), float(keep));
  RunningUpdate(var.ptr, running_var.ptr, C, float(momentum), float(keep));
}

inline void CheckedBatchNormBackward(const char* fn, const Buffer& x, const Buffer& g, const Buffer& w,
                                     const Buffer& mean, const Buffer& var, Buffer& dx, Buffer& dw, Buffer& db,
                                     const NormLayout& d, double eps) {
  for (const auto& [what, arr] : {Named{"x", &x}, Named{"out_grad", &g}, Named{"dx", &dx}})
    CheckHolds(fn, what, arr->size, d.size());
  for (const auto& [what, arr] :
       {Named{"weight", &w}, Named{"mean", &mean}, Named{"var", &var}, Named{"dw", &dw}, Named{"db", &db}})
    CheckHolds(fn, what, arr->size, d.C);
  BatchNormBackwardKernel(x.ptr, g.ptr, w.ptr, mean.ptr, var.ptr, dx.ptr, dw.ptr, db.ptr, d, eps);
}

// x read through the (row, channel, inner) `strides`; out_grad and dx row-major.
inline void BatchNormBackwardStrided(const Buffer& x, const Buffer& g, const Buffer& w, const Buffer& mean,
                                     const Buffer& var, Buffer& dx, Buffer& dw, Buffer& db, int64_t rows, int64_t C,
                                     int64_t inner, const Shape& strides, double eps) {
  const char* fn = "batch_norm_backward_strided";
  CheckNormSizes(fn, rows, C, inner);
  CheckedBatchNormBackward(fn, x, g, w, mean, var, dx, dw, db, CheckNormLayout(fn, rows, C, inner, strides), eps);
}

// x, out_grad and dx row-major rows x C x inner.
inline void BatchNormBackward(const Buffer& x, const Buffer& g, const Buffer& w, const Buffer& mean,
                              const Buffer& var, Buffer& dx, Buffer& dw, Buffer& db, int64_t rows, int64_t C,
                              int64_t inner, double eps) {
  const char* fn = "batch_norm_backward";
  CheckNormSizes(fn, rows, C, inner);
  CheckedBatchNormBackward(fn, x, g, w, mean, var, dx, dw, db, RowMajorNorm(rows, C, inner), eps);
}

}  // namespace cpu
}  // namespace needle
