// needle CUDA backend: pooling (NHWC), softmax-backward, SGD (both modes), Adam and batch-norm kernels, and the
// launchers of the training ones. These kernels are not templates, so only cuda_nn.cu may
// include this header (a second translation unit would define them twice).
#pragma once

#include "cuda_common.cuh"
#include "cuda_kernels.cuh"
#include "cuda_launch.cuh"
#include "cuda_memory.cuh"
#include "norm_layout.h"

namespace needle {
namespace cuda {

// ------------------------------------------------------------------------------------ pooling (NHWC)

struct PoolDims {
  int64_t N, H, W, C, Ho, Wo;
  int kh, kw, sh, sw, ph, pw;
};

// Splits a flat N x Ho x Wo x C index (C fastest, so neighbouring threads read neighbouring
// channels: coalesced).
__device__ __forceinline__ void SplitOutIndex(const PoolDims& d, int64_t idx, int64_t* n,
                                              int64_t* ho, int64_t* wo, int64_t* c) {
  *c = idx % d.C;
  idx /= d.C;
  *wo = idx % d.Wo;
  idx /= d.Wo;
  *ho = idx % d.Ho;
  *n = idx / d.Ho;
}

// Arg-max of one window in row-major (kh, kw) order, padding counting as -inf, with np.argmax's
// rules: the first maximum wins, and a NaN beats everything (the first NaN). Returns the
// window position; *best gets the maximum.
__device__ __forceinline__ int WindowArgMax(const float* a, const PoolDims& d, int64_t n,
                                            int64_t ho, int64_t wo, int64_t c, float* best) {
  int arg = 0;
  float m = -INFINITY;
  for (int i = 0; i < d.kh; ++i) {
    const int64_t h = ho * d.sh - d.ph + i;
    for (int j = 0; j < d.kw; ++j) {
      const int64_t w = wo * d.sw - d.pw + j;
      const bool inside = h >= 0 && h < d.H && w >= 0 && w < d.W;
      const float v = inside ? a[((n * d.H + h) * d.W + w) * d.C + c] : -INFINITY;
      if (v > m || (v != v && m == m)) {
        m = v;
        arg = i * d.kw + j;
      }
    }
  }
  *best = m;
  return arg;
}

__global__ void MaxPoolKernel(const float* a, float* out, PoolDims d, int64_t total) {
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    int64_t n, ho, wo, c;
    SplitOutIndex(d, idx, &n, &ho, &wo, &c);
    float best;
    WindowArgMax(a, d, n, ho, wo, c, &best);
    out[idx] = best;
  }
}

// dinp must be zeroed before: each dout element is added at its window's arg-max.
__global__ void MaxPoolBackwardKernel(const float* a, const float* dout, float* dinp,
                                      PoolDims d, int64_t total) {
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    int64_t n, ho, wo, c;
    SplitOutIndex(d, idx, &n, &ho, &wo, &c);
    float best;
    const int arg = WindowArgMax(a, d, n, ho, wo, c, &best);
    const int64_t h = ho * d.sh - d.ph + arg / d.kw, w = wo * d.sw - d.pw + arg % d.kw;
    // A window whose maximum is padding (all -inf) routes its gradient nowhere.
    if (h >= 0 && h < d.H && w >= 0 && w < d.W)
      atomicAdd(dinp + ((n * d.H + h) * d.W + w) * d.C + c, dout[idx]);
  }
}

__global__ void AvgPoolKernel(const float* a, float* out, PoolDims d, int64_t total) {
  const float count = static_cast<float>(d.kh * d.kw);
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    int64_t n, ho, wo, c;
    SplitOutIndex(d, idx, &n, &ho, &wo, &c);
    float s = 0.0f;
    for (int i = 0; i < d.kh; ++i) {
      const int64_t h = ho * d.sh - d.ph + i;
      if (h < 0 || h >= d.H) continue;
      for (int j = 0; j < d.kw; ++j) {
        const int64_t w = wo * d.sw - d.pw + j;
        if (w >= 0 && w < d.W) s += a[((n * d.H + h) * d.W + w) * d.C + c];
      }
    }
    out[idx] = s / count;
  }
}

