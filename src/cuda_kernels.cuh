// needle CUDA backend: element-wise, strided-view, reduction and softmax kernels (FillKernel:
// ndarray_backend_cuda.cu; pooling and training: cuda_nn_kernels.cuh). Every kernel here is a
// template, so any translation unit may include this header. Launch configurations live in
// cuda_launch.cuh; every kernel is grid-stride, so any grid size is correct. Argument order:
// inputs, then out, then sizes.
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
struct GtOp { __device__ float operator()(float x, float y) const { return x > y ? 1.0f : 0.0f; } };

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

}  // namespace cuda
}  // namespace needle
