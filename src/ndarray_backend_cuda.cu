// needle CUDA backend: the function table of docs/backends.md on an NVIDIA GPU (FP32; TF32
// tensor cores for GEMMs only when NEEDLE_CUDA_TF32=1).
//
// Argument order, always: inputs, then out, then sizes/params. Letters: N batch, H/W spatial,
// C channels, kh/kw kernel, sh/sw stride, ph/pw padding, m/n/p matmul sizes ((m,n) @ (n,p)).
// Buffers are flat float32 `Array`s in device memory; NDArray (Python) owns all shape / stride
// logic and passes explicit (shape, strides, offset) views to compact / setitem / scatter_add.
//
// Layout: header comment -> helpers (cuda_common.cuh: CUDA_CHECK, validation, view metadata;
// cuda_memory.cuh: device discovery, allocator, uploads, Array) -> kernels (cuda_kernels.cuh;
// cuda_gemm.cuh FP32 SGEMM; cuda_gemm_tf32.cuh tensor cores) -> launchers (cuda_launch.cuh,
// cuda_gemm_launch.cuh, the small pooling / training ones below) -> this file: the entry points
// (validation, then a launcher) and the pybind11 bindings.
// Every argument is validated on the host before anything is launched (ValueError / IndexError
// with the numpy backend's messages); every launch goes through Launch<Kernel>() (cuda_common.cuh),
// which checks it; CUDA errors become RuntimeError with file:line. All work is queued on Stream() (cuda_common.cuh):
// nothing here waits for the GPU except to_numpy and synchronize. Design: docs/cuda.md.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_common.cuh"
#include "cuda_depthwise.cuh"
#include "cuda_gemm_launch.cuh"
#include "cuda_graph.cuh"
#include "cuda_kernels.cuh"
#include "cuda_launch.cuh"
#include "cuda_memory.cuh"
#include "cuda_winograd.cuh"

