// needle CUDA backend: launchers of the element-wise, strided-view, reduction and softmax
// kernels of cuda_kernels.cuh: grid sizes, vectorisation and path choices, with every launch
// checked. Host side; arguments are validated by the callers, the entry points (cuda_*.cu).
// Everything is queued on Stream() (cuda_common.cuh): nothing here waits for the GPU.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "cuda_common.cuh"
#include "cuda_kernels.cuh"
#include "cuda_memory.cuh"

namespace needle {
namespace cuda {

constexpr int kThreads = 256;  // block size of the element-wise / view / pooling kernels

// ------------------------------------------------------------------------------------ grids, element-wise

// Blocks for a grid-stride kernel over `work` items of `per_block` each: enough to fill the GPU,
// never more than needed.
inline unsigned GridFor(int64_t work, int64_t per_block = kThreads) {
  const int64_t want = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(want, int64_t{NumSMs()} * 16)));
}

inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename Op>
inline void LaunchBinary(const float* a, const float* b, float* out, int64_t n, Op op) {
  if (n == 0) return;
  const bool vec = Aligned16(a) && Aligned16(b) && Aligned16(out);
  Launch<EwiseBinaryKernel<Op>>(GridFor(vec ? n / 4 + 1 : n), kThreads, a, b, out, n, vec, op);
}

template <typename Op>
inline void LaunchUnary(const float* a, float* out, int64_t n, Op op) {
  if (n == 0) return;
  const bool vec = Aligned16(a) && Aligned16(out);
  Launch<EwiseUnaryKernel<Op>>(GridFor(vec ? n / 4 + 1 : n), kThreads, a, out, n, vec, op);
}

// FillKernel is not a template: this launcher is defined once, in ndarray_backend_cuda.cu.
void LaunchFill(float* out, int64_t n, float val);

// ------------------------------------------------------------------------------------ strided views

// A validated view, coalesced, ready to pass to a kernel.
struct DeviceView {
  ViewMeta meta{};
  int64_t numel = 0;
  DeviceBuffer ext;  // shape and strides, when they do not fit in ViewMeta
  bool broadcast = false;  // some (coalesced) dim has stride 0: elements share offsets

  // The view is one contiguous run of numel elements starting at meta.offset.
  bool contiguous() const { return meta.ndim == 0 || (meta.ndim == 1 && meta.strides[0] == 1); }
};

inline DeviceView MakeView(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                    int64_t offset, int64_t numel) {
  DeviceView v;
  v.numel = numel;
  v.meta.offset = offset;
  std::vector<int64_t> sh, st;
  Coalesce(shape, strides, &sh, &st);
  v.broadcast = std::find(st.begin(), st.end(), 0) != st.end();
  v.meta.ndim = static_cast<int32_t>(sh.size());
  if (sh.size() <= static_cast<size_t>(kInlineDims)) {
    std::copy(sh.begin(), sh.end(), v.meta.shape);
    std::copy(st.begin(), st.end(), v.meta.strides);
    v.meta.ext = nullptr;
  } else {
    // Rare (> 8 dims that cannot be merged): one small upload, queued like the kernels.
    std::vector<int64_t> host(sh);
    host.insert(host.end(), st.begin(), st.end());
    v.ext = DeviceBuffer(host.size() * sizeof(int64_t));
    UploadAsync(v.ext.as<int64_t>(), host.data(), host.size() * sizeof(int64_t));
    v.meta.ext = v.ext.as<int64_t>();
  }
  return v;
}

enum class ViewOp { kCompact, kSetitem, kScalarSetitem, kScatterAdd };

template <typename IdxT>
inline void LaunchViewT(ViewOp op, const float* a, float val, float* out, const DeviceView& v) {
  const IdxT n = static_cast<IdxT>(v.numel);
  const unsigned grid = GridFor(v.numel);
  switch (op) {
    case ViewOp::kCompact: Launch<CompactKernel<IdxT>>(grid, kThreads, a, out, v.meta, n); break;
    case ViewOp::kSetitem: Launch<SetitemKernel<IdxT>>(grid, kThreads, a, out, v.meta, n, v.broadcast); break;
    case ViewOp::kScalarSetitem: Launch<ScalarSetitemKernel<IdxT>>(grid, kThreads, val, out, v.meta, n); break;
    case ViewOp::kScatterAdd: Launch<ScatterAddKernel<IdxT>>(grid, kThreads, a, out, v.meta, n); break;
  }
}

// 32-bit index arithmetic whenever the element count allows it (i + grid stride < 2^32).
inline void LaunchView(ViewOp op, const float* a, float val, float* out, const DeviceView& v) {
  if (v.numel == 0) return;
  if (v.numel < (int64_t{1} << 31))
    LaunchViewT<uint32_t>(op, a, val, out, v);
  else
    LaunchViewT<uint64_t>(op, a, val, out, v);
}

// The view's last two dims, once coalesced, are (rows, cols) with rows contiguous in the source
// (a transpose, possibly batched): worth a tiled transpose when both are not tiny.
inline bool IsBatchedTranspose(const DeviceView& v) {
  const int nd = v.meta.ndim;
  return v.meta.ext == nullptr && nd >= 2 && v.meta.strides[nd - 2] == 1 && v.meta.strides[nd - 1] != 1 &&
         v.meta.shape[nd - 2] >= 8 && v.meta.shape[nd - 1] >= 8;
}

