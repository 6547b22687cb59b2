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
// cuda_gemm.cuh FP32 SGEMM; cuda_gemm_tf32.cuh tensor cores; cuda_nn_kernels.cuh pooling and
// training) -> launchers (cuda_launch.cuh, cuda_gemm_launch.cuh) -> the entry points (validation,
// then a launcher) with their bindings, one translation unit per family so that nvcc compiles
// them in parallel: this file (copies, views, element-wise, and the module itself), cuda_matmul.cu,
// cuda_nn.cu (cuda_ops.cuh declares their Bind* functions).
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
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_common.cuh"
#include "cuda_graph.cuh"
#include "cuda_launch.cuh"
#include "cuda_memory.cuh"
#include "cuda_ops.cuh"
#include "cuda_pad.cuh"

namespace needle {
namespace cuda {

namespace py = pybind11;

// ------------------------------------------------------------------------------------ fill

// FillKernel is not a template, so it is defined in this translation unit only; the others
// call LaunchFill through its declaration in cuda_launch.cuh.
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

void LaunchFill(float* out, int64_t n, float val) {
  if (n == 0) return;
  const bool vec = Aligned16(out);
  Launch<FillKernel>(GridFor(vec ? n / 4 + 1 : n), kThreads, out, n, vec, val);
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

void Pad(const CudaArray& a, CudaArray& out, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
         int64_t offset, const std::vector<int64_t>& before, const std::vector<int64_t>& after) {
  CheckView("pad", a.size, shape, strides, offset);
  DeviceBuffer keep;
  const float* src = Unaliased(a, out, a.size, &keep);
  LaunchPad("pad", src, out.data, out.size, shape, strides, offset, before, after);
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

// The emulator build (tests/cuda_emu) compiles these files again under another module name.
#ifndef NEEDLE_CUDA_MODULE
#define NEEDLE_CUDA_MODULE ndarray_backend_cuda
#endif
PYBIND11_MODULE(NEEDLE_CUDA_MODULE, m) {
  namespace py = pybind11;
  using namespace needle::cuda;
  using py::arg;
  m.doc() = "needle CUDA backend: the flat float32 function table of docs/backends.md";

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
  m.def("pad", &Pad, arg("a"), arg("out"), arg("shape"), arg("strides"), arg("offset"), arg("before"),
        arg("after"));
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
  BindEwise<GtOp>(m, "ewise_gt");
  BindScalar<AddOp>(m, "scalar_add");
  BindScalar<MulOp>(m, "scalar_mul");
  BindScalar<DivOp>(m, "scalar_div");
  m.def("scalar_power", &ScalarPower, arg("a"), arg("val"), arg("out"));
  BindScalar<MaximumOp>(m, "scalar_maximum");
  BindScalar<EqOp>(m, "scalar_eq");
  BindScalar<GeOp>(m, "scalar_ge");
  BindScalar<GtOp>(m, "scalar_gt");
  BindUnary<LogOp>(m, "ewise_log");
  BindUnary<ExpOp>(m, "ewise_exp");
  BindUnary<TanhOp>(m, "ewise_tanh");

  BindMatmul(m);           // cuda_matmul.cu
  BindRowsAndTraining(m);  // cuda_nn.cu
  BindConvolution(m);      // cuda_nn.cu
}
