// Small kernels that exercise one emulator feature each, including the faults it must report;
// tests/test_cuda_emulator.py builds this as a Python module and checks every entry point.
// They launch through needle's own Launch<Kernel>() (src/cuda_common.cuh), as the backend does.
#include <mma.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime.h>

#include <vector>

#include "cuda_common.cuh"

namespace py = pybind11;
using needle::cuda::Launch;

namespace {

constexpr unsigned kFull = 0xffffffffu;

// Copies n floats from the emulated device.
std::vector<float> Download(const float* d, size_t n) {
  std::vector<float> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
  return h;
}

// Runs `launch(device_out)` with n output floats, returns them.
template <typename F>
std::vector<float> WithOutput(size_t n, F launch) {
  float* out = nullptr;
  CUDA_CHECK(cudaMalloc(&out, n * sizeof(float)));
  try {
    launch(out);
  } catch (...) {
    cudaFree(out);
    throw;
  }
  std::vector<float> h = Download(out, n);
  CUDA_CHECK(cudaFree(out));
  return h;
}

// ---- faults

// Odd lanes wait at __syncthreads, even lanes at a shuffle that needs them: never released.
__global__ void SplitBarrierKernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  if (threadIdx.x % 2) __syncthreads();
  else v = __shfl_xor_sync(kFull, v, 1);
  out[threadIdx.x] = v;
}

// Lane 5 exits; the others shuffle with a mask that includes it.
__global__ void ShuffleExitedLaneKernel(float* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_xor_sync(kFull, 1.0f, 1);
}

__global__ void EmptyKernel(float* out) { out[0] = 1.0f; }

// A wmma load from a pointer that is not 32-byte aligned.
__global__ void MisalignedWmmaKernel(float* out) {
  __shared__ __align__(32) float tile[16 * 8 + 1];
  for (int i = threadIdx.x; i < 16 * 8 + 1; i += 32) tile[i] = 1.0f;
  __syncwarp();
  nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 8, nvcuda::wmma::precision::tf32,
                         nvcuda::wmma::row_major> a;
  nvcuda::wmma::load_matrix_sync(a, tile + 1, 8);
  out[threadIdx.x] = a.x[0];
}

// Writes one float past the end of its n-float buffer (for the ASan build only).
__global__ void OutOfBoundsKernel(float* out, int n) {
  if (threadIdx.x == 0) out[n] = 1.0f;
}

// ---- features

// out[b] = the first element of shared memory, read before any write, in every block.
__global__ void ReadSharedFirstKernel(float* out) {
  __shared__ float s[4];
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
  __syncthreads();
  s[threadIdx.x % 4] = 1.0f;
}

// out[0] = the address of an __align__(64) shared array modulo 64.
__global__ void AlignedSharedKernel(float* out) {
  __shared__ char pad[3];
  __shared__ __align__(64) float a[5];
  pad[0] = 0;
  a[0] = 0.0f;
  out[0] = static_cast<float>(reinterpret_cast<uintptr_t>(a) % 64) + pad[0];
}

// A butterfly sum of double lane values (exact) and float lane values, per warp.
__global__ void ShuffleSumKernel(float* out) {
  double d = 1.0 + threadIdx.x * 1e-12;
  float f = static_cast<float>(threadIdx.x);
  for (int delta = 16; delta > 0; delta /= 2) {
    d += __shfl_xor_sync(kFull, d, delta);
    f += __shfl_xor_sync(kFull, f, delta);
  }
  out[2 * threadIdx.x] = static_cast<float>((d - 32.0) * 1e12);  // 0 + 1 + ... + 31
  out[2 * threadIdx.x + 1] = f;
}

// Every thread of a 3-D grid of 3-D blocks writes its global linear index once.
__global__ void Grid3dKernel(float* out) {
  const unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned i = bx * (blockDim.x * blockDim.y * blockDim.z) + tx;
  out[i] += static_cast<float>(i) + 1.0f;
}

__global__ void AtomicCountKernel(float* out) { atomicAdd(out, 0.5f); }

// __umulhi, __f*_rn (never fused) and a float4 load, from thread 0.
__global__ void ScalarIntrinsicsKernel(const float* in, float* out) {
  if (threadIdx.x != 0) return;
  out[0] = static_cast<float>(__umulhi(0xffffffffu, 0x100u));  // 0xff
  out[1] = __fadd_rn(__fmul_rn(in[0], in[1]), in[2]);
  out[2] = __fsub_rn(in[0], in[1]);
  const float4 v = *reinterpret_cast<const float4*>(in + 4);
  out[3] = v.x + v.y + v.z + v.w;
}

