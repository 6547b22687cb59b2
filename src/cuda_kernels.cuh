// needle CUDA backend: element-wise, strided-view, reduction, softmax and pooling kernels.
// Launch configurations live in ndarray_backend_cuda.cu; every kernel here is grid-stride, so
// any grid size is correct. Argument order: inputs, then out, then sizes.
#pragma once

#include "cuda_common.cuh"

namespace needle {
namespace cuda {

// ------------------------------------------------------------------------------------ functors

struct AddOp { __device__ float operator()(float x, float y) const { return x + y; } };
struct MulOp { __device__ float operator()(float x, float y) const { return x * y; } };
struct DivOp { __device__ float operator()(float x, float y) const { return x / y; } };
struct PowOp { __device__ float operator()(float x, float y) const { return powf(x, y); } };
struct MaximumOp { __device__ float operator()(float x, float y) const { return NanMax(x, y); } };
struct EqOp { __device__ float operator()(float x, float y) const { return x == y ? 1.0f : 0.0f; } };
struct GeOp { __device__ float operator()(float x, float y) const { return x >= y ? 1.0f : 0.0f; } };

struct LogOp { __device__ float operator()(float x) const { return logf(x); } };
struct ExpOp { __device__ float operator()(float x) const { return expf(x); } };
struct TanhOp { __device__ float operator()(float x) const { return tanhf(x); } };

// numpy's fast paths for array ** scalar (its results differ from powf at -0, -inf, NaN).
struct SqrtOp { __device__ float operator()(float x) const { return sqrtf(x); } };
struct SquareOp { __device__ float operator()(float x) const { return x * x; } };
struct ReciprocalOp { __device__ float operator()(float x) const { return 1.0f / x; } };
struct IdentityOp { __device__ float operator()(float x) const { return x; } };

// x op val, for the scalar_* family.
template <typename Op>
struct WithScalar {
  Op op;
  float val;
  __device__ float operator()(float x) const { return op(x, val); }
};

// ------------------------------------------------------------------------------------ element-wise

__device__ __forceinline__ int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GridThreads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// out[i] = op(a[i], b[i]) for i < n. `vec`: all three pointers are 16-byte aligned, so the
// body moves float4s; the tail (n % 4) goes element by element.
template <typename Op>
__global__ void EwiseBinaryKernel(const float* a, const float* b, float* out, int64_t n,
                                  bool vec, Op op) {
  int64_t start = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* o4 = reinterpret_cast<float4*>(out);
    for (int64_t i = GlobalThread(); i < n4; i += GridThreads()) {
      const float4 x = a4[i], y = b4[i];
      o4[i] = make_float4(op(x.x, y.x), op(x.y, y.y), op(x.z, y.z), op(x.w, y.w));
    }
    start = n4 * 4;
  }
  for (int64_t i = start + GlobalThread(); i < n; i += GridThreads()) out[i] = op(a[i], b[i]);
}

// out[i] = op(a[i]) for i < n (unary functions and scalar ops).
template <typename Op>
__global__ void EwiseUnaryKernel(const float* a, float* out, int64_t n, bool vec, Op op) {
  int64_t start = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    float4* o4 = reinterpret_cast<float4*>(out);
    for (int64_t i = GlobalThread(); i < n4; i += GridThreads()) {
      const float4 x = a4[i];
      o4[i] = make_float4(op(x.x), op(x.y), op(x.z), op(x.w));
    }
    start = n4 * 4;
  }
  for (int64_t i = start + GlobalThread(); i < n; i += GridThreads()) out[i] = op(a[i]);
}

__global__ void FillKernel(float* out, int64_t n, bool vec, float val) {
  int64_t start = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    float4* o4 = reinterpret_cast<float4*>(out);
    for (int64_t i = GlobalThread(); i < n4; i += GridThreads())
      o4[i] = make_float4(val, val, val, val);
    start = n4 * 4;
  }
  for (int64_t i = start + GlobalThread(); i < n; i += GridThreads()) out[i] = val;
}

