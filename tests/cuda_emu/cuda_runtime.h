// The CUDA runtime calls needle uses, on the CPU: device memory is host memory, every call is
// synchronous (except work recorded by a stream capture: cuda_graph_emu.h), and there is one device ("emulated", 2 SMs by default so grid-stride loops wrap).
// CUDA_EMU_SMS sets the SM count; CUDA_EMU_MEMPOOLS=1 reports stream-ordered memory pools as
// supported (default: unsupported, so the cudaMalloc fallback runs).
#pragma once

#include <cstdlib>
#include <cstring>

#include "cuda_emu.h"

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorIllegalState = 401,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorStreamCaptureWrongThread = 908,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMemoryPoolsSupported = 115,
};
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
typedef struct CUmemPool_st* cudaMemPool_t;
#define cudaEventDisableTiming 0x02
struct cudaFuncAttributes {
  int binaryVersion = 80, ptxVersion = 80, maxThreadsPerBlock = 1024;
  size_t sharedSizeBytes = 0;
};
// An event records nothing (every call has completed when it returns); it exists so that a
// double destroy or a use after destroy shows up under ASan.
struct CUevent_st {
  bool recorded = false;
};

namespace cuda_emu {
inline int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : fallback;
}
inline bool PoolsSupported() { return EnvInt("CUDA_EMU_MEMPOOLS", 0) == 1; }
// Exact-size allocations (no rounding up), so ASan flags the first byte past the end.
inline cudaError_t Allocate(void** p, size_t bytes) {
  if (p == nullptr) return cudaErrorInvalidValue;
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  return posix_memalign(p, 256, bytes) == 0 ? cudaSuccess : cudaErrorMemoryAllocation;
}
}  // namespace cuda_emu

#include "cuda_graph_emu.h"

inline cudaError_t cudaGetLastError() {
  const auto e = static_cast<cudaError_t>(cuda_emu::LastLaunchError());
  cuda_emu::LastLaunchError() = 0;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return static_cast<cudaError_t>(cuda_emu::LastLaunchError()); }
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
  }
  return "unknown error";
}

// ---- devices
inline cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* dev) {
  *dev = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int dev) {
  if (dev != 0) return cudaErrorInvalidValue;
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *v = cuda_emu::EnvInt("CUDA_EMU_SMS", 2); break;
    case cudaDevAttrComputeCapabilityMajor: *v = 8; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrMemoryPoolsSupported: *v = cuda_emu::PoolsSupported() ? 1 : 0; break;
    default: return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  return cuda_emu::CaptureForbids() ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}
template <typename F>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, F) {
  *attr = cudaFuncAttributes{};
  return cudaSuccess;
}

// ---- memory
inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (cuda_emu::CaptureForbids()) return cudaErrorStreamCaptureUnsupported;
  return cuda_emu::Allocate(p, bytes);
}
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
inline cudaError_t cudaFree(void* p) {
  if (cuda_emu::CaptureForbids()) return cudaErrorStreamCaptureUnsupported;
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void** p, size_t bytes) { return cudaMalloc(p, bytes); }
inline cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }
// During a capture the block belongs to the graph: allocated now, at a fixed address, and
// released with the graph (a free of it in the same capture is its free node).
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s) {
  if (!cuda_emu::PoolsSupported()) return cudaErrorNotSupported;
  if (cuda_emu::ImplicitWithCapture(s)) return cudaErrorStreamCaptureImplicit;
  const cudaError_t err = cuda_emu::Allocate(p, bytes);
  if (err == cudaSuccess && *p != nullptr && s != nullptr && s->graph != nullptr)
    s->graph->memory->blocks.push_back(*p);
  return err;
}
template <typename T>
inline cudaError_t cudaMallocAsync(T** p, size_t bytes, cudaStream_t s) {
  return cudaMallocAsync(reinterpret_cast<void**>(p), bytes, s);
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  if (!cuda_emu::PoolsSupported()) return cudaErrorNotSupported;
  if (s != nullptr && s->graph != nullptr) {
    const auto& owned = s->graph->memory->blocks;
    if (std::find(owned.begin(), owned.end(), p) != owned.end()) return cudaSuccess;
  }
  return cuda_emu::Enqueue(s, [p] { std::free(p); });
}
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int dev) {
  if (!cuda_emu::PoolsSupported() || dev != 0) return cudaErrorNotSupported;
  *pool = reinterpret_cast<cudaMemPool_t>(&cuda_emu::LastLaunchError);  // any non-null handle
  return cudaSuccess;
}
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr, void* value) {
  return pool != nullptr && value != nullptr ? cudaSuccess : cudaErrorInvalidValue;
}
inline cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t) {
  return pool != nullptr ? cudaSuccess : cudaErrorInvalidValue;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (cuda_emu::CaptureForbids()) return cudaErrorStreamCaptureUnsupported;
  if (bytes != 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                                   cudaStream_t s = nullptr) {
  return cuda_emu::Enqueue(s, [=] {
    if (bytes != 0) std::memmove(dst, src, bytes);
  });
}
inline cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (cuda_emu::CaptureForbids()) return cudaErrorStreamCaptureUnsupported;
  if (bytes != 0) std::memset(dst, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s = nullptr) {
  return cuda_emu::Enqueue(s, [=] {
    if (bytes != 0) std::memset(dst, value, bytes);
  });
}

// ---- events
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_st;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
  e->recorded = true;
  return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (cuda_emu::CaptureForbids()) return cudaErrorStreamCaptureUnsupported;
  return e->recorded ? cudaSuccess : cudaErrorInvalidValue;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