// Gather form (no atomics, deterministic): each input element sums dout / (kh*kw) over the
// output windows that contain it: ho with ho*sh <= h+ph <= ho*sh + kh - 1.
__global__ void AvgPoolBackwardKernel(const float* dout, float* dinp, PoolDims d, int64_t total) {
  const float count = static_cast<float>(d.kh * d.kw);
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t c = idx % d.C;
    int64_t t = idx / d.C;
    const int64_t w = t % d.W;
    t /= d.W;
    const int64_t h = t % d.H, n = t / d.H;
    const int64_t hp = h + d.ph, wp = w + d.pw;
    const int64_t ho_lo = hp - d.kh + 1 <= 0 ? 0 : (hp - d.kh + 1 + d.sh - 1) / d.sh;
    const int64_t wo_lo = wp - d.kw + 1 <= 0 ? 0 : (wp - d.kw + 1 + d.sw - 1) / d.sw;
    const int64_t ho_hi = hp / d.sh < d.Ho - 1 ? hp / d.sh : d.Ho - 1;
    const int64_t wo_hi = wp / d.sw < d.Wo - 1 ? wp / d.sw : d.Wo - 1;
    float s = 0.0f;
    for (int64_t ho = ho_lo; ho <= ho_hi; ++ho)
      for (int64_t wo = wo_lo; wo <= wo_hi; ++wo)
        s += dout[((n * d.Ho + ho) * d.Wo + wo) * d.C + c] / count;
    dinp[idx] = s;
  }
}

// One SGD step; the _rn intrinsics round every product and sum on its own (no FMA), as the
// optimizer's separate array ops do.
__global__ void SgdUpdateKernel(const float* w, const float* g, const float* u, float* w_out, float* u_out,
                                int64_t n, const float* hyper, bool decay, bool has_u) {
  const float m = hyper[0], d = hyper[1], lr = hyper[2], wd = hyper[3];  // read on the device: graphs keep them live
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    float gi = g[i];
    if (decay) gi = __fadd_rn(gi, __fmul_rn(w[i], wd));
    const float step = __fmul_rn(gi, d);
    const float ui = has_u ? __fadd_rn(__fmul_rn(u[i], m), step) : step;
    u_out[i] = ui;
    w_out[i] = __fadd_rn(w[i], __fmul_rn(ui, lr));
  }
}

// torch.optim.SGD (cpu_optim.h gives the formula); direction 0: the gradient (no buffer),
// 1: the momentum buffer, 2: Nesterov.
__global__ void SgdTorchUpdateKernel(const float* w, const float* g, const float* u, float* w_out, float* u_out,
                                     int64_t n, const float* hyper, bool decay, int direction, bool has_u) {
  const float m = hyper[0], keep = hyper[1], lr = hyper[2], wd = hyper[3];  // read on the device, as above
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    float gi = g[i];
    if (decay) gi = __fadd_rn(gi, __fmul_rn(w[i], wd));
    float di = gi;
    if (direction != 0) {
      const float ui = has_u ? __fadd_rn(__fmul_rn(u[i], m), __fmul_rn(gi, keep)) : gi;
      u_out[i] = ui;
      di = direction == 2 ? __fadd_rn(gi, __fmul_rn(ui, m)) : ui;
    }
    w_out[i] = __fadd_rn(w[i], __fmul_rn(di, lr));
  }
}

// Adam (cpu_optim.h gives the formula); decay 1: L2 in the gradient, 2: decoupled (AdamW).
__global__ void AdamUpdateKernel(const float* w, const float* g, const float* m, const float* v, float* w_out,
                                 float* m_out, float* v_out, int64_t n, const float* h, const float* t, int decay,
                                 bool has_state) {
  const float lr = h[0], b1 = h[1], omb1 = h[2], b2 = h[3], omb2 = h[4], eps = h[5], wd = h[6], keep = h[7];
  const float c1 = __fdiv_rn(1.0f, __fsub_rn(1.0f, powf(b1, t[0])));
  const float c2 = __fdiv_rn(1.0f, __fsub_rn(1.0f, powf(b2, t[0])));
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    float w0 = w[i], gi = g[i];
    if (decay == 2) w0 = __fmul_rn(w0, keep);
    if (decay == 1) gi = __fadd_rn(gi, __fmul_rn(w[i], wd));
    const float gm = __fmul_rn(gi, omb1), gv = __fmul_rn(__fmul_rn(gi, gi), omb2);
    const float mi = has_state ? __fadd_rn(__fmul_rn(m[i], b1), gm) : gm;
    const float vi = has_state ? __fadd_rn(__fmul_rn(v[i], b2), gv) : gv;
    const float num = __fmul_rn(__fmul_rn(mi, c1), lr);
    const float den = __fadd_rn(__fsqrt_rn(__fmul_rn(vi, c2)), eps);
    m_out[i] = mi;
    v_out[i] = vi;
    w_out[i] = __fsub_rn(w0, __fdiv_rn(num, den));
  }
}

