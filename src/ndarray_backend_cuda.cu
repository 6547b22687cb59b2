// needle CUDA backend: the function table of docs/backends.md on an NVIDIA GPU (FP32 only).
//
// Argument order, always: inputs, then out, then sizes/params. Letters: N batch, H/W spatial,
// C channels, kh/kw kernel, sh/sw stride, ph/pw padding, m/n/p matmul sizes ((m,n) @ (n,p)).
// Buffers are flat float32 `Array`s in device memory; NDArray (Python) owns all shape / stride
// logic and passes explicit (shape, strides, offset) views to compact / setitem / scatter_add.
//
// Layout of this translation unit: header comment -> helpers (cuda_common.cuh: CUDA_CHECK,
// validation, view metadata; cuda_memory.cuh: device discovery, allocator, Array) -> kernels
// (cuda_kernels.cuh, cuda_gemm.cuh) -> launchers (below) -> pybind11 bindings.
// Every argument is validated on the host before anything is launched (ValueError / IndexError
// with the numpy backend's messages); every launch is followed by CUDA_CHECK_LAUNCH(); CUDA
// errors become RuntimeError with file:line. All work is queued on the legacy default stream:
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
#include "cuda_gemm.cuh"
#include "cuda_kernels.cuh"
#include "cuda_memory.cuh"

namespace needle {
namespace cuda {

namespace py = pybind11;

constexpr int kTileSize = 8;  // __tile_size__ of the matmul_tiled layout
constexpr int kThreads = 256;  // block size of the element-wise / view / pooling kernels

// ------------------------------------------------------------------------------------ launch helpers

// Blocks for a grid-stride kernel over `work` items of `per_block` each: enough to fill the GPU,
// never more than needed.
unsigned GridFor(int64_t work, int64_t per_block = kThreads) {
  const int64_t want = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(want, int64_t{NumSMs()} * 16)));
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename Op>
void LaunchBinary(const float* a, const float* b, float* out, int64_t n, Op op) {
  if (n == 0) return;
  const bool vec = Aligned16(a) && Aligned16(b) && Aligned16(out);
  EwiseBinaryKernel<<<GridFor(vec ? n / 4 + 1 : n), kThreads>>>(a, b, out, n, vec, op);
  CUDA_CHECK_LAUNCH();
}

template <typename Op>
void LaunchUnary(const float* a, float* out, int64_t n, Op op) {
  if (n == 0) return;
  const bool vec = Aligned16(a) && Aligned16(out);
  EwiseUnaryKernel<<<GridFor(vec ? n / 4 + 1 : n), kThreads>>>(a, out, n, vec, op);
  CUDA_CHECK_LAUNCH();
}

void LaunchFill(float* out, int64_t n, float val) {
  if (n == 0) return;
  const bool vec = Aligned16(out);
  FillKernel<<<GridFor(vec ? n / 4 + 1 : n), kThreads>>>(out, n, vec, val);
  CUDA_CHECK_LAUNCH();
}

// A validated view, coalesced, ready to pass to a kernel.
struct DeviceView {
  ViewMeta meta{};
  int64_t numel = 0;
  DeviceBuffer ext;  // shape and strides, when they do not fit in ViewMeta