namespace needle {
namespace cuda {

namespace py = pybind11;

constexpr int kTileSize = 8;  // __tile_size__ of the matmul_tiled layout

// ------------------------------------------------------------------------------------ copies and views

py::array_t<float> ToNumpy(const CudaArray& a, const std::vector<int64_t>& shape,
                           const std::vector<int64_t>& strides, int64_t offset) {
  CheckView("to_numpy", a.size, shape, strides, offset);
  py::array_t<float> result(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  const int64_t n = Prod("to_numpy", shape);
  if (n == 0) return result;
  const DeviceView v = MakeView(shape, strides, offset, n);
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  if (v.contiguous()) {
    CUDA_CHECK(cudaMemcpy(result.mutable_data(), a.data + offset, bytes, cudaMemcpyDeviceToHost));
  } else {
    DeviceBuffer tmp(bytes);
    CompactInto(a.data, tmp.as<float>(), v);
    CUDA_CHECK(cudaMemcpy(result.mutable_data(), tmp.as<float>(), bytes, cudaMemcpyDeviceToHost));
  }
  return result;
}

void FromNumpy(py::array_t<float, py::array::c_style | py::array::forcecast> a, CudaArray& out) {
  if (static_cast<int64_t>(a.size()) != out.size)
    throw std::invalid_argument("from_numpy: array of " + Str(a.size()) + " elements into a buffer of " +
                                Str(out.size));
  if (out.size == 0) return;
  UploadAsync(out.data, a.data(), out.size * sizeof(float));
}

void Fill(CudaArray& out, float val) { LaunchFill(out.data, out.size, val); }

void Compact(const CudaArray& a, CudaArray& out, const std::vector<int64_t>& shape,
             const std::vector<int64_t>& strides, int64_t offset) {
  const int64_t n = Prod("compact", shape);
  CheckSize("compact", "out", out.size, n);
  CheckView("compact", a.size, shape, strides, offset);
  DeviceBuffer keep;
  const float* src = Unaliased(a, out, a.size, &keep);
  CompactInto(src, out.data, MakeView(shape, strides, offset, n));
}

void EwiseSetitem(const CudaArray& a, CudaArray& out, const std::vector<int64_t>& shape,
                  const std::vector<int64_t>& strides, int64_t offset) {
  const int64_t n = Prod("ewise_setitem", shape);
  CheckSize("ewise_setitem", "a", a.size, n);
  CheckView("ewise_setitem", out.size, shape, strides, offset);
  if (n == 0) return;
  DeviceBuffer keep;
  const float* src = Unaliased(a, out, n, &keep);
  const DeviceView v = MakeView(shape, strides, offset, n);
  if (v.contiguous()) {
    CUDA_CHECK(cudaMemcpyAsync(out.data + offset, src, n * sizeof(float), cudaMemcpyDeviceToDevice, Stream()));
  } else {
    LaunchView(ViewOp::kSetitem, src, 0.0f, out.data, v);
  }
}

void ScalarSetitem(int64_t size, float val, CudaArray& out, const std::vector<int64_t>& shape,
                   const std::vector<int64_t>& strides, int64_t offset) {
  if (size != Prod("scalar_setitem", shape))
    throw std::invalid_argument("scalar_setitem: size " + Str(size) + " != prod" + Tup(shape));
  CheckView("scalar_setitem", out.size, shape, strides, offset);
  if (size == 0) return;
  const DeviceView v = MakeView(shape, strides, offset, size);
  if (v.contiguous())
    LaunchFill(out.data + offset, size, val);
  else
    LaunchView(ViewOp::kScalarSetitem, nullptr, val, out.data, v);
}

void ScatterAdd(const CudaArray& a, CudaArray& out, const std::vector<int64_t>& shape,
                const std::vector<int64_t>& strides, int64_t offset) {
  const int64_t n = Prod("scatter_add", shape);
  CheckSize("scatter_add", "a", a.size, n);
  CheckView("scatter_add", out.size, shape, strides, offset);
  if (n == 0) return;
  DeviceBuffer keep;
  const float* src = Unaliased(a, out, n, &keep);
  LaunchView(ViewOp::kScatterAdd, src, 0.0f, out.data, MakeView(shape, strides, offset, n));
}

// ------------------------------------------------------------------------------------ element-wise

template <typename Op>
void Ewise(const char* fn, const CudaArray& a, const CudaArray& b, CudaArray& out) {
  CheckSize(fn, "a", a.size, out.size);
  CheckSize(fn, "b", b.size, out.size);
  LaunchBinary(a.data, b.data, out.data, out.size, Op{});
}

template <typename Op>
void Scalar(const char* fn, const CudaArray& a, float val, CudaArray& out) {
  CheckSize(fn, "a", a.size, out.size);
  LaunchUnary(a.data, out.data, out.size, WithScalar<Op>{Op{}, val});
}

// a ** val with numpy's special exponents (np.power takes these paths for a scalar exponent).
void ScalarPower(const CudaArray& a, float val, CudaArray& out) {
  CheckSize("scalar_power", "a", a.size, out.size);
  if (val == 0.5f)
    LaunchUnary(a.data, out.data, out.size, SqrtOp{});
  else if (val == 2.0f)
    LaunchUnary(a.data, out.data, out.size, SquareOp{});
  else if (val == -1.0f)
    LaunchUnary(a.data, out.data, out.size, ReciprocalOp{});
  else if (val == 1.0f)
    LaunchUnary(a.data, out.data, out.size, IdentityOp{});
  else
    LaunchUnary(a.data, out.data, out.size, WithScalar<PowOp>{PowOp{}, val});  // powf(x, 0) == 1 already
}

template <typename Op>
void Unary(const char* fn, const CudaArray& a, CudaArray& out) {
  CheckSize(fn, "a", a.size, out.size);
  LaunchUnary(a.data, out.data, out.size, Op{});
}

// ------------------------------------------------------------------------------------ matmul

void CheckMNP(const char* fn, int64_t m, int64_t n, int64_t p) {
  if (m < 0 || n < 0 || p < 0)
    throw std::invalid_argument(std::string(fn) + ": sizes must be >= 0, got m=" + Str(m) + " n=" + Str(n) +
                                " p=" + Str(p));
  if (m > INT_MAX || n > INT_MAX || p > INT_MAX)
    throw std::invalid_argument(std::string(fn) + ": sizes must be < 2^31, got m=" + Str(m) + " n=" + Str(n) +
                                " p=" + Str(p));
}

// The operands and sizes of a GEMM launch; offsets, batch strides and vector flags stay 0.
GemmArgs BaseGemmArgs(const CudaArray& a, const CudaArray& b, CudaArray& out, int64_t batch,
                      int64_t m, int64_t n, int64_t p) {
  GemmArgs g{};
  g.a = a.data;
  g.b = b.data;
  g.c = out.data;
  g.batch = batch;
  g.m = static_cast<int>(m);
  g.n = static_cast<int>(n);
  g.p = static_cast<int>(p);
  return g;
}

void Gemm(const CudaArray& a, const CudaArray& b, CudaArray& out, int64_t batch, int64_t m, int64_t n,
          int64_t p, int64_t a_offset, int64_t a_batch_stride, bool a_transposed, int64_t b_offset,
          int64_t b_batch_stride, bool b_transposed) {
  CheckMNP("gemm", m, n, p);
  if (batch < 0) throw std::invalid_argument("gemm: batch must be >= 0, got " + Str(batch));
  CheckSize("gemm", "out", out.size, CheckedMul("gemm", CheckedMul("gemm", batch, m), p));
  const std::vector<int64_t> a_shape{batch, m, n}, b_shape{batch, n, p};
  const std::vector<int64_t> a_strides = a_transposed ? std::vector<int64_t>{a_batch_stride, 1, m}
                                                      : std::vector<int64_t>{a_batch_stride, n, 1};
  const std::vector<int64_t> b_strides = b_transposed ? std::vector<int64_t>{b_batch_stride, 1, n}
                                                      : std::vector<int64_t>{b_batch_stride, p, 1};
  CheckView("gemm", a.size, a_shape, a_strides, a_offset);
  CheckView("gemm", b.size, b_shape, b_strides, b_offset);
  if (batch * m * p == 0) return;
  GemmArgs g = BaseGemmArgs(a, b, out, batch, m, n, p);
  g.a_offset = a_offset;
  g.a_batch_stride = a_batch_stride;
  g.b_offset = b_offset;
  g.b_batch_stride = b_batch_stride;
  // float4 loads need every quad start 16-byte aligned: base, offset, batch stride and the
  // leading dimension (the stored row length) all multiples of 4 floats.
  const int64_t lda = a_transposed ? m : n, ldb = b_transposed ? n : p;
  g.vec_a = Aligned16(a.data) && a_offset % 4 == 0 && a_batch_stride % 4 == 0 && lda % 4 == 0;
  g.vec_b = Aligned16(b.data) && b_offset % 4 == 0 && b_batch_stride % 4 == 0 && ldb % 4 == 0;
  g.vec_c = Aligned16(out.data) && p % 4 == 0;
  if (a_transposed && b_transposed)
    LaunchGemm<Layout::kTransposed, Layout::kTransposed>(g);
  else if (a_transposed)
    LaunchGemm<Layout::kTransposed, Layout::kRowMajor>(g);
  else if (b_transposed)
    LaunchGemm<Layout::kRowMajor, Layout::kTransposed>(g);
  else
    LaunchGemm<Layout::kRowMajor, Layout::kRowMajor>(g);
}

// Implicit GEMM: out (m x p) = A @ opB with A the strided view (a_shape, a_strides, a_offset) of
// `a`, its first a_row_dims dims the rows (e.g. an im2col view N,Ho,Wo | KH,KW,C), read in place.
void GemmStridedA(const CudaArray& a, const CudaArray& b, CudaArray& out, int64_t m, int64_t n, int64_t p,
                  const std::vector<int64_t>& a_shape, const std::vector<int64_t>& a_strides, int64_t a_offset,
                  int64_t a_row_dims, int64_t b_offset, bool b_transposed) {
  const char* fn = "gemm_strided_a";
  CheckMNP(fn, m, n, p);
  const int64_t ndim = static_cast<int64_t>(a_shape.size());
  if (a_row_dims < 1 || a_row_dims > 3 || ndim - a_row_dims < 1 || ndim - a_row_dims > 3)
    throw std::invalid_argument(std::string(fn) + ": A view shape " + Tup(a_shape) + " split after " +
                                Str(a_row_dims) + " dims: need 1 to 3 row dims and 1 to 3 column dims");
  const int64_t rows = Prod(fn, {a_shape.begin(), a_shape.begin() + a_row_dims});
  const int64_t cols = Prod(fn, {a_shape.begin() + a_row_dims, a_shape.end()});
  if (rows != m || cols != n)
    throw std::invalid_argument(std::string(fn) + ": A view shape " + Tup(a_shape) + " split after " +
                                Str(a_row_dims) + " dims is " + Str(rows) + " x " + Str(cols) +
                                ", expected m x n = " + Str(m) + " x " + Str(n));
  CheckSize(fn, "out", out.size, CheckedMul(fn, m, p));
  CheckView(fn, a.size, a_shape, a_strides, a_offset);
  CheckView(fn, b.size, {n, p}, b_transposed ? std::vector<int64_t>{1, n} : std::vector<int64_t>{p, 1}, b_offset);
  if (m * p == 0) return;
  if (n == 0) {  // an empty sum; the view may hold 0-length dims the index maps cannot take
    LaunchFill(out.data, m * p, 0.0f);
    return;
  }
  GemmArgs g = BaseGemmArgs(a, b, out, 1, m, n, p);
  g.a_offset = a_offset;
  g.b_offset = b_offset;
  g.vec_b = Aligned16(b.data) && b_offset % 4 == 0 && (b_transposed ? n : p) % 4 == 0;
  g.vec_c = Aligned16(out.data) && p % 4 == 0;
  const size_t row_dims = static_cast<size_t>(a_row_dims);
  if (b_transposed)
    LaunchGemmStridedA<Layout::kTransposed>(g, a_shape, a_strides, row_dims);
  else
    LaunchGemmStridedA<Layout::kRowMajor>(g, a_shape, a_strides, row_dims);
}

void Matmul(const CudaArray& a, const CudaArray& b, CudaArray& out, int64_t m, int64_t n, int64_t p) {
  CheckMNP("matmul", m, n, p);
  CheckSize("matmul", "a", a.size, CheckedMul("matmul", m, n));
  CheckSize("matmul", "b", b.size, CheckedMul("matmul", n, p));
  CheckSize("matmul", "out", out.size, CheckedMul("matmul", m, p));
  Gemm(a, b, out, 1, m, n, p, 0, 0, false, 0, 0, false);
}

// Every element of out[:m*p] is written (n == 0 gives zeros), which is the "zero out first".
void MatmulTiled(const CudaArray& a, const CudaArray& b, CudaArray& out, int64_t m, int64_t n, int64_t p) {
  CheckMNP("matmul_tiled", m, n, p);
  if (m % kTileSize || n % kTileSize || p % kTileSize)
    throw std::invalid_argument("matmul_tiled: m=" + Str(m) + " n=" + Str(n) + " p=" + Str(p) +
                                " must be multiples of the tile size " + Str(kTileSize));
  CheckSize("matmul_tiled", "a", a.size, CheckedMul("matmul_tiled", m, n));
  CheckSize("matmul_tiled", "b", b.size, CheckedMul("matmul_tiled", n, p));
  CheckSize("matmul_tiled", "out", out.size, CheckedMul("matmul_tiled", m, p));
  if (m * p == 0) return;
  GemmArgs g = BaseGemmArgs(a, b, out, 1, m, n, p);
  g.vec_a = Aligned16(a.data);  // tile rows are 8 floats: every quad is aligned
  g.vec_b = Aligned16(b.data);
  g.vec_c = Aligned16(out.data);
  LaunchSgemm<Layout::kTiled8, Layout::kTiled8>(g);
}

// ------------------------------------------------------------------------------------ reductions

void CheckRowSize(const char* fn, int64_t row_size) {
  if (row_size <= 0)
    throw std::invalid_argument(std::string(fn) + ": row size must be > 0, got " + Str(row_size));
}

void ReduceSum(const CudaArray& a, CudaArray& out, int64_t reduce_size) {
  if (reduce_size == 0) {  // empty sums
    LaunchFill(out.data, out.size, 0.0f);
    return;
  }
  CheckRowSize("reduce_sum", reduce_size);
  CheckSize("reduce_sum", "a", a.size, CheckedMul("reduce_sum", out.size, reduce_size));
  LaunchReduce<SumOp>(a.data, out.data, out.size, reduce_size);
}

void ReduceMax(const CudaArray& a, CudaArray& out, int64_t reduce_size) {
  CheckRowSize("reduce_max", reduce_size);
  CheckSize("reduce_max", "a", a.size, CheckedMul("reduce_max", out.size, reduce_size));
  LaunchReduce<MaxOp>(a.data, out.data, out.size, reduce_size);
}

// ------------------------------------------------------------------------------------ softmax

void CheckWholeRows(const char* fn, int64_t size, int64_t row_size) {
  if (row_size <= 0 || size % row_size)
    throw std::invalid_argument(std::string(fn) + ": buffer of " + Str(size) + " is not a whole number of rows of " +
                                Str(row_size));
}

template <bool kLog>
void Softmax(const CudaArray& a, CudaArray& out, int64_t row_size) {
  const char* fn = kLog ? "log_softmax_rows" : "softmax_rows";
  CheckWholeRows(fn, a.size, row_size);
  CheckSize(fn, "out", out.size, a.size);
  LaunchSoftmax<kLog>(a.data, out.data, a.size / row_size, row_size);
}

void SoftmaxBackward(const CudaArray& y, const CudaArray& g, CudaArray& out, int64_t row_size) {
  const char* fn = "softmax_rows_backward";
  CheckWholeRows(fn, y.size, row_size);
  CheckSize(fn, "out_grad", g.size, y.size);
  CheckSize(fn, "out", out.size, y.size);
  const int64_t rows = y.size / row_size;
  if (rows == 0) return;
  Launch<SoftmaxBackwardWarpKernel>(GridFor(rows, kThreads / kWarp), kThreads, y.data, g.data, out.data, rows,
                                    row_size);
}

// ------------------------------------------------------------------------------------ pooling

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

PoolDims MakePoolDims(const char* fn, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw,
                      int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  if (std::min({N, H, W, C}) < 0 || std::min({kh, kw, sh, sw}) < 1 || std::min(ph, pw) < 0)
    throw std::invalid_argument(std::string(fn) + ": bad sizes N=" + Str(N) + " H=" + Str(H) + " W=" + Str(W) +
                                " C=" + Str(C) + " kernel=(" + Str(kh) + "," + Str(kw) + ") stride=(" +
                                Str(sh) + "," + Str(sw) + ") padding=(" + Str(ph) + "," + Str(pw) + ")");
  PoolDims d{};
  d.N = N; d.H = H; d.W = W; d.C = C;
  d.kh = kh; d.kw = kw; d.sh = sh; d.sw = sw; d.ph = ph; d.pw = pw;
  d.Ho = FloorDiv(H + 2 * ph - kh, sh) + 1;
  d.Wo = FloorDiv(W + 2 * pw - kw, sw) + 1;
  if (d.Ho < 1 || d.Wo < 1)
    throw std::invalid_argument(std::string(fn) + ": kernel (" + Str(kh) + "," + Str(kw) +
                                ") larger than padded input (" + Str(H + 2 * ph) + "," + Str(W + 2 * pw) + ")");
  return d;
}

int64_t OutCount(const PoolDims& d) { return d.N * d.Ho * d.Wo * d.C; }
int64_t InCount(const PoolDims& d) { return d.N * d.H * d.W * d.C; }

void MaxPool2d(const CudaArray& a, CudaArray& out, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = MakePoolDims("max_pool2d", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckSize("max_pool2d", "out", out.size, OutCount(d));
  CheckSize("max_pool2d", "a", a.size, InCount(d));
  if (OutCount(d) == 0) return;
  Launch<MaxPoolKernel>(GridFor(OutCount(d)), kThreads, a.data, out.data, d, OutCount(d));
}

void MaxPool2dBackward(const CudaArray& a, const CudaArray& dout, CudaArray& dinp, int64_t N, int64_t H,
                       int64_t W, int64_t C, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                       int64_t pw) {
  const char* fn = "max_pool2d_backward";
  const PoolDims d = MakePoolDims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckSize(fn, "dout", dout.size, OutCount(d));
  CheckSize(fn, "dinp", dinp.size, InCount(d));
  CheckSize(fn, "a", a.size, InCount(d));
  if (InCount(d) == 0) return;
  CUDA_CHECK(cudaMemsetAsync(dinp.data, 0, InCount(d) * sizeof(float), Stream()));
  Launch<MaxPoolBackwardKernel>(GridFor(OutCount(d)), kThreads, a.data, dout.data, dinp.data, d, OutCount(d));
}

void AvgPool2d(const CudaArray& a, CudaArray& out, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = MakePoolDims("avg_pool2d", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckSize("avg_pool2d", "out", out.size, OutCount(d));
  CheckSize("avg_pool2d", "a", a.size, InCount(d));
  if (OutCount(d) == 0) return;
  Launch<AvgPoolKernel>(GridFor(OutCount(d)), kThreads, a.data, out.data, d, OutCount(d));
}

void AvgPool2dBackward(const CudaArray& dout, CudaArray& dinp, int64_t N, int64_t H, int64_t W, int64_t C,
                       int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const char* fn = "avg_pool2d_backward";
  const PoolDims d = MakePoolDims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckSize(fn, "dout", dout.size, OutCount(d));
  CheckSize(fn, "dinp", dinp.size, InCount(d));
  if (InCount(d) == 0) return;
  Launch<AvgPoolBackwardKernel>(GridFor(InCount(d)), kThreads, dout.data, dinp.data, d, InCount(d));
}

// ------------------------------------------------------------------------------------ depthwise conv

void DepthwiseConv2d(const CudaArray& a, const CudaArray& w, CudaArray& out, int64_t N, int64_t H, int64_t W,
                     int64_t C, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                     int64_t dh, int64_t dw) {
  const char* fn = "depthwise_conv2d";
  const DepthwiseDims d = MakeDepthwiseDims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw);
  CheckSize(fn, "a", a.size, N * H * W * C);
  CheckSize(fn, "w", w.size, kh * kw * C);
  CheckSize(fn, "out", out.size, N * d.Ho * d.Wo * C);
  LaunchDepthwiseForward(a.data, w.data, out.data, d);
}

void DepthwiseConv2dBackwardInput(const CudaArray& dout, const CudaArray& w, CudaArray& dinp, int64_t N,
                                  int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw, int64_t sh,
                                  int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  const char* fn = "depthwise_conv2d_backward_input";
  const DepthwiseDims d = MakeDepthwiseDims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw);
  CheckSize(fn, "dout", dout.size, N * d.Ho * d.Wo * C);
  CheckSize(fn, "w", w.size, kh * kw * C);
  CheckSize(fn, "dinp", dinp.size, N * H * W * C);
  LaunchDepthwiseInputGrad(dout.data, w.data, dinp.data, d);
}

void DepthwiseConv2dBackwardWeight(const CudaArray& a, const CudaArray& dout, CudaArray& dweight, int64_t N,
                                   int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw, int64_t sh,
                                   int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  const char* fn = "depthwise_conv2d_backward_weight";
  const DepthwiseDims d = MakeDepthwiseDims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw);
  CheckSize(fn, "a", a.size, N * H * W * C);
  CheckSize(fn, "dout", dout.size, N * d.Ho * d.Wo * C);
  CheckSize(fn, "dweight", dweight.size, kh * kw * C);
  LaunchDepthwiseWeightGrad(a.data, dout.data, dweight.data, d);
}

// ------------------------------------------------------------------------------------ Winograd transforms

WinogradDims MakeWinogradDims(const char* fn, int64_t N, int64_t H, int64_t W, int64_t C, int64_t ph,
                              int64_t pw, int64_t m, int64_t alpha, int64_t th, int64_t tw) {
  if (std::min({N, H, W, C, ph, pw, th, tw}) < 0 || m < 1 || alpha < m || alpha > kWinogradMaxAlpha)
    throw std::invalid_argument(std::string(fn) + ": bad sizes N=" + Str(N) + " H=" + Str(H) + " W=" +
                                Str(W) + " C=" + Str(C) + " m=" + Str(m) + " alpha=" + Str(alpha));
  return WinogradDims{N, H, W, C, ph, pw, m, alpha, th, tw};
}

void WinogradInputTransform(const CudaArray& a, const CudaArray& bt, CudaArray& out, int64_t N, int64_t H,
                            int64_t W, int64_t C, int64_t ph, int64_t pw, int64_t m, int64_t alpha, int64_t th,
                            int64_t tw) {
  const char* fn = "winograd_input_transform";
  const WinogradDims d = MakeWinogradDims(fn, N, H, W, C, ph, pw, m, alpha, th, tw);
  CheckSize(fn, "a", a.size, N * H * W * C);
  CheckSize(fn, "out", out.size, alpha * alpha * N * th * tw * C);
  LaunchWinogradInputTransform(a.data, CopyWinogradMatrix(fn, bt, alpha, alpha), out.data, d);
}

void WinogradInputTransformAdjoint(const CudaArray& dv, const CudaArray& bt, CudaArray& dinp, int64_t N,
                                   int64_t H, int64_t W, int64_t C, int64_t ph, int64_t pw, int64_t m,
                                   int64_t alpha, int64_t th, int64_t tw) {
  const char* fn = "winograd_input_transform_adjoint";
  const WinogradDims d = MakeWinogradDims(fn, N, H, W, C, ph, pw, m, alpha, th, tw);
  CheckSize(fn, "dv", dv.size, alpha * alpha * N * th * tw * C);
  CheckSize(fn, "dinp", dinp.size, N * H * W * C);
  LaunchWinogradInputAdjoint(dv.data, CopyWinogradMatrix(fn, bt, alpha, alpha), dinp.data, d);
}

void WinogradOutputTransform(const CudaArray& mm, const CudaArray& at, CudaArray& out, int64_t N, int64_t H,
                             int64_t W, int64_t C, int64_t m, int64_t alpha, int64_t th, int64_t tw) {
  const char* fn = "winograd_output_transform";
  const WinogradDims d = MakeWinogradDims(fn, N, H, W, C, 0, 0, m, alpha, th, tw);
  CheckSize(fn, "mm", mm.size, alpha * alpha * N * th * tw * C);
  CheckSize(fn, "out", out.size, N * H * W * C);
  LaunchWinogradOutputTransform(mm.data, CopyWinogradMatrix(fn, at, m, alpha), out.data, d);
}

void WinogradOutputTransformAdjoint(const CudaArray& dout, const CudaArray& at, CudaArray& dm, int64_t N,
                                    int64_t H, int64_t W, int64_t C, int64_t m, int64_t alpha, int64_t th,
                                    int64_t tw) {
  const char* fn = "winograd_output_transform_adjoint";
  const WinogradDims d = MakeWinogradDims(fn, N, H, W, C, 0, 0, m, alpha, th, tw);
  CheckSize(fn, "dout", dout.size, N * H * W * C);
  CheckSize(fn, "dm", dm.size, alpha * alpha * N * th * tw * C);
  LaunchWinogradOutputAdjoint(dout.data, CopyWinogradMatrix(fn, at, m, alpha), dm.data, d);
}

// out = op(a, view of b); a and out compact, the view validated against b's buffer.
template <typename Op>
void EwiseStrided(const char* fn, const CudaArray& a, const CudaArray& b, CudaArray& out,
                  const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, int64_t offset) {
  const int64_t n = Prod(fn, shape);
  CheckSize(fn, "a", a.size, n);
  CheckSize(fn, "out", out.size, n);
  CheckView(fn, b.size, shape, strides, offset);
  if (n == 0) return;
  DeviceBuffer keep;
  const float* src = Unaliased(b, out, b.size, &keep);
  LaunchEwiseView<Op>(a.data, src, out.data, MakeView(shape, strides, offset, n));
}

template <typename Op>
void BindEwiseStrided(py::module_& m, const char* name) {
  m.def(name,
        [name](const CudaArray& a, const CudaArray& b, CudaArray& out, const std::vector<int64_t>& shape,
               const std::vector<int64_t>& strides, int64_t offset) {
          EwiseStrided<Op>(name, a, b, out, shape, strides, offset);
        },
        py::arg("a"), py::arg("b"), py::arg("out"), py::arg("shape"), py::arg("strides"), py::arg("offset"));
}

void SgdUpdate(const CudaArray& w, const CudaArray& g, const CudaArray& u, CudaArray& w_out, CudaArray& u_out,
               double momentum, double dampening, double neg_lr, double weight_decay, bool has_u) {
  const char* fn = "sgd_update";
  const int64_t n = w_out.size;
  CheckSize(fn, "w", w.size, n);
  CheckSize(fn, "grad", g.size, n);
  CheckSize(fn, "u_out", u_out.size, n);
  if (has_u) CheckSize(fn, "u", u.size, n);
  LaunchSgdUpdate(w.data, g.data, u.data, w_out.data, u_out.data, n, momentum, dampening, neg_lr, weight_decay,
                  has_u);
}

// ------------------------------------------------------------------------------------ batch norm

int64_t CheckNormSizes(const char* fn, int64_t rows, int64_t C, int64_t inner) {
  if (rows < 1 || C < 1 || inner < 1)
    throw std::invalid_argument(std::string(fn) + ": rows, channels and inner must be >= 1, got " + Str(rows) +
                                ", " + Str(C) + ", " + Str(inner));
  if (C > INT_MAX) throw std::invalid_argument(std::string(fn) + ": too many channels, " + Str(C));
  return CheckedMul(fn, CheckedMul(fn, rows, C), inner);
}

void BatchNormForward(const CudaArray& x, const CudaArray& w, const CudaArray& b, CudaArray& out,
                      CudaArray& mean, CudaArray& var, int64_t rows, int64_t C, int64_t inner, double eps) {
  const char* fn = "batch_norm_forward";
  const int64_t n = CheckNormSizes(fn, rows, C, inner);
  CheckSize(fn, "x", x.size, n);
  CheckSize(fn, "out", out.size, n);
  CheckSize(fn, "weight", w.size, C);
  CheckSize(fn, "bias", b.size, C);
  CheckSize(fn, "mean", mean.size, C);
  CheckSize(fn, "var", var.size, C);
  LaunchBatchNormForward(x.data, w.data, b.data, out.data, mean.data, var.data, rows, C, inner, eps);
}

void BatchNormBackward(const CudaArray& x, const CudaArray& g, const CudaArray& w, const CudaArray& mean,
                       const CudaArray& var, CudaArray& dx, CudaArray& dw, CudaArray& db, int64_t rows, int64_t C,
                       int64_t inner, double eps) {
  const char* fn = "batch_norm_backward";
  const int64_t n = CheckNormSizes(fn, rows, C, inner);
  CheckSize(fn, "x", x.size, n);
  CheckSize(fn, "out_grad", g.size, n);
  CheckSize(fn, "dx", dx.size, n);
  CheckSize(fn, "weight", w.size, C);
  CheckSize(fn, "mean", mean.size, C);
  CheckSize(fn, "var", var.size, C);
  CheckSize(fn, "dw", dw.size, C);
  CheckSize(fn, "db", db.size, C);
  LaunchBatchNormBackward(x.data, g.data, w.data, mean.data, var.data, dx.data, dw.data, db.data, rows, C, inner,
                          eps);
}

// Bindings of the element-wise families: (a, b, out), (a, val, out), (a, out).
template <typename Op>
void BindEwise(py::module_& m, const char* name) {
  m.def(name, [name](const CudaArray& a, const CudaArray& b, CudaArray& out) { Ewise<Op>(name, a, b, out); },
        py::arg("a"), py::arg("b"), py::arg("out"));
}

template <typename Op>
void BindScalar(py::module_& m, const char* name) {
  m.def(name, [name](const CudaArray& a, float val, CudaArray& out) { Scalar<Op>(name, a, val, out); },
        py::arg("a"), py::arg("val"), py::arg("out"));
}

template <typename Op>
void BindUnary(py::module_& m, const char* name) {
  m.def(name, [name](const CudaArray& a, CudaArray& out) { Unary<Op>(name, a, out); }, py::arg("a"),
        py::arg("out"));
}

void Synchronize() {
  if (!IsAvailable()) return;  // nothing can be queued without a device
  py::gil_scoped_release release;
  CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace cuda
}  // namespace needle

// ------------------------------------------------------------------------------------ bindings

// The emulator build (tests/cuda_emu) compiles this file again under another module name.
#ifndef NEEDLE_CUDA_MODULE
#define NEEDLE_CUDA_MODULE ndarray_backend_cuda
#endif
PYBIND11_MODULE(NEEDLE_CUDA_MODULE, m) {
  namespace py = pybind11;
  using namespace needle::cuda;
  using py::arg;
  m.doc() = "needle CUDA backend: the flat float32 function table of docs/backends.md";
  m.attr("__tile_size__") = kTileSize;

  // module_local: the emulated build of this file registers the same C++ type in its own module.
  py::class_<CudaArray>(m, "Array", py::module_local(), "A flat float32 buffer of `size` elements in GPU memory.")
      .def(py::init<int64_t>(), arg("size"))
      .def_readonly("size", &CudaArray::size)
      .def("ptr", &CudaArray::ptr, "Device address (an int), the same for every view of the buffer.");

  m.def(
      "wrap_pointer",
      [](uintptr_t address, int64_t size, py::object owner) {
        if (size < 0) throw std::invalid_argument("wrap_pointer: size must be >= 0, got " + Str(size));
        if (address % 16 != 0)  // kernels may read float4
          throw std::invalid_argument("wrap_pointer: device address is not 16-byte aligned");
        return std::make_unique<CudaArray>(CudaArray::External{}, reinterpret_cast<float*>(address),
                                           size);
      },
      arg("address"), arg("size"), arg("owner"), py::keep_alive<0, 3>(),
      "wrap_pointer(address, size, owner): an Array over `size` floats of device memory at "
      "`address` owned by `owner` (kept alive, never freed here): zero-copy DLPack import.");
  m.def("is_available", &IsAvailable, "True if a CUDA device answers.");
  m.def("synchronize", &Synchronize, "Wait for all queued GPU work.");
  BindGraphs(m);  // the `_graphs` submodule (cuda_graph.cuh), outside the function table

  m.def("to_numpy", &ToNumpy, arg("a"), arg("shape"), arg("strides"), arg("offset"));
  m.def("from_numpy", &FromNumpy, arg("a"), arg("out"));
  m.def("fill", &Fill, arg("out"), arg("val"));
  m.def("compact", &Compact, arg("a"), arg("out"), arg("shape"), arg("strides"), arg("offset"));
  m.def("ewise_setitem", &EwiseSetitem, arg("a"), arg("out"), arg("shape"), arg("strides"), arg("offset"));
  m.def("scalar_setitem", &ScalarSetitem, arg("size"), arg("val"), arg("out"), arg("shape"), arg("strides"),
        arg("offset"));
  m.def("scatter_add", &ScatterAdd, arg("a"), arg("out"), arg("shape"), arg("strides"), arg("offset"));

  BindEwise<AddOp>(m, "ewise_add");
  BindEwise<MulOp>(m, "ewise_mul");
  BindEwiseStrided<AddOp>(m, "ewise_add_strided");
  BindEwiseStrided<MulOp>(m, "ewise_mul_strided");
  BindEwise<DivOp>(m, "ewise_div");
  BindEwise<PowOp>(m, "ewise_pow");
  BindEwise<MaximumOp>(m, "ewise_maximum");
  BindEwise<EqOp>(m, "ewise_eq");
  BindEwise<GeOp>(m, "ewise_ge");
  BindScalar<AddOp>(m, "scalar_add");
  BindScalar<MulOp>(m, "scalar_mul");
  BindScalar<DivOp>(m, "scalar_div");
  m.def("scalar_power", &ScalarPower, arg("a"), arg("val"), arg("out"));
  BindScalar<MaximumOp>(m, "scalar_maximum");
  BindScalar<EqOp>(m, "scalar_eq");
  BindScalar<GeOp>(m, "scalar_ge");
  BindUnary<LogOp>(m, "ewise_log");
  BindUnary<ExpOp>(m, "ewise_exp");
  BindUnary<TanhOp>(m, "ewise_tanh");

  m.def("matmul", &Matmul, arg("a"), arg("b"), arg("out"), arg("m"), arg("n"), arg("p"));
  m.def("matmul_tiled", &MatmulTiled, arg("a"), arg("b"), arg("out"), arg("m"), arg("n"), arg("p"));
  m.def("gemm", &Gemm, arg("a"), arg("b"), arg("out"), arg("batch"), arg("m"), arg("n"), arg("p"),
        arg("a_offset"), arg("a_batch_stride"), arg("a_transposed"), arg("b_offset"), arg("b_batch_stride"),
        arg("b_transposed"));
  m.def("gemm_strided_a", &GemmStridedA, arg("a"), arg("b"), arg("out"), arg("m"), arg("n"), arg("p"),
        arg("a_shape"), arg("a_strides"), arg("a_offset"), arg("a_row_dims"), arg("b_offset"), arg("b_transposed"));

  m.def("reduce_sum", &ReduceSum, arg("a"), arg("out"), arg("reduce_size"));
  m.def("reduce_max", &ReduceMax, arg("a"), arg("out"), arg("reduce_size"));
  m.def("softmax_rows", &Softmax<false>, arg("a"), arg("out"), arg("row_size"));
  m.def("log_softmax_rows", &Softmax<true>, arg("a"), arg("out"), arg("row_size"));
  m.def("softmax_rows_backward", &SoftmaxBackward, arg("y"), arg("out_grad"), arg("out"), arg("row_size"));

  m.def("sgd_update", &SgdUpdate, arg("w"), arg("grad"), arg("u"), arg("w_out"), arg("u_out"), arg("momentum"),
        arg("dampening"), arg("neg_lr"), arg("weight_decay"), arg("has_u"));
  m.def("batch_norm_forward", &BatchNormForward, arg("x"), arg("w"), arg("b"), arg("out"), arg("mean"),
        arg("var"), arg("rows"), arg("channels"), arg("inner"), arg("eps"));
  m.def("batch_norm_backward", &BatchNormBackward, arg("x"), arg("out_grad"), arg("w"), arg("mean"), arg("var"),
        arg("dx"), arg("dw"), arg("db"), arg("rows"), arg("channels"), arg("inner"), arg("eps"));

  m.def("max_pool2d", &MaxPool2d, arg("a"), arg("out"), arg("N"), arg("H"), arg("W"), arg("C"), arg("kh"),
        arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"));
  m.def("max_pool2d_backward", &MaxPool2dBackward, arg("a"), arg("dout"), arg("dinp"), arg("N"), arg("H"),
        arg("W"), arg("C"), arg("kh"), arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"));
  m.def("avg_pool2d", &AvgPool2d, arg("a"), arg("out"), arg("N"), arg("H"), arg("W"), arg("C"), arg("kh"),
        arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"));
  m.def("avg_pool2d_backward", &AvgPool2dBackward, arg("dout"), arg("dinp"), arg("N"), arg("H"), arg("W"),
        arg("C"), arg("kh"), arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"));
  m.def("depthwise_conv2d", &DepthwiseConv2d, arg("a"), arg("w"), arg("out"), arg("N"), arg("H"), arg("W"),
        arg("C"), arg("kh"), arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"), arg("dh"), arg("dw"));
  m.def("depthwise_conv2d_backward_input", &DepthwiseConv2dBackwardInput, arg("dout"), arg("w"), arg("dinp"),
        arg("N"), arg("H"), arg("W"), arg("C"), arg("kh"), arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"),
        arg("dh"), arg("dw"));
  m.def("depthwise_conv2d_backward_weight", &DepthwiseConv2dBackwardWeight, arg("a"), arg("dout"),
        arg("dweight"), arg("N"), arg("H"), arg("W"), arg("C"), arg("kh"), arg("kw"), arg("sh"), arg("sw"),
        arg("ph"), arg("pw"), arg("dh"), arg("dw"));
  m.def("winograd_input_transform", &WinogradInputTransform, arg("a"), arg("bt"), arg("out"), arg("N"),
        arg("H"), arg("W"), arg("C"), arg("ph"), arg("pw"), arg("m"), arg("alpha"), arg("th"), arg("tw"));
  m.def("winograd_input_transform_adjoint", &WinogradInputTransformAdjoint, arg("dv"), arg("bt"),
        arg("dinp"), arg("N"), arg("H"), arg("W"), arg("C"), arg("ph"), arg("pw"), arg("m"), arg("alpha"),
        arg("th"), arg("tw"));
  m.def("winograd_output_transform", &WinogradOutputTransform, arg("mm"), arg("at"), arg("out"), arg("N"),
        arg("H"), arg("W"), arg("C"), arg("m"), arg("alpha"), arg("th"), arg("tw"));
  m.def("winograd_output_transform_adjoint", &WinogradOutputTransformAdjoint, arg("dout"), arg("at"),
        arg("dm"), arg("N"), arg("H"), arg("W"), arg("C"), arg("m"), arg("alpha"), arg("th"), arg("tw"));
}