// running = running * keep + batch * momentum, for the mean and the variance of C channels.
__global__ void RunningUpdateKernel(const float* mean, const float* var, float* running_mean, float* running_var,
                                    int64_t C, float momentum, float keep) {
  for (int64_t c = GlobalThread(); c < C; c += GridThreads()) {
    running_mean[c] = __fadd_rn(__fmul_rn(running_mean[c], keep), __fmul_rn(mean[c], momentum));
    running_var[c] = __fadd_rn(__fmul_rn(running_var[c], keep), __fmul_rn(var[c], momentum));
  }
}

// Gradient of softmax at output y: out = y * (g - sum(g * y)), a warp per row.
__global__ void SoftmaxBackwardWarpKernel(const float* y, const float* g, float* out, int64_t rows,
                                          int64_t row_len) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = GridThreads() / kWarp;
  for (int64_t row = GlobalThread() / kWarp; row < rows; row += warps) {
    const float* yr = y + row * row_len;
    const float* gr = g + row * row_len;
    float dot = 0.0f;
    for (int64_t j = lane; j < row_len; j += kWarp) dot += gr[j] * yr[j];
    dot = WarpReduce<SumOp>(dot);
    for (int64_t j = lane; j < row_len; j += kWarp) out[row * row_len + j] = yr[j] * (gr[j] - dot);
  }
}

// ------------------------------------------------------------------------------------ batch norm
// Operands viewed rows x C x inner: x's element (r, c, k) at r*sr + c*sc + k*sk of its buffer, a
// dense layout (row-major NCHW: (C*inner, inner, 1); an NCHW view of an NHWC buffer:
// (inner*C, 1, C)); out, out_grad and dx row-major. One block per channel sums that channel's
// rows*inner values (in double), thread t taking the values t, t + blockDim, ... of the channel
// in (r, k) order whatever x's layout, so the sums do not depend on it; a grid-stride kernel then
// applies the per-channel affine map.

// Block sum in double (blockDim.x a multiple of 32); every thread gets the result.
__device__ __forceinline__ double BlockSumDouble(double v, double* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
#pragma unroll
  for (int delta = kWarp / 2; delta > 0; delta /= 2) v += __shfl_xor_sync(kFullMask, v, delta);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double r = lane < nwarps ? scratch[lane] : 0.0;
#pragma unroll
  for (int delta = kWarp / 2; delta > 0; delta /= 2) r += __shfl_xor_sync(kFullMask, r, delta);
  __syncthreads();
  return r;
}

// Index in x of the i-th value (in (r, k) order) of channel c.
__device__ __forceinline__ int64_t ChannelElement(int64_t i, int64_t c, const NormLayout& d) {
  const int64_t r = i / d.inner;
  return r * d.sr + c * d.sc + (i - r * d.inner) * d.sk;
}

// Index in a row-major operand of the i-th value of channel c.
__device__ __forceinline__ int64_t RowMajorElement(int64_t i, int64_t c, const NormLayout& d) {
  const int64_t r = i / d.inner;
  return (r * d.C + c) * d.inner + (i - r * d.inner);
}

// Index in x of element i of a row-major operand.
__device__ __forceinline__ int64_t XOfRowMajor(int64_t i, const NormLayout& d) {
  const int64_t k = i % d.inner, rc = i / d.inner;
  return (rc / d.C) * d.sr + (rc % d.C) * d.sc + k * d.sk;
}

// mean[c], var[c] (biased, two-pass) and scale[c] = w[c] / sqrt(var + eps).
__global__ void BatchNormStatsKernel(const float* x, const float* w, float* mean, float* var, float* scale,
                                     NormLayout d, double eps) {
  __shared__ double scratch[kWarp];
  const int64_t c = blockIdx.x, m = d.rows * d.inner;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) s += x[ChannelElement(i, c, d)];
  const double mu = BlockSumDouble(s, scratch) / static_cast<double>(m);
  double q = 0.0;
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
    const double e = x[ChannelElement(i, c, d)] - mu;
    q += e * e;
  }
  const double v = BlockSumDouble(q, scratch) / static_cast<double>(m);
  if (threadIdx.x == 0) {
    mean[c] = static_cast<float>(mu);
    var[c] = static_cast<float>(v);
    scale[c] = static_cast<float>(w[c] / sqrt(v + eps));
  }
}

// out[i] = (x[i] - mean[c]) * scale[c] + b[c], c = (i / inner) % C (out row-major).
__global__ void BatchNormApplyKernel(const float* x, const float* mean, const float* scale, const float* b,
                                     float* out, NormLayout d) {
  const int64_t n = d.size();
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const int64_t c = (i / d.inner) % d.C;
    out[i] = __fadd_rn(__fmul_rn(__fsub_rn(x[XOfRowMajor(i, d)], mean[c]), scale[c]), b[c]);
  }
}

