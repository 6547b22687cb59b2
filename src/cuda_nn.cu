// needle CUDA backend, entry points: reductions, softmax, pooling, the SGD and Adam updates, batch norm,
// depthwise convolution and the Winograd tile transforms. Layout and conventions:
// ndarray_backend_cuda.cu.

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
#include "cuda_launch.cuh"
#include "cuda_nn_kernels.cuh"
#include "cuda_winograd.cuh"
#include "cuda_ops.cuh"

namespace needle {
namespace cuda {

namespace py = pybind11;

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

void SgdUpdate(const CudaArray& w, const CudaArray& g, const CudaArray& u, CudaArray& w_out, CudaArray& u_out,
               const CudaArray& hyper, bool decay, bool has_u) {
  const char* fn = "sgd_update";
  const int64_t n = w_out.size;
  CheckSize(fn, "w", w.size, n);
  CheckSize(fn, "grad", g.size, n);
  CheckSize(fn, "u_out", u_out.size, n);
  if (has_u) CheckSize(fn, "u", u.size, n);
  CheckSize(fn, "hyper", hyper.size, 4);
  LaunchSgdUpdate(w.data, g.data, u.data, w_out.data, u_out.data, n, hyper.data, decay, has_u);
}

void SgdTorchUpdate(const CudaArray& w, const CudaArray& g, const CudaArray& u, CudaArray& w_out,
                    CudaArray& u_out, const CudaArray& hyper, bool decay, int direction, bool has_u) {
  const char* fn = "sgd_torch_update";
  const int64_t n = w_out.size;
  if (direction < 0 || direction > 2)
    throw std::invalid_argument(std::string(fn) + ": direction must be 0 (gradient), 1 (momentum) or 2 "
                                "(nesterov), got " + Str(direction));
  CheckSize(fn, "w", w.size, n);
  CheckSize(fn, "grad", g.size, n);
  if (direction != 0) {
    CheckSize(fn, "u_out", u_out.size, n);
    if (has_u) CheckSize(fn, "u", u.size, n);
  }
  CheckSize(fn, "hyper", hyper.size, 4);
  LaunchSgdTorchUpdate(w.data, g.data, u.data, w_out.data, u_out.data, n, hyper.data, decay, direction, has_u);
}

void AdamUpdate(const CudaArray& w, const CudaArray& g, const CudaArray& m, const CudaArray& v, CudaArray& w_out,
                CudaArray& m_out, CudaArray& v_out, const CudaArray& hyper, const CudaArray& t, int decay,
                bool has_state) {
  const char* fn = "adam_update";
  const int64_t n = w_out.size;
  CheckSize(fn, "w", w.size, n);
  CheckSize(fn, "grad", g.size, n);
  CheckSize(fn, "m_out", m_out.size, n);
  CheckSize(fn, "v_out", v_out.size, n);
  if (has_state) {
    CheckSize(fn, "m", m.size, n);
    CheckSize(fn, "v", v.size, n);
  }
  CheckSize(fn, "hyper", hyper.size, 8);
  CheckSize(fn, "t", t.size, 1);
  if (decay < 0 || decay > 2)
    throw std::invalid_argument(std::string(fn) + ": decay must be 0 (none), 1 (L2) or 2 (decoupled), got " +
                                Str(decay));
  LaunchAdamUpdate(w.data, g.data, m.data, v.data, w_out.data, m_out.data, v_out.data, n, hyper.data, t.data,
                   decay, has_state);
}

// ------------------------------------------------------------------------------------ batch norm

int64_t CheckNormSizes(const char* fn, int64_t rows, int64_t C, int64_t inner) {
  if (rows < 1 || C < 1 || inner < 1)
    throw std::invalid_argument(std::string(fn) + ": rows, channels and inner must be >= 1, got " + Str(rows) +
                                ", " + Str(C) + ", " + Str(inner));
  if (C > INT_MAX) throw std::invalid_argument(std::string(fn) + ": too many channels, " + Str(C));
  return CheckedMul(fn, CheckedMul(fn, rows, C), inner);
}

NormLayout RowMajorLayout(const char* fn, int64_t rows, int64_t C, int64_t inner) {
  CheckNormSizes(fn, rows, C, inner);
  return RowMajorNorm(rows, C, inner);
}

NormLayout StridedLayout(const char* fn, int64_t rows, int64_t C, int64_t inner, const std::vector<int64_t>& strides) {
  CheckNormSizes(fn, rows, C, inner);
  return CheckNormLayout(fn, rows, C, inner, strides);
}

void CheckedBatchNormForward(const char* fn, const CudaArray& x, const CudaArray& w, const CudaArray& b,
                             CudaArray& out, CudaArray& mean, CudaArray& var, const NormLayout& d, double eps) {
  CheckSize(fn, "x", x.size, d.size());
  CheckSize(fn, "out", out.size, d.size());
  CheckSize(fn, "weight", w.size, d.C);
  CheckSize(fn, "bias", b.size, d.C);
  CheckSize(fn, "mean", mean.size, d.C);
  CheckSize(fn, "var", var.size, d.C);
  LaunchBatchNormForward(x.data, w.data, b.data, out.data, mean.data, var.data, d, eps);
}

void BatchNormForward(const CudaArray& x, const CudaArray& w, const CudaArray& b, CudaArray& out,
                      CudaArray& mean, CudaArray& var, int64_t rows, int64_t C, int64_t inner, double eps) {
  const char* fn = "batch_norm_forward";
  CheckedBatchNormForward(fn, x, w, b, out, mean, var, RowMajorLayout(fn, rows, C, inner), eps);
}

void BatchNormForwardStrided(const CudaArray& x, const CudaArray& w, const CudaArray& b, CudaArray& out,
                             CudaArray& mean, CudaArray& var, int64_t rows, int64_t C, int64_t inner,
                             const std::vector<int64_t>& strides, double eps) {
  const char* fn = "batch_norm_forward_strided";
  CheckedBatchNormForward(fn, x, w, b, out, mean, var, StridedLayout(fn, rows, C, inner, strides), eps);
}

void BatchNormRunningUpdate(const CudaArray& mean, const CudaArray& var, CudaArray& running_mean,
                            CudaArray& running_var, double momentum, double keep) {
  const char* fn = "batch_norm_running_update";
  const int64_t C = running_mean.size;
  CheckSize(fn, "mean", mean.size, C);
  CheckSize(fn, "var", var.size, C);
  CheckSize(fn, "running_var", running_var.size, C);
  if (C == 0) return;
  Launch<RunningUpdateKernel>(GridFor(C), kThreads, mean.data, var.data, running_mean.data, running_var.data, C,
                              static_cast<float>(momentum), static_cast<float>(keep));
}

void CheckedBatchNormBackward(const char* fn, const CudaArray& x, const CudaArray& g, const CudaArray& w,
                              const CudaArray& mean, const CudaArray& var, CudaArray& dx, CudaArray& dw, CudaArray& db,
                              const NormLayout& d, double eps) {
  CheckSize(fn, "x", x.size, d.size());
  CheckSize(fn, "out_grad", g.size, d.size());
  CheckSize(fn, "dx", dx.size, d.size());
  CheckSize(fn, "weight", w.size, d.C);
  CheckSize(fn, "mean", mean.size, d.C);
  CheckSize(fn, "var", var.size, d.C);
  CheckSize(fn, "dw", dw.size, d.C);
  CheckSize(fn, "db", db.size, d.C);
  LaunchBatchNormBackward(x.data, g.data, w.data, mean.data, var.data, dx.data, dw.data, db.data, d, eps);
}

void BatchNormBackward(const CudaArray& x, const CudaArray& g, const CudaArray& w, const CudaArray& mean,
                       const CudaArray& var, CudaArray& dx, CudaArray& dw, CudaArray& db, int64_t rows, int64_t C,
                       int64_t inner, double eps) {
  const char* fn = "batch_norm_backward";
  CheckedBatchNormBackward(fn, x, g, w, mean, var, dx, dw, db, RowMajorLayout(fn, rows, C, inner), eps);
}

void BatchNormBackwardStrided(const CudaArray& x, const CudaArray& g, const CudaArray& w, const CudaArray& mean,
                              const CudaArray& var, CudaArray& dx, CudaArray& dw, CudaArray& db, int64_t rows,
                              int64_t C, int64_t inner, const std::vector<int64_t>& strides, double eps) {
  const char* fn = "batch_norm_backward_strided";
  CheckedBatchNormBackward(fn, x, g, w, mean, var, dx, dw, db, StridedLayout(fn, rows, C, inner, strides), eps);
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

// ------------------------------------------------------------------------------------ bindings

void BindRowsAndTraining(py::module_& m) {
  using py::arg;
  m.def("reduce_sum", &ReduceSum, arg("a"), arg("out"), arg("reduce_size"));
  m.def("reduce_max", &ReduceMax, arg("a"), arg("out"), arg("reduce_size"));
  m.def("softmax_rows", &Softmax<false>, arg("a"), arg("out"), arg("row_size"));
  m.def("log_softmax_rows", &Softmax<true>, arg("a"), arg("out"), arg("row_size"));
  m.def("softmax_rows_backward", &SoftmaxBackward, arg("y"), arg("out_grad"), arg("out"), arg("row_size"));

  m.def("sgd_update", &SgdUpdate, arg("w"), arg("grad"), arg("u"), arg("w_out"), arg("u_out"), arg("hyper"),
        arg("decay"), arg("has_u"));
  m.def("sgd_torch_update", &SgdTorchUpdate, arg("w"), arg("grad"), arg("u"), arg("w_out"), arg("u_out"),
        arg("hyper"), arg("decay"), arg("direction"), arg("has_u"));
  m.def("adam_update", &AdamUpdate, arg("w"), arg("grad"), arg("m"), arg("v"), arg("w_out"), arg("m_out"),
        arg("v_out"), arg("hyper"), arg("t"), arg("decay"), arg("has_state"));
  m.def("batch_norm_forward", &BatchNormForward, arg("x"), arg("w"), arg("b"), arg("out"), arg("mean"),
        arg("var"), arg("rows"), arg("channels"), arg("inner"), arg("eps"));
  m.def("batch_norm_running_update", &BatchNormRunningUpdate, arg("mean"), arg("var"), arg("running_mean"),
        arg("running_var"), arg("momentum"), arg("keep"));
  m.def("batch_norm_backward", &BatchNormBackward, arg("x"), arg("out_grad"), arg("w"), arg("mean"), arg("var"),
        arg("dx"), arg("dw"), arg("db"), arg("rows"), arg("channels"), arg("inner"), arg("eps"));
  m.def("batch_norm_forward_strided", &BatchNormForwardStrided, arg("x"), arg("w"), arg("b"), arg("out"),
        arg("mean"), arg("var"), arg("rows"), arg("channels"), arg("inner"), arg("strides"), arg("eps"));
  m.def("batch_norm_backward_strided", &BatchNormBackwardStrided, arg("x"), arg("out_grad"), arg("w"), arg("mean"),
        arg("var"), arg("dx"), arg("dw"), arg("db"), arg("rows"), arg("channels"), arg("inner"), arg("strides"),
        arg("eps"));

  m.def("max_pool2d", &MaxPool2d, arg("a"), arg("out"), arg("N"), arg("H"), arg("W"), arg("C"), arg("kh"),
        arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"));
  m.def("max_pool2d_backward", &MaxPool2dBackward, arg("a"), arg("dout"), arg("dinp"), arg("N"), arg("H"),
        arg("W"), arg("C"), arg("kh"), arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"));
  m.def("avg_pool2d", &AvgPool2d, arg("a"), arg("out"), arg("N"), arg("H"), arg("W"), arg("C"), arg("kh"),
        arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"));
  m.def("avg_pool2d_backward", &AvgPool2dBackward, arg("dout"), arg("dinp"), arg("N"), arg("H"), arg("W"),
        arg("C"), arg("kh"), arg("kw"), arg("sh"), arg("sw"), arg("ph"), arg("pw"));
}

void BindConvolution(py::module_& m) {
  using py::arg;
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

}  // namespace cuda
}  // namespace needle
