// needle C++ CPU backend: the function table of docs/backends.md (same names as the numpy
// reference backend, ndarray_backend_numpy.py, which is the executable specification).
//
// Argument order, always: inputs, then out, then sizes/params. Buffers are flat float32
// `Array`s; all shape/stride logic lives in the Python NDArray, kernels see flat buffers plus
// explicit (shape, strides, offset) views. Letters: N batch, H/W spatial, C channels,
// kh/kw kernel, sh/sw stride, ph/pw padding, m/n/p matmul sizes.
//
// Every entry point validates its arguments (cpu_common.h) before touching memory.
// Kernel families live in headers: cpu_copy.h (numpy copies, fill, strided views), cpu_ewise.h,
// cpu_reduce.h (reductions, softmax), cpu_matmul.h, cpu_pool.h, cpu_depthwise.h, cpu_winograd.h,
// cpu_training.h, cpu_optim.h; this file holds the pool / depthwise / Winograd argument checks
// and the bindings.
// Speed: the thread pool of cpu_threads.h over elements / rows / images (only above a size threshold), 8-lane vector
// kernels compiled twice (baseline and AVX2+FMA, picked at run time, cpu_simd.h), and the
// packed GEMM of gemm.h for every matmul.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>

#include "cpu_common.h"
#include "cpu_conv_pad.h"
#include "cpu_copy.h"
#include "cpu_depthwise.h"
#include "cpu_ewise.h"
#include "cpu_matmul.h"
#include "cpu_optim.h"
#include "cpu_pool.h"
#include "cpu_reduce.h"
#include "cpu_simd.h"
#include "cpu_strided.h"
#include "cpu_training.h"
#include "cpu_winograd.h"
#include "gemm.h"

