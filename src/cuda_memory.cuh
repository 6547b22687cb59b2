// needle CUDA backend: device discovery, the stream-ordered allocator, host -> device uploads
// and the Python-visible `Array` buffer (included by ndarray_backend_cuda.cu only).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_common.cuh"

namespace needle {
namespace cuda {

// ------------------------------------------------------------------------------------ device and memory

// Never throws: a missing driver or device just means "not available".
inline bool IsAvailable() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

inline void RequireDevice() {
  static bool ok = false;  // once a device answered, it stays
  if (ok) return;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error(std::string("cuda: no CUDA device available (cudaGetDeviceCount: ") +
                             cudaGetErrorString(err) + ")");
  }
  if (count == 0) throw std::runtime_error("cuda: no CUDA device available (0 devices found)");
  ok = true;
}

inline int CurrentDevice() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

inline int NumSMs() {
  static const int sms = [] {
    int v = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, CurrentDevice()));
    return std::max(v, 1);
  }();
  return sms;
}

// Stream-ordered allocation from the device's default memory pool when supported: freeing
// does not synchronise the device (plain cudaFree does), and the pool keeps freed blocks for
// reuse (release threshold = unlimited), like a caching allocator.
inline bool UsePools() {
  static const bool use = [] {
    const int dev = CurrentDevice();
    int supported = 0;
    if (cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    if (!supported) return false;
    cudaMemPool_t pool;
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
    uint64_t threshold = UINT64_MAX;
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    return true;
  }();
  return use;
}

// While Stream() is captured into a CUDA graph (cuda_graph.cuh): the scratch memory allocated
// in the capture (graph memory nodes, freed in the same capture), and the frees of other
// memory, which wait for the end of the capture (captured, they would run at every launch).
struct CaptureState {
  bool active = false;
  std::vector<const void*> graph_allocs;
  std::vector<void*> deferred_frees;
};
inline CaptureState& Capture() {
  static CaptureState state;
  return state;
}

inline void* DeviceAlloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  if (!UsePools()) {
    CUDA_CHECK(cudaMalloc(&p, bytes));  // fails during a capture: the jit then replays plainly
    return p;
  }
  if (cudaMallocAsync(&p, bytes, Stream()) == cudaSuccess) {
    if (Capture().active) Capture().graph_allocs.push_back(p);
    return p;
  }
  // Out of memory (or another failure): hand cached blocks back to the driver and retry once.
  (void)cudaGetLastError();
  if (Capture().active)
    throw std::runtime_error("cuda graph capture: cudaMallocAsync of " + std::to_string(bytes) +
                             " bytes of scratch memory failed");
  cudaMemPool_t pool;
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, CurrentDevice()));
  CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
  CUDA_CHECK(cudaMallocAsync(&p, bytes, Stream()));
  return p;
}

// Never throws (called from destructors); errors at interpreter exit are ignored.
inline void DeviceFree(void* p) noexcept {
  if (p == nullptr) return;
  CaptureState& capture = Capture();
  if (capture.active) {
    const auto& mine = capture.graph_allocs;
    if (std::find(mine.begin(), mine.end(), p) == mine.end()) {
      try {
        capture.deferred_frees.push_back(p);
      } catch (...) {  // out of host memory: the block leaks rather than joining the graph
      }
      return;
    }
  }
  const cudaError_t err = UsePools() ? cudaFreeAsync(p, Stream()) : cudaFree(p);
  if (err != cudaSuccess) (void)cudaGetLastError();
}

// Scratch memory for the duration of one call; freed in stream order after the launches.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : p_(DeviceAlloc(bytes)) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { DeviceFree(p_); }
  template <typename T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
};

// Host -> device copies that do not wait for the GPU. A cudaMemcpy from pageable memory (a
// numpy array) first waits for all queued work, which would stall every training step at its
// data upload. Instead the bytes go into one of a ring of pinned staging buffers and the DMA
// from there is queued on the stream; a slot is refilled once the event recorded after its
// last copy has fired, so the host waits only when it runs kSlots uploads ahead of the GPU.
// Uploads above kMaxStaged bytes (a whole data set, once) are plain synchronous copies.
class Uploader {
 public:
  static Uploader& Get() {
    static Uploader* uploader = new Uploader;  // never destroyed: no CUDA calls at interpreter exit
    return *uploader;
  }

  void Copy(void* dst, const void* src, size_t bytes) {
    if (Capture().active)  // a captured copy would read the staging slot at every launch
      throw std::runtime_error("cuda graph capture: a host -> device upload cannot be captured");
    if (bytes == 0) return;
    if (bytes > kMaxStaged) {
      CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
      return;
    }
    Slot& slot = slots_[next_];
    next_ = (next_ + 1) % kSlots;
    if (slot.done == nullptr) CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
    if (slot.pending) CUDA_CHECK(cudaEventSynchronize(slot.done));  // its previous copy has left
    slot.pending = false;
    if (slot.capacity < bytes) {
      if (slot.host != nullptr) CUDA_CHECK(cudaFreeHost(slot.host));
      slot.host = nullptr;
      slot.capacity = 0;
      size_t capacity = 4096;
      while (capacity < bytes) capacity *= 2;
      CUDA_CHECK(cudaMallocHost(&slot.host, capacity));
      slot.capacity = capacity;
    }
    std::memcpy(slot.host, src, bytes);
    CUDA_CHECK(cudaMemcpyAsync(dst, slot.host, bytes, cudaMemcpyHostToDevice, Stream()));
    CUDA_CHECK(cudaEventRecord(slot.done, Stream()));
    slot.pending = true;
  }

 private:
  static constexpr int kSlots = 8;
  static constexpr size_t kMaxStaged = size_t{64} << 20;
  struct Slot {
    void* host = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
    bool pending = false;
  };
  Slot slots_[kSlots];
  int next_ = 0;
};

inline void UploadAsync(void* dst, const void* src, size_t bytes) { Uploader::Get().Copy(dst, src, bytes); }

// The Python-visible buffer: `size` float32 elements of device memory.
class CudaArray {
 public:
  explicit CudaArray(int64_t size) : size(size) {
    if (size < 0) throw std::invalid_argument("Array: size must be >= 0, got " + Str(size));
    if (size > INT64_MAX / static_cast<int64_t>(sizeof(float)))
      throw std::invalid_argument("Array: size " + Str(size) + " is too large");
    RequireDevice();
    if (Capture().active)  // it would be graph memory, gone with the graph
      throw std::runtime_error("Array: cannot allocate a buffer while a CUDA graph is captured");
    data = static_cast<float*>(DeviceAlloc(static_cast<size_t>(size) * sizeof(float)));
  }
  // A view of device memory owned elsewhere (wrap_pointer: DLPack import); never freed here.
  struct External {};
  CudaArray(External, float* p, int64_t n) : data(p), size(n), owned(false) {}
  ~CudaArray() {
    if (owned) DeviceFree(data);
  }
  CudaArray(const CudaArray&) = delete;
  CudaArray& operator=(const CudaArray&) = delete;

  uintptr_t ptr() const { return reinterpret_cast<uintptr_t>(data); }

  float* data = nullptr;
  const int64_t size;
  const bool owned = true;
};

}  // namespace cuda
}  // namespace needle