  // The view is one contiguous run of numel elements starting at meta.offset.
  bool contiguous() const { return meta.ndim == 0 || (meta.ndim == 1 && meta.strides[0] == 1); }
};

DeviceView MakeView(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                    int64_t offset, int64_t numel) {
  DeviceView v;
  v.numel = numel;
  v.meta.offset = offset;
  std::vector<int64_t> sh, st;
  Coalesce(shape, strides, &sh, &st);
  v.meta.ndim = static_cast<int32_t>(sh.size());
  if (sh.size() <= static_cast<size_t>(kInlineDims)) {
    std::copy(sh.begin(), sh.end(), v.meta.shape);
    std::copy(st.begin(), st.end(), v.meta.strides);
    v.meta.ext = nullptr;
  } else {
    // Rare (> 8 dims that cannot be merged): one small synchronous upload.
    std::vector<int64_t> host(sh);
    host.insert(host.end(), st.begin(), st.end());
    v.ext = DeviceBuffer(host.size() * sizeof(int64_t));
    CUDA_CHECK(cudaMemcpy(v.ext.as<int64_t>(), host.data(), host.size() * sizeof(int64_t),
                          cudaMemcpyHostToDevice));
    v.meta.ext = v.ext.as<int64_t>();
  }
  return v;
}

enum class ViewOp { kCompact, kSetitem, kScalarSetitem, kScatterAdd };

template <typename IdxT>
void LaunchViewT(ViewOp op, const float* a, float val, float* out, const DeviceView& v) {
  const IdxT n = static_cast<IdxT>(v.numel);
  const unsigned grid = GridFor(v.numel);
  switch (op) {
    case ViewOp::kCompact: CompactKernel<IdxT><<<grid, kThreads>>>(a, out, v.meta, n); break;
    case ViewOp::kSetitem: SetitemKernel<IdxT><<<grid, kThreads>>>(a, out, v.meta, n); break;
    case ViewOp::kScalarSetitem: ScalarSetitemKernel<IdxT><<<grid, kThreads>>>(val, out, v.meta, n); break;
    case ViewOp::kScatterAdd: ScatterAddKernel<IdxT><<<grid, kThreads>>>(a, out, v.meta, n); break;
  }
  CUDA_CHECK_LAUNCH();
}

// 32-bit index arithmetic whenever the element count allows it (i + grid stride < 2^32).
void LaunchView(ViewOp op, const float* a, float val, float* out, const DeviceView& v) {
  if (v.numel == 0) return;
  if (v.numel < (int64_t{1} << 31))
    LaunchViewT<uint32_t>(op, a, val, out, v);
  else
    LaunchViewT<uint64_t>(op, a, val, out, v);
}

// The view's last two dims, once coalesced, are (rows, cols) with rows contiguous in the source
// (a transpose, possibly batched): worth a tiled transpose when both are not tiny.
bool IsBatchedTranspose(const DeviceView& v) {
  const int nd = v.meta.ndim;
  return v.meta.ext == nullptr && nd >= 2 && v.meta.strides[nd - 2] == 1 && v.meta.strides[nd - 1] != 1 &&
         v.meta.shape[nd - 2] >= 8 && v.meta.shape[nd - 1] >= 8;
}

void LaunchTransposeCompact(const float* src, float* dst, const DeviceView& v) {
  const int nd = v.meta.ndim;
  const int64_t rows = v.meta.shape[nd - 2], cols = v.meta.shape[nd - 1];
  ViewMeta batch = v.meta;  // the leading dims, and the offset
  batch.ndim = nd - 2;
  const int64_t nbatch = v.numel / (rows * cols);
  const int64_t tiles_c = (cols + 31) / 32, tiles = ((rows + 31) / 32) * tiles_c;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tiles, INT_MAX)), 1,
                  static_cast<unsigned>(std::min<int64_t>(nbatch, 65535)));
  const dim3 block(32, 8);
  if (nbatch < (int64_t{1} << 31))
    TransposeCompactKernel<uint32_t><<<grid, block>>>(src, dst, batch, nbatch, rows, cols,
                                                      v.meta.strides[nd - 1], tiles_c, tiles);
  else
    TransposeCompactKernel<uint64_t><<<grid, block>>>(src, dst, batch, nbatch, rows, cols,
                                                      v.meta.strides[nd - 1], tiles_c, tiles);
  CUDA_CHECK_LAUNCH();
}

// Gathers view `v` of `src` into compact `dst` (numel elements).
void CompactInto(const float* src, float* dst, const DeviceView& v) {
  if (v.numel == 0) return;
  if (v.contiguous()) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src + v.meta.offset, v.numel * sizeof(float),
                               cudaMemcpyDeviceToDevice, 0));
  } else if (IsBatchedTranspose(v)) {
    LaunchTransposeCompact(src, dst, v);
  } else {
    LaunchView(ViewOp::kCompact, src, 0.0f, dst, v);
  }
}

