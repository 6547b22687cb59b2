// Streams and CUDA graphs on the emulator (included by cuda_runtime.h). Work queued on a stream
// runs at once, as everywhere in the emulator, except while the stream captures: then kernel
// launches, async copies / memsets and stream-ordered frees are recorded as graph nodes (a
// launch copies its arguments at capture time, as CUDA does), cudaMallocAsync hands out memory
// the graph owns (a fixed address, as a graph's memory node has), and cudaGraphLaunch runs the
// nodes in order. A call a GPU forbids while the calling thread captures (synchronous copy or
// memset, cudaMalloc / cudaFree, a synchronize) returns cudaErrorStreamCaptureUnsupported and
// invalidates the capture; legacy-stream work while a blocking stream captures returns
// cudaErrorStreamCaptureImplicit. One capture at a time.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01

namespace cuda_emu {
// Memory handed out by cudaMallocAsync during a capture: freed with the last graph holding it.
struct GraphMemory {
  std::vector<void*> blocks;
  ~GraphMemory() {
    for (void* p : blocks) std::free(p);
  }
};
using Node = std::function<void()>;
}  // namespace cuda_emu

struct CUgraph_st {
  std::vector<cuda_emu::Node> nodes;
  std::shared_ptr<cuda_emu::GraphMemory> memory = std::make_shared<cuda_emu::GraphMemory>();
};
struct CUgraphExec_st {
  std::vector<cuda_emu::Node> nodes;
  std::shared_ptr<cuda_emu::GraphMemory> memory;
};
struct CUgraphNode_st;
struct CUstream_st {
  unsigned flags = cudaStreamDefault;
  CUgraph_st* graph = nullptr;  // the graph being captured, or nullptr
  bool invalidated = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;  // the thread that began the capture
};
typedef CUgraph_st* cudaGraph_t;
typedef CUgraphExec_st* cudaGraphExec_t;
typedef CUgraphNode_st* cudaGraphNode_t;

namespace cuda_emu {
inline cudaStream_t& CapturingStream() {
  static cudaStream_t s = nullptr;
  return s;
}

// True (and the capture invalidated) if a call that may synchronise is made now by a thread
// the capture's mode forbids it to.
inline bool CaptureForbids() {
  const cudaStream_t s = CapturingStream();
  if (s == nullptr || s->mode == cudaStreamCaptureModeRelaxed) return false;
  if (s->mode == cudaStreamCaptureModeThreadLocal && s->thread != std::this_thread::get_id()) return false;
  s->invalidated = true;
  return true;
}

// Legacy-stream work would have to wait for a capturing blocking stream: not allowed.
inline bool ImplicitWithCapture(cudaStream_t s) {
  const cudaStream_t c = CapturingStream();
  if (s != nullptr || c == nullptr || (c->flags & cudaStreamNonBlocking)) return false;
  c->invalidated = true;
  return true;
}

// Runs `work` now, or records it when stream s captures.
inline cudaError_t Enqueue(cudaStream_t s, Node work) {
  if (ImplicitWithCapture(s)) return cudaErrorStreamCaptureImplicit;
  if (s == nullptr || s->graph == nullptr) {
    work();
    return cudaSuccess;
  }
  if (s->invalidated) return cudaErrorStreamCaptureInvalidated;
  s->graph->nodes.push_back(std::move(work));
  return cudaSuccess;
}

// kernel<<<grid, block, 0, stream>>>(args...): run now, or recorded with its arguments
// converted to the kernel's parameter types (copied) at capture time.
template <typename... Params, typename... Args>
void LaunchOn(cudaStream_t s, const char* name, dim3 grid, dim3 block, void (*kernel)(Params...),
              Args&&... args) {
  if (s == nullptr || s->graph == nullptr) {
    if (ImplicitWithCapture(s)) {
      LastLaunchError() = cudaErrorStreamCaptureImplicit;
      return;
    }
    Launch(name, grid, block, kernel, std::forward<Args>(args)...);
    return;
  }
  if (!ValidLaunch(grid, block) || s->invalidated) {
    LastLaunchError() = s->invalidated ? cudaErrorStreamCaptureInvalidated : cudaErrorInvalidConfiguration;
    s->invalidated = true;
    return;
  }
  auto params = std::make_shared<std::tuple<std::decay_t<Params>...>>(std::forward<Args>(args)...);
  s->graph->nodes.push_back([name, grid, block, kernel, params] {
    const std::function<void()> body = [&] { std::apply(kernel, *params); };
    Run(name, grid, block, body);
  });
}
}  // namespace cuda_emu

// ---- streams
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  if (s == nullptr || flags > cudaStreamNonBlocking) return cudaErrorInvalidValue;
  *s = new CUstream_st;
  (*s)->flags = flags;
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s == nullptr || s->graph != nullptr) return cudaErrorInvalidValue;
  delete s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if ((s != nullptr && s->graph != nullptr) || cuda_emu::CaptureForbids()) {
    if (s != nullptr && s->graph != nullptr) s->invalidated = true;
    return cudaErrorStreamCaptureUnsupported;
  }
  return cudaSuccess;
}

// ---- capture
inline cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  if (s == nullptr) return cudaErrorStreamCaptureUnsupported;  // the legacy stream cannot capture
  if (cuda_emu::CapturingStream() != nullptr) return cudaErrorIllegalState;
  s->graph = new CUgraph_st;
  s->invalidated = false;
  s->mode = mode;
  s->thread = std::this_thread::get_id();
  cuda_emu::CapturingStream() = s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph) {
  if (s == nullptr || s->graph == nullptr || graph == nullptr) return cudaErrorIllegalState;
  if (s->thread != std::this_thread::get_id() && s->mode != cudaStreamCaptureModeRelaxed)
    return cudaErrorStreamCaptureWrongThread;
  cudaGraph_t g = std::exchange(s->graph, nullptr);
  cuda_emu::CapturingStream() = nullptr;
  if (std::exchange(s->invalidated, false)) {
    delete g;
    *graph = nullptr;
    return cudaErrorStreamCaptureInvalidated;
  }
  *graph = g;
  return cudaSuccess;
}
inline cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return cudaErrorInvalidValue;
  if (s == nullptr) {
    if (cuda_emu::ImplicitWithCapture(s)) return cudaErrorStreamCaptureImplicit;
    *status = cudaStreamCaptureStatusNone;
  } else {
    *status = s->graph == nullptr ? cudaStreamCaptureStatusNone
              : s->invalidated    ? cudaStreamCaptureStatusInvalidated
                                  : cudaStreamCaptureStatusActive;
  }
  return cudaSuccess;
}

// ---- graphs
inline cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t* nodes, size_t* count) {
  if (g == nullptr || count == nullptr) return cudaErrorInvalidValue;
  if (nodes != nullptr) std::fill(nodes, nodes + std::min(*count, g->nodes.size()), nullptr);
  *count = g->nodes.size();
  return cudaSuccess;
}
// The CUDA 12 signature.
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long flags = 0) {
  if (exec == nullptr || g == nullptr || flags != 0) return cudaErrorInvalidValue;
  *exec = new CUgraphExec_st{g->nodes, g->memory};
  return cudaSuccess;
}
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (exec == nullptr) return cudaErrorInvalidValue;
  return cuda_emu::Enqueue(s, [exec] {
    for (const cuda_emu::Node& node : exec->nodes) node();
  });
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