// ------------------------------------------------------------------------------------ strided views
// One thread per element of the view, in row-major order: compact writes (and setitem reads)
// are coalesced; the strided side is gathered/scattered. IdxT is uint32_t whenever n < 2^31,
// which makes the index decode much cheaper than 64-bit division.

template <typename IdxT>
__global__ void CompactKernel(const float* a, float* out, ViewMeta v, IdxT n) {
  const IdxT stride = static_cast<IdxT>(blockDim.x) * gridDim.x;
  for (IdxT i = static_cast<IdxT>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = a[ViewOffset(v, i)];
}

// `broadcast`: the view has a stride-0 dim, so several elements share an offset and only the
// last of them (row-major) writes.
template <typename IdxT>
__global__ void SetitemKernel(const float* a, float* out, ViewMeta v, IdxT n, bool broadcast) {
  const IdxT stride = static_cast<IdxT>(blockDim.x) * gridDim.x;
  for (IdxT i = static_cast<IdxT>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    if (!broadcast || LastAlongZeroStrides(v, i)) out[ViewOffset(v, i)] = a[i];
}

template <typename IdxT>
__global__ void ScalarSetitemKernel(float val, float* out, ViewMeta v, IdxT n) {
  const IdxT stride = static_cast<IdxT>(blockDim.x) * gridDim.x;
  for (IdxT i = static_cast<IdxT>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[ViewOffset(v, i)] = val;
}

// out[i] = op(a[i], b[view offset of i]): a binary op whose second operand is a strided view
// (a broadcast per-channel vector, a transpose) read in place; a and out are coalesced.
template <typename IdxT, typename Op>
__global__ void EwiseViewKernel(const float* a, const float* b, float* out, ViewMeta v, IdxT n, Op op) {
  const IdxT stride = static_cast<IdxT>(blockDim.x) * gridDim.x;
  for (IdxT i = static_cast<IdxT>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = op(a[i], b[ViewOffset(v, i)]);
}

// col2im: several i may map to one element, so the add is atomic.
template <typename IdxT>
__global__ void ScatterAddKernel(const float* a, float* out, ViewMeta v, IdxT n) {
  const IdxT stride = static_cast<IdxT>(blockDim.x) * gridDim.x;
  for (IdxT i = static_cast<IdxT>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    atomicAdd(out + ViewOffset(v, i), a[i]);
}

// Compact of a view whose last two (coalesced) dims are transposed: element (b, r, c) of the
// view is a[base(b) + r + c * c_stride], with r contiguous in `a` and c contiguous in `out`.
// 32 x 32 tiles through shared memory (padded to 33 columns: no bank conflicts) make both the
// reads and the writes coalesced. Block 32 x 8; `batch` describes the leading dims.
template <typename IdxT>
__global__ void TransposeCompactKernel(const float* a, float* out, ViewMeta batch, int64_t nbatch,
                                       int64_t rows, int64_t cols, int64_t c_stride,
                                       int64_t tiles_c, int64_t tiles) {
  __shared__ float tile[32][33];
  for (int64_t b = blockIdx.z; b < nbatch; b += gridDim.z) {
    const int64_t base = ViewOffset(batch, static_cast<IdxT>(b));
    float* dst = out + b * rows * cols;
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
      const int64_t r0 = (t / tiles_c) * 32, c0 = (t % tiles_c) * 32;
      for (int j = threadIdx.y; j < 32; j += blockDim.y) {  // threadIdx.x walks r: reads coalesce
        const int64_t r = r0 + threadIdx.x, c = c0 + j;
        if (r < rows && c < cols) tile[j][threadIdx.x] = a[base + r + c * c_stride];
      }
      __syncthreads();
      for (int j = threadIdx.y; j < 32; j += blockDim.y) {  // threadIdx.x walks c: writes coalesce
        const int64_t r = r0 + j, c = c0 + threadIdx.x;
        if (r < rows && c < cols) dst[r * cols + c] = tile[threadIdx.x][j];
      }
      __syncthreads();
    }
  }
}

// ------------------------------------------------------------------------------------ reductions

// One warp per row of `row_len` consecutive elements (short rows): lanes stride through the row
// so every load instruction of the warp is coalesced.
template <typename Op>
__global__ void ReduceWarpKernel(const float* a, float* out, int64_t rows, int64_t row_len) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = GridThreads() / kWarp;
  for (int64_t row = GlobalThread() / kWarp; row < rows; row += warps) {
    const float* r = a + row * row_len;
    float acc = Op::Identity();
    for (int64_t j = lane; j < row_len; j += kWarp) acc = Op::Combine(acc, r[j]);
    acc = WarpReduce<Op>(acc);
    if (lane == 0) out[row] = acc;
  }
}

// One block per (chunk, row): reduces a[row*row_len + chunk*chunk_len ...] (at most chunk_len
// elements, clipped to the row) into out[row*chunks + chunk]. chunks == 1 reduces whole rows;
// chunks > 1 is the first pass of a two-pass reduction of a few very long rows.
template <typename Op>
__global__ void ReduceBlockKernel(const float* a, float* out, int64_t rows, int64_t row_len,
                                  int64_t chunk_len, int64_t chunks) {
  __shared__ float scratch[kWarp];
  const int64_t items = rows * chunks;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t row = item / chunks, chunk = item % chunks;
    const int64_t begin = chunk * chunk_len;
    const int64_t end = begin + chunk_len < row_len ? begin + chunk_len : row_len;
    const float* r = a + row * row_len;
    float acc = Op::Identity();
    for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) acc = Op::Combine(acc, r[j]);
    acc = BlockReduce<Op>(acc, scratch);
    if (threadIdx.x == 0) out[item] = acc;
  }
}

// ------------------------------------------------------------------------------------ softmax
// Stable softmax / log-softmax of each row: m = max(x), s = sum(exp(x - m)),
// softmax = exp(x - m) / s, log-softmax = (x - m) - log(s) (the numpy reference's formulas).

// Rows of at most 32 * kPerLane elements: one warp per row, the row held in registers, so x is
// read from memory once.
template <int kPerLane, bool kLog>
__global__ void SoftmaxWarpKernel(const float* a, float* out, int64_t rows, int row_len) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = GridThreads() / kWarp;
  for (int64_t row = GlobalThread() / kWarp; row < rows; row += warps) {
    const float* x = a + row * row_len;
    float v[kPerLane];
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int j = lane + k * kWarp;
      v[k] = j < row_len ? x[j] : -INFINITY;
      if (j < row_len) m = NanMax(m, v[k]);
    }
    m = WarpReduce<MaxOp>(m);
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int j = lane + k * kWarp;
      if (j < row_len) {
        v[k] -= m;
        s += expf(v[k]);
      }
    }
    s = WarpReduce<SumOp>(s);
    const float log_s = logf(s);
    float* y = out + row * row_len;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int j = lane + k * kWarp;
      if (j < row_len) y[j] = kLog ? v[k] - log_s : expf(v[k]) / s;
    }
  }
}