// When a kernel reads `a` while writing through a view of the same buffer, read a copy.
const float* Unaliased(const CudaArray& a, const CudaArray& out, int64_t count, DeviceBuffer* keep) {
  if (a.data != out.data || count == 0) return a.data;
  *keep = DeviceBuffer(count * sizeof(float));
  CUDA_CHECK(cudaMemcpyAsync(keep->as<float>(), a.data, count * sizeof(float),
                             cudaMemcpyDeviceToDevice, 0));
  return keep->as<float>();
}

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
  CUDA_CHECK(cudaMemcpy(out.data, a.data(), out.size * sizeof(float), cudaMemcpyHostToDevice));
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
    CUDA_CHECK(cudaMemcpyAsync(out.data + offset, src, n * sizeof(float), cudaMemcpyDeviceToDevice, 0));
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

template <class T, Layout LA, Layout LB>
void LaunchSgemmT(GemmArgs g) {
  g.tiles_p = (g.p + T::BN - 1) / T::BN;
  g.tiles = ((g.m + T::BM - 1) / T::BM) * g.tiles_p;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(g.tiles, INT_MAX)), 1,
                  static_cast<unsigned>(std::min<int64_t>(g.batch, 65535)));
  SgemmKernel<T, LA, LB><<<grid, T::kThreads>>>(g);
  CUDA_CHECK_LAUNCH();
}

// Big 128 x 128 tiles when they alone fill the GPU, else 64 x 64 tiles for more parallelism.
template <Layout LA, Layout LB>
void LaunchSgemm(const GemmArgs& g) {
  const int64_t big = ((g.m + BigTile::BM - 1) / BigTile::BM) * ((g.p + BigTile::BN - 1) / BigTile::BN);
  if (big * g.batch >= NumSMs())
    LaunchSgemmT<BigTile, LA, LB>(g);
  else
    LaunchSgemmT<SmallTile, LA, LB>(g);
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
  GemmArgs g{};
  g.a = a.data;
  g.b = b.data;
  g.c = out.data;
  g.batch = batch;
  g.m = static_cast<int>(m);
  g.n = static_cast<int>(n);
  g.p = static_cast<int>(p);
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
    LaunchSgemm<Layout::kTransposed, Layout::kTransposed>(g);
  else if (a_transposed)
    LaunchSgemm<Layout::kTransposed, Layout::kRowMajor>(g);
  else if (b_transposed)
    LaunchSgemm<Layout::kRowMajor, Layout::kTransposed>(g);
  else
    LaunchSgemm<Layout::kRowMajor, Layout::kRowMajor>(g);
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
  GemmArgs g{};
  g.a = a.data;
  g.b = b.data;
  g.c = out.data;
  g.batch = 1;
  g.m = static_cast<int>(m);
  g.n = static_cast<int>(n);
  g.p = static_cast<int>(p);
  g.vec_a = Aligned16(a.data);  // tile rows are 8 floats: every quad is aligned
  g.vec_b = Aligned16(b.data);
  g.vec_c = Aligned16(out.data);
  LaunchSgemm<Layout::kTiled8, Layout::kTiled8>(g);
}

// ------------------------------------------------------------------------------------ reductions