// C = A @ B (16 x 8 by 8 x 16, row-major) by one warp through wmma TF32 fragments.
__global__ void WmmaKernel(const float* a, const float* b, float* c) {
  __shared__ __align__(32) float sa[16 * 8], sb[8 * 16], sc[16 * 16];
  for (int i = threadIdx.x; i < 128; i += 32) {
    sa[i] = a[i];
    sb[i] = b[i];
  }
  __syncwarp();
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, sa, 8);
  wmma::load_matrix_sync(fb, sb, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(sc, acc, 16, wmma::mem_row_major);
  __syncwarp();
  for (int i = threadIdx.x; i < 256; i += 32) c[i] = sc[i];
}

// Racy on purpose (no barrier between the write and the neighbour's read): thread t reads
// what thread t - 1 wrote, which only the forward order happens to deliver.
__global__ void RacyNeighbourKernel(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = static_cast<float>(threadIdx.x);
  out[threadIdx.x] = threadIdx.x == 0 ? 0.0f : s[threadIdx.x - 1];
}

// The same with the barrier: right in every order.
__global__ void SyncedNeighbourKernel(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = threadIdx.x == 0 ? 0.0f : s[threadIdx.x - 1];
}

// A kernel argument passed by value: a graph keeps the value it had at capture time.
struct Pair {
  float a, b;
};
__global__ void WritePairKernel(float* out, Pair p) {
  if (threadIdx.x == 0) {
    out[0] = p.a;
    out[1] = p.b;
  }
}

// One call a GPU forbids during a capture, made inside a fresh capture of `s`: the call's
// error and cudaStreamEndCapture's.
template <typename F>
py::tuple IllegalInCapture(cudaStream_t s, F call) {
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  const cudaError_t err = call();
  cudaGraph_t g = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(s, &g);
  return py::make_tuple(cudaGetErrorString(err), cudaGetErrorString(ended), g == nullptr);
}

