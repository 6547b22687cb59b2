// needle CUDA backend: the binding functions of the other entry-point translation units, which
// ndarray_backend_cuda.cu's PYBIND11_MODULE calls. A few .cu files, so that nvcc (and g++ for the
// emulator) compiles them in parallel; each registers its functions on `m`.
#pragma once

#include <pybind11/pybind11.h>

namespace needle {
namespace cuda {

void BindMatmul(pybind11::module_& m);           // cuda_matmul.cu: matmul, GEMM, implicit GEMM
void BindRowsAndTraining(pybind11::module_& m);  // cuda_nn.cu: reductions, softmax, pooling, SGD, batch norm
void BindConvolution(pybind11::module_& m);      // cuda_nn.cu: depthwise conv, Winograd transforms

}  // namespace cuda
}  // namespace needle
