// needle CUDA backend: error handling, host-side validation, strided-view metadata and the
// device helpers shared by every kernel family (included by ndarray_backend_cuda.cu only).
//
// Validation mirrors python/needle/backend_ndarray/ndarray_backend_numpy.py word for word:
// std::invalid_argument -> ValueError, std::out_of_range -> IndexError (pybind11 translates).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace needle {
namespace cuda {

// ------------------------------------------------------------------------------------ errors

// Throws std::runtime_error (-> RuntimeError) naming the call site and the CUDA error.
// cudaGetLastError() clears the sticky "last error" so that a later launch check does not
// report this failure a second time.
#define CUDA_CHECK(expr)                                                                     \
  do {                                                                                       \
    const cudaError_t needle_err_ = (expr);                                                  \
    if (needle_err_ != cudaSuccess) {                                                        \
      (void)cudaGetLastError();                                                              \
      throw std::runtime_error(std::string("cuda: ") + #expr + " failed at " + __FILE__ +   \
                               ":" + std::to_string(__LINE__) + ": " +                       \
                               cudaGetErrorString(needle_err_));                             \
    }                                                                                        \
  } while (0)

// After every kernel launch: configuration errors surface here, execution errors at the
// next synchronising call (to_numpy, synchronize).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// ------------------------------------------------------------------------------------ the stream

// Every launch, async copy and stream-ordered allocation of this backend goes to this stream:
// a created one, because work on the legacy default stream cannot be captured into a CUDA graph
// (cuda_graph.cuh). It is a blocking stream, so the legacy stream (to_numpy's synchronous copy,
// other libraries) still waits for its work, as before. Created once, never destroyed.
inline cudaStream_t Stream() {
  static const cudaStream_t stream = [] {
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamDefault));
    return s;
  }();
  return stream;
}

// ------------------------------------------------------------------------------------ launches

// "needle::cuda::SgemmKernel<...>", from the signature of this function's instantiation.
template <auto Kernel>
const char* KernelName() {
  static const std::string name = [] {
    const std::string sig = __PRETTY_FUNCTION__;
    const size_t at = sig.find("Kernel = ");
    if (at == std::string::npos) return sig;
    const size_t from = at + 9;
    return sig.substr(from, sig.find_last_of(";]") - from);
  }();
  return name.c_str();
}

// Every kernel launch of this backend is written
//     Launch<Kernel>(grid, block, args...);     e.g.  Launch<SgemmKernel<T, LA, LB>>(grid, 256, g);
// and never Kernel<<<grid, block>>>(args...). Under nvcc it is that launch on Stream(); under g++
// with NEEDLE_CUDA_EMULATOR (tests/cuda_emu) it runs the kernel on the CPU emulator, so one
// source serves both compilers. The launch is checked at once: a bad configuration, or a
// fault the emulator detects, raises RuntimeError naming the kernel.
template <auto Kernel, typename... Args>
void Launch(dim3 grid, dim3 block, Args... args) {
#ifdef NEEDLE_CUDA_EMULATOR
  try {
    cuda_emu::LaunchOn(Stream(), KernelName<Kernel>(), grid, block, Kernel, args...);
  } catch (const cuda_emu::KernelError& e) {
    throw std::runtime_error(std::string("cuda emulator: ") + e.what());
  }
#else
  Kernel<<<grid, block, 0, Stream()>>>(args...);
#endif
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("cuda: launch of ") + KernelName<Kernel>() + " with grid (" +
                             std::to_string(grid.x) + ", " + std::to_string(grid.y) + ", " +
                             std::to_string(grid.z) + "), block (" + std::to_string(block.x) + ", " +
                             std::to_string(block.y) + ", " + std::to_string(block.z) +
                             ") failed: " + cudaGetErrorString(err));
}

// Python-style tuple text, so that messages read exactly like the numpy backend's.
inline std::string Tup(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  if (v.size() == 1) s += ",";
  return s + ")";
}

inline std::string Str(int64_t v) { return std::to_string(v); }

// ------------------------------------------------------------------------------------ validation

// a * b, raising ValueError on int64 overflow (shapes come straight from Python).
inline int64_t CheckedMul(const char* fn, int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    throw std::invalid_argument(std::string(fn) + ": size " + Str(a) + " x " + Str(b) +
                                " overflows int64");
  return r;
}

// Number of elements of `shape` (1 for shape ()); callers check non-negativity first.
inline int64_t Prod(const char* fn, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n = CheckedMul(fn, n, s);
  return n;
}

// The view rule of docs/backends.md: every dim >= 0, and a non-empty view stays inside
// [0, buf_size). __int128 keeps absurd strides from wrapping around.
inline void CheckView(const char* fn, int64_t buf_size, const std::vector<int64_t>& shape,
                      const std::vector<int64_t>& strides, int64_t offset) {
  if (shape.size() != strides.size())
    throw std::invalid_argument(std::string(fn) + ": shape " + Tup(shape) + " and strides " +
                                Tup(strides) + " differ in length");
  for (int64_t s : shape)
    if (s < 0)
      throw std::invalid_argument(std::string(fn) + ": negative dimension in shape " + Tup(shape));
  for (int64_t s : shape)
    if (s == 0) return;
  __int128 lo = offset, hi = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    const __int128 span = static_cast<__int128>(shape[i] - 1) * strides[i];
    if (span < 0) lo += span; else hi += span;
  }
  if (lo < 0 || hi >= buf_size) {
    auto clamp = [](__int128 v) -> std::string {
      const __int128 big = std::numeric_limits<int64_t>::max();
      if (v > big || v < -big) return v > 0 ? "huge" : "-huge";
      return std::to_string(static_cast<int64_t>(v));
    };
    throw std::out_of_range(std::string(fn) + ": view shape " + Tup(shape) + " strides " +
                            Tup(strides) + " offset " + Str(offset) + " reaches elements [" +
                            clamp(lo) + ", " + clamp(hi) + "] of a buffer of " + Str(buf_size));
  }
}

