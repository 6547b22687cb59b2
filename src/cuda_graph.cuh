// needle CUDA backend: CUDA graphs of the work queued on Stream() (included by
// ndarray_backend_cuda.cu only). ndl.jit captures each run of backend calls between two host
// steps once and then replays it with one cudaGraphLaunch (docs/jit.md, "CUDA graphs").
//
// Python (the `_graphs` submodule; a leading underscore keeps it out of the backend function
// table, which the CPU backends share):
//     _graphs.begin()         start capturing Stream(): backend calls are recorded, not run
//     _graphs.end() -> Graph  stop; RuntimeError if a call was not capturable (see below)
//     Graph.launch()          queue the recorded work on Stream(); Graph.nodes: how many nodes
//     _graphs.capturing()     whether a capture is running
// What cannot be captured makes the call raise RuntimeError and invalidates the capture: a
// synchronous copy (to_numpy, the Winograd matrices), a host upload (from_numpy, a view of more
// than 8 dims), a new Array, scratch memory without stream-ordered pools (cudaMalloc), a
// synchronize. end() must still be called: it ends the capture and raises.
#pragma once

#include <pybind11/pybind11.h>

#include <cuda_runtime.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "cuda_common.cuh"
#include "cuda_memory.cuh"

namespace needle {
namespace cuda {

// An instantiated graph; destroying it releases the graph's own (scratch) memory.
class CudaGraph {
 public:
  CudaGraph(cudaGraphExec_t exec, size_t nodes) : nodes(nodes), exec_(exec) {}
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  ~CudaGraph() { (void)cudaGraphExecDestroy(exec_); }

  void Launch() {
    if (Capture().active) throw std::runtime_error("cuda graph: launch() while a graph is being captured");
#ifdef NEEDLE_CUDA_EMULATOR
    try {
      CUDA_CHECK(cudaGraphLaunch(exec_, Stream()));
    } catch (const cuda_emu::KernelError& e) {
      throw std::runtime_error(std::string("cuda emulator: ") + e.what());
    }
#else
    CUDA_CHECK(cudaGraphLaunch(exec_, Stream()));
#endif
  }

  const size_t nodes;

 private:
  cudaGraphExec_t exec_;
};

inline void GraphBegin() {
  RequireDevice();
  if (Capture().active) throw std::runtime_error("cuda graph: begin() while a capture is running");
  (void)Stream();
  (void)UsePools();  // first use queries the device: not during the capture
  // Thread-local mode: only this thread's unsafe calls fail (other threads may use the device).
  CUDA_CHECK(cudaStreamBeginCapture(Stream(), cudaStreamCaptureModeThreadLocal));
  Capture().active = true;
}

inline std::unique_ptr<CudaGraph> GraphEnd() {
  CaptureState& capture = Capture();
  if (!capture.active) throw std::runtime_error("cuda graph: end() without begin()");
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(Stream(), &graph);
  capture.active = false;
  capture.graph_allocs.clear();
  for (void* p : std::exchange(capture.deferred_frees, {})) DeviceFree(p);
  if (ended != cudaSuccess) {
    (void)cudaGetLastError();
    if (graph != nullptr) (void)cudaGraphDestroy(graph);
    throw std::runtime_error(std::string("cuda graph: the capture failed (cudaStreamEndCapture: ") +
                             cudaGetErrorString(ended) +
                             "): a call made during it cannot be captured (a synchronous copy, an "
                             "allocation without memory pools, an upload or a synchronize)");
  }
  size_t nodes = 0;
  cudaGraphExec_t exec = nullptr;
  const cudaError_t counted = cudaGraphGetNodes(graph, nullptr, &nodes);
  const cudaError_t made = counted == cudaSuccess ? cudaGraphInstantiate(&exec, graph, 0) : counted;
  (void)cudaGraphDestroy(graph);
  CUDA_CHECK(made);
  return std::make_unique<CudaGraph>(exec, nodes);
}

inline void BindGraphs(pybind11::module_& m) {
  namespace py = pybind11;
  py::module_ g = m.def_submodule("_graphs", "CUDA graph capture of Stream() (src/cuda_graph.cuh)");
  py::class_<CudaGraph>(g, "Graph", py::module_local(), "An instantiated CUDA graph of captured backend calls.")
      .def("launch", &CudaGraph::Launch, "Queue the captured work on the backend's stream.")
      .def_readonly("nodes", &CudaGraph::nodes, "Number of nodes (kernels, copies, memsets, memory).");
  g.def("begin", &GraphBegin, "Start capturing: backend calls are recorded, not run.");
  g.def("end", &GraphEnd, "Stop capturing and instantiate the graph (RuntimeError if it failed).");
  g.def("capturing", [] { return Capture().active; }, "Whether a capture is running.");
}

}  // namespace cuda
}  // namespace needle
