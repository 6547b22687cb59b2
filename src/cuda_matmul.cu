// needle CUDA backend, entry points: matmul, the tiled matmul, the batched GEMM and the
// implicit GEMM over a strided A view. Layout and conventions: ndarray_backend_cuda.cu.

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
#include "cuda_gemm_launch.cuh"
#include "cuda_launch.cuh"
#include "cuda_ops.cuh"

namespace needle {
namespace cuda {

namespace py = pybind11;

constexpr int kTileSize = 8;  // __tile_size__ of the matmul_tiled layout

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

// ------------------------------------------------------------------------------------ bindings

void BindMatmul(py::module_& m) {
  using py::arg;
  m.attr("__tile_size__") = kTileSize;
  m.def("matmul", &Matmul, arg("a"), arg("b"), arg("out"), arg("m"), arg("n"), arg("p"));
  m.def("matmul_tiled", &MatmulTiled, arg("a"), arg("b"), arg("out"), arg("m"), arg("n"), arg("p"));
  m.def("gemm", &Gemm, arg("a"), arg("b"), arg("out"), arg("batch"), arg("m"), arg("n"), arg("p"),
        arg("a_offset"), arg("a_batch_stride"), arg("a_transposed"), arg("b_offset"), arg("b_batch_stride"),
        arg("b_transposed"));
  m.def("gemm_strided_a", &GemmStridedA, arg("a"), arg("b"), arg("out"), arg("m"), arg("n"), arg("p"),
        arg("a_shape"), arg("a_strides"), arg("a_offset"), arg("a_row_dims"), arg("b_offset"), arg("b_transposed"));
}

}  // namespace cuda
}  // namespace needle