// Long rows: one block per row, three sweeps (max, sum, write); the row is usually still in L2
// for the second and third sweep.
template <bool kLog>
__global__ void SoftmaxBlockKernel(const float* a, float* out, int64_t rows, int64_t row_len) {
  __shared__ float scratch[kWarp];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* x = a + row * row_len;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < row_len; j += blockDim.x) m = NanMax(m, x[j]);
    m = BlockReduce<MaxOp>(m, scratch);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < row_len; j += blockDim.x) s += expf(x[j] - m);
    s = BlockReduce<SumOp>(s, scratch);
    const float log_s = logf(s);
    float* y = out + row * row_len;
    for (int64_t j = threadIdx.x; j < row_len; j += blockDim.x) {
      const float z = x[j] - m;
      y[j] = kLog ? z - log_s : expf(z) / s;
    }
  }
}

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
                                int64_t n, float m, float d, float lr, float wd, bool decay, bool has_u) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    float gi = g[i];
    if (decay) gi = __fadd_rn(gi, __fmul_rn(w[i], wd));
    const float step = __fmul_rn(gi, d);
    const float ui = has_u ? __fadd_rn(__fmul_rn(u[i], m), step) : step;
    u_out[i] = ui;
    w_out[i] = __fadd_rn(w[i], __fmul_rn(ui, lr));
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
// x viewed rows x C x inner. One block per channel sums that channel's rows*inner values (in
// double); a grid-stride kernel then applies the per-channel affine map.

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

