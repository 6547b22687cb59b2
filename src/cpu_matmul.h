// needle CPU backend: the matmul entry points (matmul, matmul_tiled, gemm, gemm_strided_a):
// argument checks, then the packed GEMM of gemm.h (or a register-tile kernel for small tiled ones).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cpu_common.h"
#include "cpu_simd.h"
#include "cpu_strided.h"
#include "gemm.h"

namespace needle {
namespace cpu {

constexpr int64_t kTile = 8;
static_assert(kTile == kLanes, "the tiled matmul kernel holds one tile row per vector");

inline void CheckMnp(const char* fn, int64_t m, int64_t n, int64_t p) {
  if (m < 0 || n < 0 || p < 0)
    throw std::invalid_argument(std::string(fn) + ": sizes must be >= 0, got m=" + std::to_string(m) +
                                " n=" + std::to_string(n) + " p=" + std::to_string(p));
}

// out (m x p) = a (m x n) @ b (n x p), all compact row-major
inline void Matmul(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p) {
  CheckMnp("matmul", m, n, p);
  CheckHolds("matmul", "a", a.size, CheckedProduct("matmul", {m, n}));
  CheckHolds("matmul", "b", b.size, CheckedProduct("matmul", {n, p}));
  CheckHolds("matmul", "out", out.size, CheckedProduct("matmul", {m, p}));
  pybind11::gil_scoped_release release;
  sgemm_batched(false, false, 1, m, p, n, a.ptr, 0, n, b.ptr, 0, p, out.ptr, 0, p, false);
}

// Output tiles q in [q0, q1) of the tiled layout: out[i, j] = sum_k a[i, k] @ b[k, j].
struct TiledKernel {
  const float* a;
  const float* b;
  float* out;
  int64_t mt, nt, pt;  // tile counts
  NEEDLE_INLINE void operator()(int64_t q0, int64_t q1) const {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t i = q / pt, j = q % pt;
      V acc[kTile] = {};  // zeroed first: out may be uninitialised
      for (int64_t k = 0; k < nt; ++k) {
        const float* A = a + (i * nt + k) * kTile * kTile;
        const float* B = b + (k * pt + j) * kTile * kTile;
        for (int64_t r = 0; r < kTile; ++r)
          for (int64_t kk = 0; kk < kTile; ++kk) acc[r] += Splat(A[r * kTile + kk]) * Load(B + kk * kTile);
      }
      for (int64_t r = 0; r < kTile; ++r) Store(out + q * kTile * kTile + r * kTile, acc[r]);
    }
  }
};

// Tiled layout of contract §3.6: tile [i, j] holds rows i*t.., cols j*t.., row-major inside.
inline void MatmulTiled(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p) {
  CheckMnp("matmul_tiled", m, n, p);
  if (m % kTile || n % kTile || p % kTile)
    throw std::invalid_argument("matmul_tiled: m=" + std::to_string(m) + " n=" + std::to_string(n) +
                                " p=" + std::to_string(p) + " must be multiples of the tile size 8");
  CheckHolds("matmul_tiled", "a", a.size, CheckedProduct("matmul_tiled", {m, n}));
  CheckHolds("matmul_tiled", "b", b.size, CheckedProduct("matmul_tiled", {n, p}));
  CheckHolds("matmul_tiled", "out", out.size, CheckedProduct("matmul_tiled", {m, p}));
  const int64_t mt = m / kTile, nt = n / kTile, pt = p / kTile;
  if (m * p == 0) return;
  pybind11::gil_scoped_release release;
  // The register-tile kernel keeps up with the packed GEMM up to about 256^3 (measured).
  if (double(m) * double(n) * double(p) <= 256.0 * 256.0 * 256.0) {
    const TiledKernel k{a.ptr, b.ptr, out.ptr, mt, nt, pt};
    ParallelRange(mt * pt, m * n * p / kTile, kParallelMinCopy, 1,
                  [&](int64_t q0, int64_t q1) { Dispatch(k, q0, q1); });
    return;
  }
  // Big: untile into row-major copies, run the packed GEMM, tile the result (O(n^2) copies).
  const auto copy = [](float* v, int64_t vs, float* c, int64_t cs, int64_t len) { CopyRow(v, vs, c, cs, len); };
  Array ra(m * n), rb(n * p), rc(m * p);
  // Row-major (r, c) of a tiled matrix sits at view (r/t, r%t, c/t, c%t) of these strides.
  ForEachRow(PlanRows(MakeDims({mt, kTile, nt, kTile}, {n * kTile, kTile, kTile * kTile, 1})), a.ptr, ra.ptr,
             true, copy);
  ForEachRow(PlanRows(MakeDims({nt, kTile, pt, kTile}, {p * kTile, kTile, kTile * kTile, 1})), b.ptr, rb.ptr,
             true, copy);
  sgemm_batched(false, false, 1, m, p, n, ra.ptr, 0, n, rb.ptr, 0, p, rc.ptr, 0, p, false);
  ForEachRow(PlanRows(MakeDims({mt, pt, kTile, kTile}, {p * kTile, kTile, p, 1})), rc.ptr, out.ptr, true, copy);
}

// out[i] (m x p) = opA_i (m x n) @ opB_i (n x p), i < batch; A_i at a[a_offset + i*a_batch_stride],
// stored m x n (or n x m when a_transposed); same for B_i (n x p or p x n). Stride 0 broadcasts.
inline void Gemm(const Array& a, const Array& b, Array& out, int64_t batch, int64_t m, int64_t n, int64_t p,
                 int64_t a_offset, int64_t a_batch_stride, bool a_transposed, int64_t b_offset,
                 int64_t b_batch_stride, bool b_transposed) {
  CheckMnp("gemm", m, n, p);
  if (batch < 0) throw std::invalid_argument("gemm: batch must be >= 0, got " + std::to_string(batch));
  CheckHolds("gemm", "out", out.size, CheckedProduct("gemm", {batch, m, p}));
  const Shape a_strides = a_transposed ? Shape{a_batch_stride, 1, m} : Shape{a_batch_stride, n, 1};
  const Shape b_strides = b_transposed ? Shape{b_batch_stride, 1, n} : Shape{b_batch_stride, p, 1};
  CheckView("gemm", {batch, m, n}, a_strides, a_offset, a.size);
  CheckView("gemm", {batch, n, p}, b_strides, b_offset, b.size);
  if (batch == 0 || m == 0 || p == 0) return;
  // n == 0: the (empty, unchecked) operands are never read and sgemm writes zeros
  const float* A = n == 0 ? a.ptr : a.ptr + a_offset;
  const float* B = n == 0 ? b.ptr : b.ptr + b_offset;
  pybind11::gil_scoped_release release;
  sgemm_batched(a_transposed, b_transposed, batch, m, p, n, A, a_batch_stride, a_transposed ? m : n, B,
                b_batch_stride, b_transposed ? n : p, out.ptr, m * p, p, false);
}

// out (m x p) = A (m x n) @ opB (n x p), A the view (a_shape, a_strides, a_offset) of `a` split into
// row dims (the first a_row_dims) and column dims, 1 to 3 each: an implicit GEMM over an im2col view.
inline void GemmStridedA(const Array& a, const Array& b, Array& out, int64_t m, int64_t n, int64_t p,
                         const Shape& a_shape, const Shape& a_strides, int64_t a_offset, int64_t a_row_dims,
                         int64_t b_offset, bool b_transposed) {
  const char* fn = "gemm_strided_a";
  CheckMnp(fn, m, n, p);
  const int64_t dims = static_cast<int64_t>(a_shape.size());
  constexpr int64_t kMaxDims = gemm_detail::StridedA::kDims;
  if (a_row_dims < 1 || a_row_dims > kMaxDims || dims - a_row_dims < 1 || dims - a_row_dims > kMaxDims)
    throw std::invalid_argument(std::string(fn) + ": A view shape " + Str(a_shape) + " split after " +
                                std::to_string(a_row_dims) +
                                " dims: need 1 to 3 row dims and 1 to 3 column dims");
  CheckView(fn, a_shape, a_strides, a_offset, a.size);
  const Shape row_shape(a_shape.begin(), a_shape.begin() + a_row_dims);
  const Shape col_shape(a_shape.begin() + a_row_dims, a_shape.end());
  int64_t row_count = 1, col_count = 1;
  for (int64_t d : row_shape) row_count *= d;  // no overflow: CheckView bounded the product
  for (int64_t d : col_shape) col_count *= d;
  if (row_count != m || col_count != n)
    throw std::invalid_argument(std::string(fn) + ": A view shape " + Str(a_shape) + " split after " +
                                std::to_string(a_row_dims) + " dims is " + std::to_string(row_count) +
                                " x " + std::to_string(col_count) + ", expected m x n = " +
                                std::to_string(m) + " x " + std::to_string(n));
  CheckHolds(fn, "out", out.size, CheckedProduct(fn, {m, p}));
  CheckView(fn, {n, p}, b_transposed ? Shape{1, n} : Shape{p, 1}, b_offset, b.size);
  if (m == 0 || p == 0) return;
  gemm_detail::StridedA view;
  for (int64_t i = 0; i < kMaxDims; ++i) {
    const int64_t r = i - (kMaxDims - a_row_dims), c = i - (kMaxDims - (dims - a_row_dims));
    view.row_shape[i] = r < 0 ? 1 : a_shape[r];
    view.row_strides[i] = r < 0 ? 0 : a_strides[r];
    view.col_shape[i] = c < 0 ? 1 : a_shape[a_row_dims + c];
    view.col_strides[i] = c < 0 ? 0 : a_strides[a_row_dims + c];
  }
  // n == 0: the (empty, unchecked) operands are never read and sgemm writes zeros
  const float* A = n == 0 ? a.ptr : a.ptr + a_offset;
  const float* B = n == 0 ? b.ptr : b.ptr + b_offset;
  pybind11::gil_scoped_release release;
  sgemm_strided_a(b_transposed, m, p, n, A, view, B, b_transposed ? n : p, out.ptr, p);
}

}  // namespace cpu
}  // namespace needle
