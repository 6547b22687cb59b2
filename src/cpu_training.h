// needle CPU backend: the fused kernels of a training step. Batch normalisation over an
// (rows, C, inner) array, i.e. N x C (inner = 1) or N x C x H x W (rows = N, inner = H*W),
// statistics per channel c. (The optimizer updates are in cpu_optim.h.)
//
// One call replaces the ~15 element-wise / reduction calls of the composed formula. Sums are
// accumulated in double, per thread, over whole rows, then combined in thread order (the
// result does not depend on scheduling). Variance is two-pass: sum (x - mean)^2.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cpu_common.h"

namespace needle {
namespace cpu {

// out[c*K + k] = sum over rows r of the K sums that add(r, c, acc) adds into acc[0..K).
template <int K, class F>
void ChannelSums(int64_t rows, int64_t C, int64_t inner, double* out, const F& add) {
  int nt = MaxThreads();
  if (rows * C * inner < kParallelMinCopy || rows < 2) nt = 1;
  if (nt > rows) nt = int(rows);
  std::vector<double> part(size_t(nt) * size_t(C) * K, 0.0);
  auto body = [&](int t) {
    double* acc = part.data() + size_t(t) * size_t(C) * K;
    const int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < C; ++c) add(r, c, acc + c * K);
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

// Calls f(run, c, length) on every (row, channel) run of `inner` elements, in parallel.
template <class F>
void ForEachRun(int64_t rows, int64_t C, int64_t inner, const F& f) {
  ParallelRange(rows * C, rows * C * inner, kParallelMinCopy, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) f(i * inner, i % C, inner);
  });
}

// mean, var (biased) per channel; out = (x - mean) * (w / sqrt(var + eps)) + b.
inline void BatchNormForwardKernel(const float* x, const float* w, const float* b, float* out, float* mean,
                                   float* var, int64_t rows, int64_t C, int64_t inner, double eps) {
  const double m = double(rows) * double(inner);
  std::vector<double> sums(static_cast<size_t>(C)), mu(static_cast<size_t>(C));
  ChannelSums<1>(rows, C, inner, sums.data(), [&](int64_t r, int64_t c, double* acc) {
    const float* p = x + (r * C + c) * inner;
    double s = 0.0;
    for (int64_t k = 0; k < inner; ++k) s += p[k];
    acc[0] += s;
  });
  for (int64_t c = 0; c < C; ++c) mu[size_t(c)] = sums[size_t(c)] / m;
  ChannelSums<1>(rows, C, inner, sums.data(), [&](int64_t r, int64_t c, double* acc) {
    const float* p = x + (r * C + c) * inner;
    const double u = mu[size_t(c)];
    double s = 0.0;
    for (int64_t k = 0; k < inner; ++k) s += (p[k] - u) * (p[k] - u);
    acc[0] += s;
  });
  std::vector<float> scale(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double v = sums[size_t(c)] / m;
    mean[c] = float(mu[size_t(c)]);
    var[c] = float(v);
    scale[size_t(c)] = float(double(w[c]) / std::sqrt(v + eps));
  }
  ForEachRun(rows, C, inner, [&](int64_t at, int64_t c, int64_t len) {
    const float u = mean[c], s = scale[size_t(c)], t = b[c];  // centre first: no cancellation
    for (int64_t k = 0; k < len; ++k) out[at + k] = (x[at + k] - u) * s + t;
  });
}

// From the forward's mean and var: db = sum g, dw = sum g * xhat,
// dx = w * invstd * (g - db / M - xhat * dw / M), xhat = (x - mean) * invstd.
inline void BatchNormBackwardKernel(const float* x, const float* g, const float* w, const float* mean,
                                    const float* var, float* dx, float* dw, float* db, int64_t rows, int64_t C,
                                    int64_t inner, double eps) {
  const double m = double(rows) * double(inner);
  std::vector<double> sums(static_cast<size_t>(C) * 2);
  ChannelSums<2>(rows, C, inner, sums.data(), [&](int64_t r, int64_t c, double* acc) {
    const int64_t at = (r * C + c) * inner;
    const double u = mean[c];
    double sg = 0.0, sgx = 0.0;
    for (int64_t k = 0; k < inner; ++k) {
      sg += g[at + k];
      sgx += g[at + k] * (x[at + k] - u);
    }
    acc[0] += sg;
    acc[1] += sgx;
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
  ForEachRun(rows, C, inner, [&](int64_t at, int64_t c, int64_t len) {
    const float a = k1[size_t(c)], s = k2[size_t(c)], t = k3[size_t(c)], u = mean[c];
    for (int64_t k = 0; k < len; ++k) dx[at + k] = g[at + k] * a + (x[at + k] - u) * s + t;
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

inline void BatchNormForward(const Buffer& x, const Buffer& w, const Buffer& b, Buffer& out, Buffer& mean,
                             Buffer& var, int64_t rows, int64_t C, int64_t inner, double eps) {
  const char* fn = "batch_norm_forward";
  const int64_t n = CheckNormSizes(fn, rows, C, inner);
  for (const auto& [what, arr] : {Named{"x", &x}, Named{"out", &out}}) CheckHolds(fn, what, arr->size, n);
  for (const auto& [what, arr] : {Named{"weight", &w}, Named{"bias", &b}, Named{"mean", &mean}, Named{"var", &var}})
    CheckHolds(fn, what, arr->size, C);
  BatchNormForwardKernel(x.ptr, w.ptr, b.ptr, out.ptr, mean.ptr, var.ptr, rows, C, inner, eps);
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

inline void BatchNormBackward(const Buffer& x, const Buffer& g, const Buffer& w, const Buffer& mean,
                              const Buffer& var, Buffer& dx, Buffer& dw, Buffer& db, int64_t rows, int64_t C,
                              int64_t inner, double eps) {
  const char* fn = "batch_norm_backward";
  const int64_t n = CheckNormSizes(fn, rows, C, inner);
  for (const auto& [what, arr] : {Named{"x", &x}, Named{"out_grad", &g}, Named{"dx", &dx}})
    CheckHolds(fn, what, arr->size, n);
  for (const auto& [what, arr] :
       {Named{"weight", &w}, Named{"mean", &mean}, Named{"var", &var}, Named{"dw", &dw}, Named{"db", &db}})
    CheckHolds(fn, what, arr->size, C);
  BatchNormBackwardKernel(x.ptr, g.ptr, w.ptr, mean.ptr, var.ptr, dx.ptr, dw.ptr, db.ptr, rows, C, inner, eps);
}

}  // namespace cpu
}  // namespace needle