// out[r] = reduce(a[r*row_len : (r+1)*row_len]) for r < rows.
template <typename Op>
void LaunchReduce(const float* a, float* out, int64_t rows, int64_t row_len) {
  if (rows == 0) return;
  const int64_t sms = NumSMs();
  if (row_len <= 1024) {  // a warp per row
    ReduceWarpKernel<Op><<<GridFor(rows, kThreads / kWarp), kThreads>>>(a, out, rows, row_len);
    CUDA_CHECK_LAUNCH();
    return;
  }
  if (rows >= 2 * sms || row_len < 65536) {  // a block per row
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, sms * 16));
    ReduceBlockKernel<Op><<<grid, kThreads>>>(a, out, rows, row_len, row_len, 1);
    CUDA_CHECK_LAUNCH();
    return;
  }
  // Few very long rows: split each into chunks (pass 1), then reduce the partials (pass 2).
  const int64_t chunks = std::min((4 * sms + rows - 1) / rows, (row_len + 4095) / 4096);
  const int64_t chunk_len = (row_len + chunks - 1) / chunks;
  DeviceBuffer partial(rows * chunks * sizeof(float));
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows * chunks, sms * 16));
  ReduceBlockKernel<Op><<<grid, kThreads>>>(a, partial.as<float>(), rows, row_len, chunk_len, chunks);
  CUDA_CHECK_LAUNCH();
  LaunchReduce<Op>(partial.as<float>(), out, rows, chunks);
}

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
  const int64_t rows = a.size / row_size;
  if (rows == 0) return;
  if (row_size <= 32 * 32) {  // a warp per row, the row in registers
    const unsigned grid = GridFor(rows, kThreads / kWarp);
    const int len = static_cast<int>(row_size);
    if (row_size <= 32)
      SoftmaxWarpKernel<1, kLog><<<grid, kThreads>>>(a.data, out.data, rows, len);
    else if (row_size <= 64)
      SoftmaxWarpKernel<2, kLog><<<grid, kThreads>>>(a.data, out.data, rows, len);
    else if (row_size <= 128)
      SoftmaxWarpKernel<4, kLog><<<grid, kThreads>>>(a.data, out.data, rows, len);
    else if (row_size <= 256)
      SoftmaxWarpKernel<8, kLog><<<grid, kThreads>>>(a.data, out.data, rows, len);
    else if (row_size <= 512)
      SoftmaxWarpKernel<16, kLog><<<grid, kThreads>>>(a.data, out.data, rows, len);
    else
      SoftmaxWarpKernel<32, kLog><<<grid, kThreads>>>(a.data, out.data, rows, len);
  } else {  // a block per row
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{NumSMs()} * 16));
    SoftmaxBlockKernel<kLog><<<grid, 512>>>(a.data, out.data, rows, row_size);
  }
  CUDA_CHECK_LAUNCH();
}

void SoftmaxBackward(const CudaArray& y, const CudaArray& g, CudaArray& out, int64_t row_size) {
  const char* fn = "softmax_rows_backward";
  CheckWholeRows(fn, y.size, row_size);
  CheckSize(fn, "out_grad", g.size, y.size);
  CheckSize(fn, "out", out.size, y.size);
  const int64_t rows = y.size / row_size;
  if (rows == 0) return;
  SoftmaxBackwardWarpKernel<<<GridFor(rows, kThreads / kWarp), kThreads>>>(y.data, g.data, out.data, rows, row_size);
  CUDA_CHECK_LAUNCH();
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
  MaxPoolKernel<<<GridFor(OutCount(d)), kThreads>>>(a.data, out.data, d, OutCount(d));
  CUDA_CHECK_LAUNCH();
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
  CUDA_CHECK(cudaMemsetAsync(dinp.data, 0, InCount(d) * sizeof(float), 0));
  MaxPoolBackwardKernel<<<GridFor(OutCount(d)), kThreads>>>(a.data, dout.data, dinp.data, d, OutCount(d));
  CUDA_CHECK_LAUNCH();
}