namespace needle {
namespace cpu {

// ------------------------------------------------------------------------ pooling (NHWC)
void MaxPool2d(const Array& a, Array& out, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = CheckPool("max_pool2d", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckHolds("max_pool2d", "a", a.size, d.in_size());
  CheckHolds("max_pool2d", "out", out.size, d.out_size());
  const PoolForward<true> k{a.ptr, out.ptr, d};
  ParallelRange(N * d.Ho, d.out_size() * kh * kw, kParallelMinCopy, 1,
                [&](int64_t r0, int64_t r1) { Dispatch(k, r0, r1); });
}

void MaxPool2dBackward(const Array& a, const Array& dout, Array& dinp, int64_t N, int64_t H, int64_t W,
                       int64_t C, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = CheckPool("max_pool2d_backward", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckHolds("max_pool2d_backward", "a", a.size, d.in_size());
  CheckHolds("max_pool2d_backward", "dout", dout.size, d.out_size());
  CheckHolds("max_pool2d_backward", "dinp", dinp.size, d.in_size());
  const MaxPoolBackward k{a.ptr, dout.ptr, dinp.ptr, d};
  ParallelRange(N, d.out_size() * kh * kw + d.in_size(), kParallelMinCopy, 1,
                [&](int64_t n0, int64_t n1) { Dispatch(k, n0, n1); });
}

void AvgPool2d(const Array& a, Array& out, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
               int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = CheckPool("avg_pool2d", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckHolds("avg_pool2d", "a", a.size, d.in_size());
  CheckHolds("avg_pool2d", "out", out.size, d.out_size());
  const PoolForward<false> k{a.ptr, out.ptr, d};
  ParallelRange(N * d.Ho, d.out_size() * kh * kw, kParallelMinCopy, 1,
                [&](int64_t r0, int64_t r1) { Dispatch(k, r0, r1); });
}

void AvgPool2dBackward(const Array& dout, Array& dinp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  const PoolDims d = CheckPool("avg_pool2d_backward", N, H, W, C, kh, kw, sh, sw, ph, pw);
  CheckHolds("avg_pool2d_backward", "dout", dout.size, d.out_size());
  CheckHolds("avg_pool2d_backward", "dinp", dinp.size, d.in_size());
  const AvgPoolBackward k{dout.ptr, dinp.ptr, d};
  ParallelRange(N, d.out_size() * kh * kw + d.in_size(), kParallelMinCopy, 1,
                [&](int64_t n0, int64_t n1) { Dispatch(k, n0, n1); });
}

// ------------------------------------------------------------------------ depthwise conv (NHWC)
void DepthwiseConv2d(const Array& a, const Array& w, Array& out, int64_t N, int64_t H, int64_t W,
                     int64_t C, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                     int64_t pw, int64_t dh, int64_t dw) {
  const DepthwiseDims d = CheckDepthwise("depthwise_conv2d", N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw);
  CheckHolds("depthwise_conv2d", "a", a.size, d.in_size());
  CheckHolds("depthwise_conv2d", "w", w.size, d.taps_size());
  CheckHolds("depthwise_conv2d", "out", out.size, d.out_size());
  DepthwiseForward(a.ptr, w.ptr, out.ptr, d);
}

void DepthwiseConv2dBackwardInput(const Array& dout, const Array& w, Array& dinp, int64_t N,
                                  int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw,
                                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                                  int64_t dw) {
  const char* fn = "depthwise_conv2d_backward_input";
  const DepthwiseDims d = CheckDepthwise(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw);
  CheckHolds(fn, "dout", dout.size, d.out_size());
  CheckHolds(fn, "w", w.size, d.taps_size());
  CheckHolds(fn, "dinp", dinp.size, d.in_size());
  DepthwiseInputGrad(dout.ptr, w.ptr, dinp.ptr, d);
}

void DepthwiseConv2dBackwardWeight(const Array& a, const Array& dout, Array& dweight, int64_t N,
                                   int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw,
                                   int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                                   int64_t dw) {
  const char* fn = "depthwise_conv2d_backward_weight";
  const DepthwiseDims d = CheckDepthwise(fn, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw);
  CheckHolds(fn, "a", a.size, d.in_size());
  CheckHolds(fn, "dout", dout.size, d.out_size());
  CheckHolds(fn, "dweight", dweight.size, d.taps_size());
  DepthwiseWeightGrad(a.ptr, dout.ptr, dweight.ptr, d);
}

// ------------------------------------------------------------------------ Winograd tile transforms
// Sizes: N, H, W, C of the image side (input for the input transforms, output for the output
// ones), ph, pw (input transforms only: the conv padding), m, alpha, th, tw (tiles per column/row).
void WinogradInputTransform(const Array& a, const Array& bt, Array& out, int64_t N, int64_t H,
                            int64_t W, int64_t C, int64_t ph, int64_t pw, int64_t m, int64_t alpha,
                            int64_t th, int64_t tw) {
  const char* fn = "winograd_input_transform";
  const WinogradDims d = CheckWinograd(fn, N, H, W, C, ph, pw, m, alpha, th, tw);
  CheckHolds(fn, "a", a.size, N * H * W * C);
  CheckHolds(fn, "bt", bt.size, alpha * alpha);
  CheckHolds(fn, "out", out.size, alpha * alpha * d.tiles() * C);
  WinogradInputTransformKernel(a.ptr, bt.ptr, out.ptr, d);
}

void WinogradInputTransformAdjoint(const Array& dv, const Array& bt, Array& dinp, int64_t N,
                                   int64_t H, int64_t W, int64_t C, int64_t ph, int64_t pw,
                                   int64_t m, int64_t alpha, int64_t th, int64_t tw) {
  const char* fn = "winograd_input_transform_adjoint";
  const WinogradDims d = CheckWinograd(fn, N, H, W, C, ph, pw, m, alpha, th, tw);
  CheckHolds(fn, "dv", dv.size, alpha * alpha * d.tiles() * C);
  CheckHolds(fn, "bt", bt.size, alpha * alpha);
  CheckHolds(fn, "dinp", dinp.size, N * H * W * C);
  WinogradInputTransformAdjointKernel(dv.ptr, bt.ptr, dinp.ptr, d);
}

void WinogradOutputTransform(const Array& mm, const Array& at, Array& out, int64_t N, int64_t H,
                             int64_t W, int64_t C, int64_t m, int64_t alpha, int64_t th, int64_t tw) {
  const char* fn = "winograd_output_transform";
  const WinogradDims d = CheckWinograd(fn, N, H, W, C, 0, 0, m, alpha, th, tw);
  CheckHolds(fn, "mm", mm.size, alpha * alpha * d.tiles() * C);
  CheckHolds(fn, "at", at.size, m * alpha);
  CheckHolds(fn, "out", out.size, N * H * W * C);
  WinogradOutputTransformKernel(mm.ptr, at.ptr, out.ptr, d);
}

void WinogradOutputTransformAdjoint(const Array& dout, const Array& at, Array& dm, int64_t N,
                                    int64_t H, int64_t W, int64_t C, int64_t m, int64_t alpha,
                                    int64_t th, int64_t tw) {
  const char* fn = "winograd_output_transform_adjoint";
  const WinogradDims d = CheckWinograd(fn, N, H, W, C, 0, 0, m, alpha, th, tw);
  CheckHolds(fn, "dout", dout.size, N * H * W * C);
  CheckHolds(fn, "at", at.size, m * alpha);
  CheckHolds(fn, "dm", dm.size, alpha * alpha * d.tiles() * C);
  WinogradOutputTransformAdjointKernel(dout.ptr, at.ptr, dm.ptr, d);
}

}  // namespace cpu
}  // namespace needle

// ------------------------------------------------------------------------ bindings
PYBIND11_MODULE(ndarray_backend_cpu, m) {
  namespace py = pybind11;
  using namespace needle::cpu;
  using Release = py::call_guard<py::gil_scoped_release>;
  m.doc() = "needle C++ CPU backend (threads + SIMD): the function table of docs/backends.md, same "
            "names and semantics as ndarray_backend_numpy. Argument order: inputs, out, sizes.";
  m.attr("__tile_size__") = kTile;

  py::class_<AlignedArray, std::unique_ptr<AlignedArray>>(m, "Array", "Flat float32 buffer, 64-byte aligned.")
      .def(py::init<int64_t>(), py::arg("size"), "Uninitialised buffer of `size` (>= 0) floats.")
      .def("ptr", &AlignedArray::ptr_as_int, "Address of the first element (an int).")
      .def_readonly("size", &AlignedArray::size, "Number of float32 elements.");

  m.def(
      "wrap_pointer",
      [](uintptr_t address, int64_t size, py::object owner) {
        if (size < 0) throw std::invalid_argument("wrap_pointer: size must be >= 0, got " + Str(size));
        if (address % alignof(float) != 0)
          throw std::invalid_argument("wrap_pointer: address is not float32-aligned");
        return std::make_unique<AlignedArray>(AlignedArray::External{},
                                              reinterpret_cast<float*>(address), size);
      },
      py::arg("address"), py::arg("size"), py::arg("owner"), py::keep_alive<0, 3>(),
      "wrap_pointer(address, size, owner): an Array over `size` floats of host memory at "
      "`address` owned by `owner` (kept alive, never freed here): zero-copy DLPack import.");
  m.def("is_available", [] { return true; }, "Always True: the cpu backend needs no device.");
  m.def("synchronize", [] {}, "No-op: cpu kernels finish before returning.");

  m.def("to_numpy", ToNumpy, "to_numpy(a, shape, strides, offset): numpy copy of a strided view.");
  m.def("from_numpy", FromNumpy, "from_numpy(np_array, out): copy in as float32; sizes must match.");
  m.def("fill", Fill, "fill(out, val): out[:] = val.", Release());
  m.def("compact", Compact, "compact(a, out, shape, strides, offset): out[i] = a[view index i].", Release());
  m.def("pad", Pad,
        "pad(a, out, shape, strides, offset, before, after): out (compact, dims shape[i] + before[i] + "
        "after[i]) = the view of a with before[i] / after[i] zeros around dim i.", Release());
  m.def("ewise_setitem", EwiseSetitem,
        "ewise_setitem(a, out, shape, strides, offset): out[view index i] = a[i].", Release());
  m.def("scalar_setitem", ScalarSetitem,
        "scalar_setitem(size, val, out, shape, strides, offset): out[view index i] = val.", Release());
  m.def("scatter_add", ScatterAdd,
        "scatter_add(a, out, shape, strides, offset): out[view index i] += a[i]; the view may "
        "overlap itself (col2im), every contribution is summed.", Release());

  m.def("ewise_add", EwiseAdd, "ewise_add(a, b, out): out = a + b over out.size elements.", Release());
  m.def("ewise_mul", EwiseMul, "ewise_mul(a, b, out): out = a * b.", Release());
  m.def("ewise_add_strided", EwiseAddStrided,
        "ewise_add_strided(a, b, out, shape, strides, offset): out = a + (view of b); a, out compact.", Release());
  m.def("ewise_mul_strided", EwiseMulStrided,
        "ewise_mul_strided(a, b, out, shape, strides, offset): out = a * (view of b); a, out compact.", Release());
  m.def("ewise_div", EwiseDiv, "ewise_div(a, b, out): out = a / b.", Release());
  m.def("ewise_pow", EwisePow, "ewise_pow(a, b, out): out = a ** b (powf; NaN for a < 0, b fractional).", Release());
  m.def("ewise_maximum", EwiseMaximum, "ewise_maximum(a, b, out): numpy.maximum (NaN wins).", Release());
  m.def("ewise_eq", EwiseEq, "ewise_eq(a, b, out): 1.0 where a == b, else 0.0.", Release());
  m.def("ewise_ge", EwiseGe, "ewise_ge(a, b, out): 1.0 where a >= b, else 0.0.", Release());
  m.def("ewise_gt", EwiseGt, "ewise_gt(a, b, out): 1.0 where a > b, else 0.0 (NaN: 0.0).", Release());
  m.def("scalar_add", ScalarAdd, "scalar_add(a, val, out): out = a + float32(val).", Release());
  m.def("scalar_mul", ScalarMul, "scalar_mul(a, val, out): out = a * float32(val).", Release());
  m.def("scalar_div", ScalarDiv, "scalar_div(a, val, out): out = a / float32(val).", Release());
  m.def("scalar_power", ScalarPower, "scalar_power(a, val, out): out = a ** float32(val), as numpy.", Release());
  m.def("scalar_maximum", ScalarMaximum, "scalar_maximum(a, val, out): numpy.maximum(a, val).", Release());
  m.def("scalar_eq", ScalarEq, "scalar_eq(a, val, out): 1.0 where a == val, else 0.0.", Release());
  m.def("scalar_ge", ScalarGe, "scalar_ge(a, val, out): 1.0 where a >= val, else 0.0.", Release());
  m.def("scalar_gt", ScalarGt, "scalar_gt(a, val, out): 1.0 where a > val, else 0.0 (NaN: 0.0).", Release());
  m.def("ewise_log", EwiseLog, "ewise_log(a, out): natural log (vector Cephes logf, <= 3 ulp).", Release());
  m.def("ewise_exp", EwiseExp, "ewise_exp(a, out): exp (vector Cephes expf, <= 3 ulp).", Release());
  m.def("ewise_tanh", EwiseTanh, "ewise_tanh(a, out): tanh (vector Cephes tanhf, <= 2 ulp).", Release());

  // the matmuls release the GIL themselves, after validation
  m.def("matmul", Matmul, "matmul(a, b, out, m, n, p): out (m x p) = a (m x n) @ b (n x p).");
  m.def("matmul_tiled", MatmulTiled,
        "matmul_tiled(a, b, out, m, n, p): as matmul on 8 x 8 tiled layouts (contract 3.6); "
        "m, n, p multiples of 8; out is overwritten.");
  m.def("gemm", Gemm,
        "gemm(a, b, out, batch, m, n, p, a_offset, a_batch_stride, a_transposed, b_offset, "
        "b_batch_stride, b_transposed): out[i] (m x p) = opA_i (m x n) @ opB_i (n x p), i < batch.");
  m.def("gemm_strided_a", GemmStridedA,
        "gemm_strided_a(a, b, out, m, n, p, a_shape, a_strides, a_offset, a_row_dims, b_offset, "
        "b_transposed): out (m x p) = A @ opB, A (m x n) a strided view of a (implicit GEMM).");
  m.def("reduce_sum", ReduceSum, "reduce_sum(a, out, reduce_size): out[i] = sum of row i of a.", Release());
  m.def("reduce_max", ReduceMax, "reduce_max(a, out, reduce_size): out[i] = max of row i of a.", Release());
  m.def("softmax_rows", SoftmaxRowsFn, "softmax_rows(a, out, row_size): stable softmax of each row.", Release());
  m.def("log_softmax_rows", LogSoftmaxRows,
        "log_softmax_rows(a, out, row_size): stable log-softmax of each row.", Release());

  m.def("sgd_update", SgdUpdate,
        "sgd_update(w, grad, u, w_out, u_out, hyper, decay, has_u): one SGD step over w_out.size "
        "elements; hyper = [momentum, dampening, neg_lr, weight_decay].", Release());
  m.def("sgd_torch_update", SgdTorchUpdate,
        "sgd_torch_update(w, grad, u, w_out, u_out, hyper, decay, direction, has_u): one torch.optim.SGD "
        "step over w_out.size elements; hyper = [momentum, 1-dampening, neg_lr, weight_decay]; direction "
        "0 gradient (no buffer), 1 momentum, 2 nesterov.", Release());
  m.def("adam_update", AdamUpdate,
        "adam_update(w, grad, m, v, w_out, m_out, v_out, hyper, t, decay, has_state): one Adam step over "
        "w_out.size elements; hyper = [lr, b1, 1-b1, b2, 1-b2, eps, wd, 1-lr*wd], t the step count; "
        "decay 0 none, 1 L2, 2 decoupled (AdamW).", Release());
  m.def("batch_norm_forward", BatchNormForward,
        "batch_norm_forward(x, w, b, out, mean, var, rows, channels, inner, eps): x rows x C x inner; "
        "per-channel mean and biased var; out = (x - mean) * w / sqrt(var + eps) + b.", Release());
  m.def("batch_norm_forward_strided", BatchNormForwardStrided,
        "batch_norm_forward_strided(x, w, b, out, mean, var, rows, channels, inner, strides, eps): "
        "batch_norm_forward with x and out laid out by the dense (row, channel, inner) strides.", Release());
  m.def("batch_norm_running_update", BatchNormRunningUpdate,
        "batch_norm_running_update(mean, var, running_mean, running_var, momentum, keep): running = "
        "running * keep + batch * momentum for both statistics, in place (C = running_mean.size).",
        Release());
  m.def("batch_norm_backward", BatchNormBackward,
        "batch_norm_backward(x, out_grad, w, mean, var, dx, dw, db, rows, channels, inner, eps): the "
        "gradients of batch_norm_forward given its mean and var.", Release());
  m.def("batch_norm_backward_strided", BatchNormBackwardStrided,
        "batch_norm_backward_strided(x, out_grad, w, mean, var, dx, dw, db, rows, channels, inner, strides, eps): "
        "batch_norm_backward with x, out_grad and dx laid out by the dense (row, channel, inner) strides.",
        Release());

  m.def("softmax_rows_backward", SoftmaxRowsBackward,
        "softmax_rows_backward(y, out_grad, out, row_size): out = y * (g - sum(g * y)) per row.", Release());
  m.def("max_pool2d", MaxPool2d,
        "max_pool2d(a, out, N, H, W, C, kh, kw, sh, sw, ph, pw): N x H x W x C -> N x Ho x Wo x C.",
        Release());
  m.def("max_pool2d_backward", MaxPool2dBackward,
        "max_pool2d_backward(a, dout, dinp, N, H, W, C, kh, kw, sh, sw, ph, pw): dout to the first "
        "maximum of each window.", Release());
  m.def("avg_pool2d", AvgPool2d,
        "avg_pool2d(a, out, N, H, W, C, kh, kw, sh, sw, ph, pw): window means, padding counts as 0.",
        Release());
  m.def("avg_pool2d_backward", AvgPool2dBackward,
        "avg_pool2d_backward(dout, dinp, N, H, W, C, kh, kw, sh, sw, ph, pw): dout / (kh*kw) to "
        "every in-bounds window element.", Release());
  m.def("depthwise_conv2d", DepthwiseConv2d,
        "depthwise_conv2d(a, w, out, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw): N x H x W x C "
        "with a kh x kw x C weight (one filter per channel) -> N x Ho x Wo x C.", Release());
  m.def("depthwise_conv2d_backward_input", DepthwiseConv2dBackwardInput,
        "depthwise_conv2d_backward_input(dout, w, dinp, N, H, W, C, kh, kw, sh, sw, ph, pw, dh, "
        "dw): the N x H x W x C input gradient.", Release());
  m.def("depthwise_conv2d_backward_weight", DepthwiseConv2dBackwardWeight,
        "depthwise_conv2d_backward_weight(a, dout, dweight, N, H, W, C, kh, kw, sh, sw, ph, pw, "
        "dh, dw): the kh x kw x C weight gradient.", Release());
  m.def("winograd_input_transform", WinogradInputTransform,
        "winograd_input_transform(a, bt, out, N, H, W, C, ph, pw, m, alpha, th, tw): out[xi, t, c] "
        "= (B^T d_t B)[xi] for the alpha x alpha input patch d_t of every tile.", Release());
  m.def("winograd_input_transform_adjoint", WinogradInputTransformAdjoint,
        "winograd_input_transform_adjoint(dv, bt, dinp, N, H, W, C, ph, pw, m, alpha, th, tw): "
        "dinp = sum over tiles of B dv_t B^T at the tile's patch.", Release());
  m.def("winograd_output_transform", WinogradOutputTransform,
        "winograd_output_transform(mm, at, out, N, H, W, C, m, alpha, th, tw): every m x m output "
        "tile = A^T M_t A, cropped at the edges.", Release());
  m.def("winograd_output_transform_adjoint", WinogradOutputTransformAdjoint,
        "winograd_output_transform_adjoint(dout, at, dm, N, H, W, C, m, alpha, th, tw): dm_t = "
        "A dout_t A^T.", Release());
}
