// The CUDA backend's own source, compiled by the host compiler against the emulator's
// cuda_runtime.h and mma.h (this folder comes first on the include path): the module
// needle.backend_ndarray.ndarray_backend_cuda_emu (or _emu_asan, its AddressSanitizer build).
// See docs/cuda.md, "Testing CUDA without a GPU".
#ifndef NEEDLE_CUDA_MODULE
#define NEEDLE_CUDA_MODULE ndarray_backend_cuda_emu
#endif
#include "ndarray_backend_cuda.cu"