std::vector<float> Upload(const std::vector<float>& h, float** d) {
  CUDA_CHECK(cudaMalloc(d, h.size() * sizeof(float)));
  CUDA_CHECK(cudaMemcpy(*d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
  return h;
}

}  // namespace

PYBIND11_MODULE(emu_selftest, m) {
  m.def("split_barrier", [] { return WithOutput(64, [](float* o) { Launch<SplitBarrierKernel>(1, 64, o); }); });
  m.def("shuffle_exited_lane",
        [] { return WithOutput(32, [](float* o) { Launch<ShuffleExitedLaneKernel>(1, 32, o); }); });
  m.def("misaligned_wmma", [] { return WithOutput(32, [](float* o) { Launch<MisalignedWmmaKernel>(1, 32, o); }); });
  m.def("launch", [](std::vector<unsigned> grid, std::vector<unsigned> block) {
    return WithOutput(1, [&](float* o) {
      Launch<EmptyKernel>(dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), o);
    });
  });
  m.def("out_of_bounds", [] { return WithOutput(4, [](float* o) { Launch<OutOfBoundsKernel>(1, 32, o, 4); }); });
  m.def("read_shared_first",
        [] { return WithOutput(3, [](float* o) { Launch<ReadSharedFirstKernel>(3, 32, o); }); });
  m.def("aligned_shared", [] { return WithOutput(1, [](float* o) { Launch<AlignedSharedKernel>(1, 1, o); }); });
  m.def("shuffle_sum", [] { return WithOutput(128, [](float* o) { Launch<ShuffleSumKernel>(1, 64, o); }); });
  m.def("grid3d", [] {
    return WithOutput(2 * 3 * 4 * 60, [](float* o) {
      CUDA_CHECK(cudaMemsetAsync(o, 0, 2 * 3 * 4 * 60 * sizeof(float), 0));
      Launch<Grid3dKernel>(dim3(2, 3, 4), dim3(5, 4, 3), o);
    });
  });
  m.def("atomic_count", [] {
    return WithOutput(1, [](float* o) {
      CUDA_CHECK(cudaMemset(o, 0, sizeof(float)));
      Launch<AtomicCountKernel>(7, 96, o);
    });
  });
  m.def("scalar_intrinsics", [](std::vector<float> in) {
    float* d = nullptr;
    Upload(in, &d);
    std::vector<float> r = WithOutput(4, [&](float* o) { Launch<ScalarIntrinsicsKernel>(1, 32, d, o); });
    CUDA_CHECK(cudaFree(d));
    return r;
  });
  m.def("wmma", [](std::vector<float> a, std::vector<float> b) {
    float *da = nullptr, *db = nullptr;
    Upload(a, &da);
    Upload(b, &db);
    std::vector<float> r = WithOutput(256, [&](float* o) { Launch<WmmaKernel>(1, 32, da, db, o); });
    CUDA_CHECK(cudaFree(da));
    CUDA_CHECK(cudaFree(db));
    return r;
  });
  m.def("tf32", [](float x) { return nvcuda::wmma::__float_to_tf32(x); });
  m.def("racy_neighbour", [] { return WithOutput(64, [](float* o) { Launch<RacyNeighbourKernel>(1, 64, o); }); });
  m.def("synced_neighbour",
        [] { return WithOutput(64, [](float* o) { Launch<SyncedNeighbourKernel>(1, 64, o); }); });
  // Stream capture and graphs: what is recorded, when it runs, what a capture forbids.
  m.def("graphs", [] {
    py::dict r;
    const cudaStream_t s = needle::cuda::Stream();  // Launch<> queues on it
    float* d = nullptr;
    CUDA_CHECK(cudaMalloc(&d, 4 * sizeof(float)));
    CUDA_CHECK(cudaMemset(d, 0, 4 * sizeof(float)));
    r["legacy_stream"] = cudaGetErrorString(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal));
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    Pair p{1.0f, 2.0f};
    Launch<WritePairKernel>(1, 32, d, p);
    p = Pair{5.0f, 6.0f};
    CUDA_CHECK(cudaMemcpyAsync(d + 2, d, 2 * sizeof(float), cudaMemcpyDeviceToDevice, s));
    cudaStreamCaptureStatus status;
    CUDA_CHECK(cudaStreamIsCapturing(s, &status));
    r["status"] = static_cast<int>(status);
    r["while_capturing"] = std::vector<float>(d, d + 4);  // emulated device memory is host memory
    cudaGraph_t g = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(s, &g));
    size_t nodes = 0;
    CUDA_CHECK(cudaGraphGetNodes(g, nullptr, &nodes));
    r["nodes"] = nodes;
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
    CUDA_CHECK(cudaGraphDestroy(g));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    r["launched"] = Download(d, 4);
    CUDA_CHECK(cudaMemset(d, 0, 4 * sizeof(float)));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    r["launched_again"] = Download(d, 4);
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    void* q = nullptr;
    float h[4];
    r["malloc"] = IllegalInCapture(s, [&] { return cudaMalloc(&q, 16); });
    r["memcpy"] = IllegalInCapture(s, [&] { return cudaMemcpy(h, d, 16, cudaMemcpyDeviceToHost); });
    r["device_sync"] = IllegalInCapture(s, [] { return cudaDeviceSynchronize(); });
    r["stream_sync"] = IllegalInCapture(s, [&] { return cudaStreamSynchronize(s); });
    r["legacy_async"] = IllegalInCapture(s, [&] { return cudaMemsetAsync(d, 0, 16, nullptr); });
    r["after"] = Download(d, 4);  // none of those ran or broke the stream
    CUDA_CHECK(cudaFree(d));
    return r;
  });
  // The runtime calls the backend uses: memory (async, pinned, pools when enabled), events,
  // device queries. Returns what it saw.
  m.def("runtime", [] {
    py::dict r;
    int count = 0, dev = -1, sms = 0, cc = 0, pools = 0;
    CUDA_CHECK(cudaGetDeviceCount(&count));
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&cc, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev));
    r["count"] = count;
    r["sms"] = sms;
    r["cc_major"] = cc;
    r["pools"] = pools;
    void* p = nullptr;
    const cudaError_t async = cudaMallocAsync(&p, 64, 0);
    r["malloc_async"] = cudaGetErrorString(async);
    if (async == cudaSuccess) {
      cudaMemPool_t pool;
      CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
      uint64_t threshold = UINT64_MAX;
      CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
      CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
      CUDA_CHECK(cudaFreeAsync(p, 0));
    }
    float* host = nullptr;
    float* dev_buf = nullptr;
    CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host), 4 * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&dev_buf, 4 * sizeof(float)));
    for (int i = 0; i < 4; ++i) host[i] = static_cast<float>(i + 1);
    cudaEvent_t done;
    CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    CUDA_CHECK(cudaMemsetAsync(dev_buf, 0, 4 * sizeof(float), 0));
    CUDA_CHECK(cudaMemcpyAsync(dev_buf, host, 2 * sizeof(float), cudaMemcpyHostToDevice, 0));
    CUDA_CHECK(cudaEventRecord(done, 0));
    CUDA_CHECK(cudaEventSynchronize(done));
    CUDA_CHECK(cudaEventDestroy(done));
    CUDA_CHECK(cudaDeviceSynchronize());
    r["copied"] = Download(dev_buf, 4);
    CUDA_CHECK(cudaFree(dev_buf));
    CUDA_CHECK(cudaFreeHost(host));
    r["last_error"] = cudaGetErrorString(cudaGetLastError());
    return r;
  });
}