void AvgPool2d(const CudaArray& a, CudaArray& out, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = MakePoolDims("avg_pool2d", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckSize("avg_pool2d", "out", out.size, OutCount(d));
  CheckSize("avg_pool2d", "a", a.size, InCount(d));
  if (OutCount(d) == 0) return;
  AvgPoolKernel<<<GridFor(OutCount(d)), kThreads>>>(a.data, out.data, d, OutCount(d));
  CUDA_CHECK_LAUNCH();
}

void AvgPool2dBackward(const CudaArray& dout, CudaArray& dinp, int64_t N, int64_t H, int64_t W, int64_t C,
                       int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const char* fn = "avg_pool2d_backward";
  const PoolDims d = MakePoolDims(fn, N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckSize(fn, "dout", dout.size, OutCount(d));
  CheckSize(fn, "dinp", dinp.size, InCount(d));
  if (InCount(d) == 0) return;
  AvgPoolBackwardKernel<<<GridFor(InCount(d)), kThreads>>>(dout.data, dinp.data, d, InCount(d));
  CUDA_CHECK_LAUNCH();
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
  const DeviceView v = MakeView(shape, strides, offset, n);
  if (n < (int64_t{1} << 31))
    EwiseViewKernel<uint32_t><<<GridFor(n), kThreads>>>(a.data, src, out.data, v.meta, static_cast<uint32_t>(n), Op());
  else
    EwiseViewKernel<uint64_t><<<GridFor(n), kThreads>>>(a.data, src, out.data, v.meta, static_cast<uint64_t>(n), Op());
  CUDA_CHECK_LAUNCH();
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
  if (n == 0) return;
  SgdUpdateKernel<<<GridFor(n), kThreads>>>(w.data, g.data, u.data, w_out.data, u_out.data, n,
                                            static_cast<float>(momentum), static_cast<float>(dampening),
                                            static_cast<float>(neg_lr), static_cast<float>(weight_decay),
                                            weight_decay != 0.0, has_u);
  CUDA_CHECK_LAUNCH();
}

// ------------------------------------------------------------------------------------ batch norm

int64_t CheckNormSizes(const char* fn, int64_t rows, int64_t C, int64_t inner) {
  if (rows < 1 || C < 1 || inner < 1)
    throw std::invalid_argument(std::string(fn) + ": rows, channels and inner must be >= 1, got " + Str(rows) +
                                ", " + Str(C) + ", " + Str(inner));
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
  if (C > INT_MAX) throw std::invalid_argument(std::string(fn) + ": too many channels, " + Str(C));
  DeviceBuffer scale(static_cast<size_t>(C) * sizeof(float));
  BatchNormStatsKernel<<<static_cast<unsigned>(C), kThreads>>>(x.data, w.data, mean.data, var.data,
                                                               scale.as<float>(), rows, C, inner, eps);
  CUDA_CHECK_LAUNCH();
  BatchNormApplyKernel<<<GridFor(n), kThreads>>>(x.data, mean.data, scale.as<float>(), b.data, out.data, n, C,
                                                 inner);
  CUDA_CHECK_LAUNCH();
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
  if (C > INT_MAX) throw std::invalid_argument(std::string(fn) + ": too many channels, " + Str(C));
  DeviceBuffer k(static_cast<size_t>(C) * 3 * sizeof(float));
  BatchNormGradSumsKernel<<<static_cast<unsigned>(C), kThreads>>>(x.data, g.data, w.data, mean.data, var.data,
                                                                  dw.data, db.data, k.as<float>(), rows, C,
                                                                  inner, eps);
  CUDA_CHECK_LAUNCH();
  BatchNormGradApplyKernel<<<GridFor(n), kThreads>>>(x.data, g.data, mean.data, k.as<float>(), dx.data, n, C,
                                                     inner);
  CUDA_CHECK_LAUNCH();
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

PYBIND11_MODULE(ndarray_backend_cuda, m) {
  namespace py = pybind11;
  using namespace needle::cuda;
  using py::arg;
  m.doc() = "needle CUDA backend: the flat float32 function table of docs/backends.md";
  m.attr("__tile_size__") = kTileSize;

  py::class_<CudaArray>(m, "Array", "A flat float32 buffer of `size` elements in GPU memory.")
      .def(py::init<int64_t>(), arg("size"))
      .def_readonly("size", &CudaArray::size)
      .def("ptr", &CudaArray::ptr, "Device address (an int), the same for every view of the buffer.");

  m.def("is_available", &IsAvailable, "True if a CUDA device answers.");
  m.def("synchronize", &Synchronize, "Wait for all queued GPU work.");

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
}