// A compact operand must hold at least `need` elements.
inline void CheckSize(const char* fn, const char* what, int64_t have, int64_t need) {
  if (have < need)
    throw std::invalid_argument(std::string(fn) + ": " + what + " holds " + Str(have) +
                                " elements, needs " + Str(need));
}

// ------------------------------------------------------------------------------------ views

// Shape/strides of a strided view, passed to kernels by value. Views are coalesced on the host
// first (size-1 dims dropped, contiguous neighbours merged), so almost every real view fits
// in kInlineDims; longer ones live in a small device buffer (`ext`: shape then strides).
constexpr int kInlineDims = 8;

struct ViewMeta {
  int32_t ndim;
  int64_t offset;
  int64_t shape[kInlineDims];
  int64_t strides[kInlineDims];
  const int64_t* ext;  // device [shape..., strides...] when ndim > kInlineDims, else nullptr
};

// Drops size-1 dims and merges dim d into d+1 when stride[d] == shape[d+1] * stride[d+1];
// the row-major element -> buffer-offset map is unchanged (also for 0 and negative strides).
inline void Coalesce(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                     std::vector<int64_t>* out_shape, std::vector<int64_t>* out_strides) {
  out_shape->clear();
  out_strides->clear();
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    if (!out_shape->empty() && out_strides->back() == shape[i] * strides[i]) {
      out_shape->back() *= shape[i];
      out_strides->back() = strides[i];
    } else {
      out_shape->push_back(shape[i]);
      out_strides->push_back(strides[i]);
    }
  }
}

// ------------------------------------------------------------------------------------ device helpers

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Buffer offset of row-major element i of a view (innermost dim decoded first).
template <typename IdxT>
__device__ __forceinline__ int64_t ViewOffset(const ViewMeta& v, IdxT i) {
  int64_t off = v.offset;
  if (v.ext == nullptr) {
#pragma unroll
    for (int d = kInlineDims - 1; d >= 0; --d) {
      if (d < v.ndim) {
        const IdxT n = static_cast<IdxT>(v.shape[d]);
        const IdxT q = i / n;
        off += static_cast<int64_t>(i - q * n) * v.strides[d];
        i = q;
      }
    }
  } else {
    for (int d = v.ndim - 1; d >= 0; --d) {
      const IdxT n = static_cast<IdxT>(v.ext[d]);
      const IdxT q = i / n;
      off += static_cast<int64_t>(i - q * n) * v.ext[v.ndim + d];
      i = q;
    }
  }
  return off;
}

// Whether view element i is the last, in row-major order, of the elements that a stride-0 dim
// maps to its buffer offset: a setitem into a broadcast view then keeps numpy's "last write
// wins" instead of whichever thread happens to write last.
template <typename IdxT>
__device__ __forceinline__ bool LastAlongZeroStrides(const ViewMeta& v, IdxT i) {
  const int64_t* shape = v.ext != nullptr ? v.ext : v.shape;
  const int64_t* strides = v.ext != nullptr ? v.ext + v.ndim : v.strides;
  for (int d = v.ndim - 1; d >= 0; --d) {
    const IdxT n = static_cast<IdxT>(shape[d]);
    const IdxT q = i / n;
    if (strides[d] == 0 && i - q * n != n - 1) return false;
    i = q;
  }
  return true;
}

// numpy semantics: max propagates NaN (fmaxf would drop it).
__device__ __forceinline__ int64_t MaxI64(int64_t a, int64_t b) { return a > b ? a : b; }
__device__ __forceinline__ int64_t MinI64(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ float NanMax(float a, float b) { return (a > b || a != a) ? a : b; }

struct SumOp {
  __device__ __forceinline__ static float Identity() { return 0.0f; }
  __device__ __forceinline__ static float Combine(float a, float b) { return a + b; }
};

struct MaxOp {
  __device__ __forceinline__ static float Identity() { return -INFINITY; }
  __device__ __forceinline__ static float Combine(float a, float b) { return NanMax(a, b); }
};

// Butterfly reduction: every lane ends with the warp's result. All 32 lanes must call it.
template <typename Op>
__device__ __forceinline__ float WarpReduce(float v) {
#pragma unroll
  for (int delta = kWarp / 2; delta > 0; delta /= 2)
    v = Op::Combine(v, __shfl_xor_sync(kFullMask, v, delta));
  return v;
}

// Block-wide reduction (blockDim.x a multiple of 32, at most 1024): every thread gets the
// result. `scratch` holds 32 floats of shared memory; the trailing barrier lets callers reuse
// it straight away.
template <typename Op>
__device__ __forceinline__ float BlockReduce(float v, float* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
  v = WarpReduce<Op>(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < nwarps ? scratch[lane] : Op::Identity();
  r = WarpReduce<Op>(r);
  __syncthreads();
  return r;
}

}  // namespace cuda
}  // namespace needle