// db[c] = sum g, dw[c] = sum g * xhat; k[3c..3c+2] = the coefficients of dx (see below).
__global__ void BatchNormGradSumsKernel(const float* x, const float* g, const float* w, const float* mean,
                                        const float* var, float* dw, float* db, float* k, NormLayout d,
                                        double eps) {
  __shared__ double scratch[kWarp];
  const int64_t c = blockIdx.x, m = d.rows * d.inner;
  const double mu = mean[c];
  double sg = 0.0, sgx = 0.0;
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
    const float gi = g[RowMajorElement(i, c, d)];
    sg += gi;
    sgx += static_cast<double>(gi) * (x[ChannelElement(i, c, d)] - mu);
  }
  sg = BlockSumDouble(sg, scratch);
  sgx = BlockSumDouble(sgx, scratch);
  if (threadIdx.x == 0) {
    const double invstd = 1.0 / sqrt(static_cast<double>(var[c]) + eps);
    const double sum_gxhat = sgx * invstd, a = w[c] * invstd;
    db[c] = static_cast<float>(sg);
    dw[c] = static_cast<float>(sum_gxhat);
    k[3 * c] = static_cast<float>(a);
    k[3 * c + 1] = static_cast<float>(-a * invstd * sum_gxhat / static_cast<double>(m));
    k[3 * c + 2] = static_cast<float>(-a * sg / static_cast<double>(m));
  }
}

// dx[i] = g[i] * k0 + (x[i] - mean[c]) * k1 + k2, the k of channel c = (i / inner) % C (g, dx
// row-major).
__global__ void BatchNormGradApplyKernel(const float* x, const float* g, const float* mean, const float* k,
                                         float* dx, NormLayout d) {
  const int64_t n = d.size();
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const int64_t c = (i / d.inner) % d.C;
    const float* kc = k + 3 * c;
    const float xc = __fsub_rn(x[XOfRowMajor(i, d)], mean[c]);
    dx[i] = __fadd_rn(__fadd_rn(__fmul_rn(g[i], kc[0]), __fmul_rn(xc, kc[1])), kc[2]);
  }
}

// ------------------------------------------------------------------------------------ training

inline void LaunchSgdUpdate(const float* w, const float* g, const float* u, float* w_out, float* u_out, int64_t n,
                            const float* hyper, bool decay, bool has_u) {
  if (n == 0) return;
  Launch<SgdUpdateKernel>(GridFor(n), kThreads, w, g, u, w_out, u_out, n, hyper, decay, has_u);
}

inline void LaunchSgdTorchUpdate(const float* w, const float* g, const float* u, float* w_out, float* u_out,
                                 int64_t n, const float* hyper, bool decay, int direction, bool has_u) {
  if (n == 0) return;
  Launch<SgdTorchUpdateKernel>(GridFor(n), kThreads, w, g, u, w_out, u_out, n, hyper, decay, direction, has_u);
}

inline void LaunchAdamUpdate(const float* w, const float* g, const float* m, const float* v, float* w_out,
                             float* m_out, float* v_out, int64_t n, const float* hyper, const float* t, int decay,
                             bool has_state) {
  if (n == 0) return;
  Launch<AdamUpdateKernel>(GridFor(n), kThreads, w, g, m, v, w_out, m_out, v_out, n, hyper, t, decay, has_state);
}

// x viewed through the layout d (C <= INT_MAX): a block per channel for the statistics, then the
// element-wise affine map with the per-channel scale w / sqrt(var + eps) from a scratch buffer.
inline void LaunchBatchNormForward(const float* x, const float* w, const float* b, float* out, float* mean,
                                   float* var, const NormLayout& d, double eps) {
  DeviceBuffer scale(static_cast<size_t>(d.C) * sizeof(float));
  Launch<BatchNormStatsKernel>(static_cast<unsigned>(d.C), kThreads, x, w, mean, var, scale.as<float>(), d, eps);
  Launch<BatchNormApplyKernel>(GridFor(d.size()), kThreads, x, mean, scale.as<float>(), b, out, d);
}

// The per-channel sums (db, dw and the three coefficients of dx), then dx element-wise.
inline void LaunchBatchNormBackward(const float* x, const float* g, const float* w, const float* mean,
                                    const float* var, float* dx, float* dw, float* db, const NormLayout& d,
                                    double eps) {
  DeviceBuffer k(static_cast<size_t>(d.C) * 3 * sizeof(float));
  Launch<BatchNormGradSumsKernel>(static_cast<unsigned>(d.C), kThreads, x, g, w, mean, var, dw, db, k.as<float>(), d,
                                  eps);
  Launch<BatchNormGradApplyKernel>(GridFor(d.size()), kThreads, x, g, mean, k.as<float>(), dx, d);
}
}  // namespace cuda
}  // namespace needle