inline void LaunchTransposeCompact(const float* src, float* dst, const DeviceView& v) {
  const int nd = v.meta.ndim;
  const int64_t rows = v.meta.shape[nd - 2], cols = v.meta.shape[nd - 1];
  ViewMeta batch = v.meta;  // the leading dims, and the offset
  batch.ndim = nd - 2;
  const int64_t nbatch = v.numel / (rows * cols);
  const int64_t tiles_c = (cols + 31) / 32, tiles = ((rows + 31) / 32) * tiles_c;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tiles, INT_MAX)), 1,
                  static_cast<unsigned>(std::min<int64_t>(nbatch, 65535)));
  const dim3 block(32, 8);
  if (nbatch < (int64_t{1} << 31))
    Launch<TransposeCompactKernel<uint32_t>>(grid, block, src, dst, batch, nbatch, rows, cols,
                                                      v.meta.strides[nd - 1], tiles_c, tiles);
  else
    Launch<TransposeCompactKernel<uint64_t>>(grid, block, src, dst, batch, nbatch, rows, cols,
                                                      v.meta.strides[nd - 1], tiles_c, tiles);
}

// Gathers view `v` of `src` into compact `dst` (numel elements).
inline void CompactInto(const float* src, float* dst, const DeviceView& v) {
  if (v.numel == 0) return;
  if (v.contiguous()) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src + v.meta.offset, v.numel * sizeof(float),
                               cudaMemcpyDeviceToDevice, Stream()));
  } else if (IsBatchedTranspose(v)) {
    LaunchTransposeCompact(src, dst, v);
  } else {
    LaunchView(ViewOp::kCompact, src, 0.0f, dst, v);
  }
}

// When a kernel reads `a` while writing through a view of the same buffer, read a copy.
inline const float* Unaliased(const CudaArray& a, const CudaArray& out, int64_t count, DeviceBuffer* keep) {
  if (a.data != out.data || count == 0) return a.data;
  *keep = DeviceBuffer(count * sizeof(float));
  CUDA_CHECK(cudaMemcpyAsync(keep->as<float>(), a.data, count * sizeof(float),
                             cudaMemcpyDeviceToDevice, Stream()));
  return keep->as<float>();
}

// out[i] = op(a[i], b[view offset of i]) over the view's numel elements; a and out compact.
template <typename Op>
void LaunchEwiseView(const float* a, const float* b, float* out, const DeviceView& v) {
  if (v.numel < (int64_t{1} << 31))
    Launch<EwiseViewKernel<uint32_t, Op>>(GridFor(v.numel), kThreads, a, b, out, v.meta,
                                          static_cast<uint32_t>(v.numel), Op());
  else
    Launch<EwiseViewKernel<uint64_t, Op>>(GridFor(v.numel), kThreads, a, b, out, v.meta,
                                          static_cast<uint64_t>(v.numel), Op());
}

// ------------------------------------------------------------------------------------ rows


// out[r] = reduce(a[r*row_len : (r+1)*row_len]) for r < rows.
template <typename Op>
void LaunchReduce(const float* a, float* out, int64_t rows, int64_t row_len) {
  if (rows == 0) return;
  const int64_t sms = NumSMs();
  if (row_len <= 1024) {  // a warp per row
    Launch<ReduceWarpKernel<Op>>(GridFor(rows, kThreads / kWarp), kThreads, a, out, rows, row_len);
    return;
  }
  if (rows >= 2 * sms || row_len < 65536) {  // a block per row
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, sms * 16));
    Launch<ReduceBlockKernel<Op>>(grid, kThreads, a, out, rows, row_len, row_len, 1);
    return;
  }
  // Few very long rows: split each into chunks (pass 1), then reduce the partials (pass 2).
  const int64_t chunks = std::min((4 * sms + rows - 1) / rows, (row_len + 4095) / 4096);
  const int64_t chunk_len = (row_len + chunks - 1) / chunks;
  DeviceBuffer partial(rows * chunks * sizeof(float));
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows * chunks, sms * 16));
  Launch<ReduceBlockKernel<Op>>(grid, kThreads, a, partial.as<float>(), rows, row_len, chunk_len, chunks);
  LaunchReduce<Op>(partial.as<float>(), out, rows, chunks);
}

// Softmax or log-softmax of `rows` consecutive rows of row_len elements.
template <bool kLog>
void LaunchSoftmax(const float* a, float* out, int64_t rows, int64_t row_len) {
  if (rows == 0) return;
  if (row_len <= 32 * 32) {  // a warp per row, the row in registers
    const unsigned grid = GridFor(rows, kThreads / kWarp);
    const int len = static_cast<int>(row_len);
    if (row_len <= 32)
      Launch<SoftmaxWarpKernel<1, kLog>>(grid, kThreads, a, out, rows, len);
    else if (row_len <= 64)
      Launch<SoftmaxWarpKernel<2, kLog>>(grid, kThreads, a, out, rows, len);
    else if (row_len <= 128)
      Launch<SoftmaxWarpKernel<4, kLog>>(grid, kThreads, a, out, rows, len);
    else if (row_len <= 256)
      Launch<SoftmaxWarpKernel<8, kLog>>(grid, kThreads, a, out, rows, len);
    else if (row_len <= 512)
      Launch<SoftmaxWarpKernel<16, kLog>>(grid, kThreads, a, out, rows, len);
    else
      Launch<SoftmaxWarpKernel<32, kLog>>(grid, kThreads, a, out, rows, len);
  } else {  // a block per row
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{NumSMs()} * 16));
    Launch<SoftmaxBlockKernel<kLog>>(grid, 512, a, out, rows, row_len);
  }
}

}  // namespace cuda
}  // namespace needle