__device__ __forceinline__ int64_t ChannelElement(int64_t i, int64_t c, int64_t C, int64_t inner) {
  const int64_t r = i / inner;
  return (r * C + c) * inner + (i - r * inner);
}

// mean[c], var[c] (biased, two-pass) and scale[c] = w[c] / sqrt(var + eps).
__global__ void BatchNormStatsKernel(const float* x, const float* w, float* mean, float* var, float* scale,
                                     int64_t rows, int64_t C, int64_t inner, double eps) {
  __shared__ double scratch[kWarp];
  const int64_t c = blockIdx.x, m = rows * inner;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) s += x[ChannelElement(i, c, C, inner)];
  const double mu = BlockSumDouble(s, scratch) / static_cast<double>(m);
  double q = 0.0;
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
    const double d = x[ChannelElement(i, c, C, inner)] - mu;
    q += d * d;
  }
  const double v = BlockSumDouble(q, scratch) / static_cast<double>(m);
  if (threadIdx.x == 0) {
    mean[c] = static_cast<float>(mu);
    var[c] = static_cast<float>(v);
    scale[c] = static_cast<float>(w[c] / sqrt(v + eps));
  }
}

// out[i] = (x[i] - mean[c]) * scale[c] + b[c], c = (i / inner) % C.
__global__ void BatchNormApplyKernel(const float* x, const float* mean, const float* scale, const float* b,
                                     float* out, int64_t n, int64_t C, int64_t inner) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const int64_t c = (i / inner) % C;
    out[i] = __fadd_rn(__fmul_rn(__fsub_rn(x[i], mean[c]), scale[c]), b[c]);
  }
}

// db[c] = sum g, dw[c] = sum g * xhat; k[3c..3c+2] = the coefficients of dx (see below).
__global__ void BatchNormGradSumsKernel(const float* x, const float* g, const float* w, const float* mean,
                                        const float* var, float* dw, float* db, float* k, int64_t rows,
                                        int64_t C, int64_t inner, double eps) {
  __shared__ double scratch[kWarp];
  const int64_t c = blockIdx.x, m = rows * inner;
  const double mu = mean[c];
  double sg = 0.0, sgx = 0.0;
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
    const int64_t at = ChannelElement(i, c, C, inner);
    sg += g[at];
    sgx += static_cast<double>(g[at]) * (x[at] - mu);
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

// dx[i] = g[i] * k0 + (x[i] - mean[c]) * k1 + k2, the k of channel c.
__global__ void BatchNormGradApplyKernel(const float* x, const float* g, const float* mean, const float* k,
                                         float* dx, int64_t n, int64_t C, int64_t inner) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const int64_t c = (i / inner) % C;
    const float* kc = k + 3 * c;
    dx[i] = __fadd_rn(__fadd_rn(__fmul_rn(g[i], kc[0]), __fmul_rn(__fsub_rn(x[i], mean[c]), kc[1])), kc[2]);
  }
}

}  // namespace cuda
}  // namespace needle
