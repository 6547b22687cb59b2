// needle SGEMM for the CPU backend: packed, cache-blocked, register-blocked, OpenMP.
//
// Loop nest (Goto/BLIS), for each matrix of the batch:
//   jc over n in NC columns      B block  (KC x NC)  -> packed once, shared by the team (L3)
//    pc over k in KC steps       A block  (MC x KC)  -> packed per thread (L2)
//     ic over this thread's rows in MC steps
//      jr over NR-wide micro-panels of B (L1)
//       ir over MR-high micro-panels of A: micro-kernel, MR x NR tile of C in registers
// Transposed operands are handled while packing, so every micro-kernel sees one layout.
// Threads split C into a grid (rows x micro-panel columns) for big matrices, or take whole
// matrices of the batch when each matrix is small. See docs/gemm.md.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm_kernels.h"

namespace needle {
namespace gemm_detail {

constexpr int64_t kKC = 256;   // k depth of a block: a KC x NR B micro-panel (16 KiB) stays in L1
constexpr int64_t kMC = 144;   // rows of the packed A block: MC x KC floats (144 KiB) in L2
constexpr int64_t kNC = 4080;  // columns of the packed B block: KC x NC floats (4 MiB) in L3
// Below this many multiply-adds in total, threads cost more than they save.
constexpr int64_t kParallelMinMacs = int64_t(1) << 20;
// A matrix with fewer multiply-adds than this is done by one thread when the batch has many.
constexpr int64_t kTeamMinMacs = int64_t(1) << 21;

inline int64_t RoundUp(int64_t x, int64_t r) { return (x + r - 1) / r * r; }

// Step that cuts `total` into the fewest blocks of at most `max_block` (a multiple of
// `multiple`), all about equal: k = 1040 gives 5 x 208 rather than 4 x 256 + 16, whose
// thin last block would cost a whole extra pass over C.
inline int64_t BlockStep(int64_t total, int64_t max_block, int64_t multiple) {
  if (total <= max_block) return std::max<int64_t>(total, 1);
  const int64_t blocks = (total + max_block - 1) / max_block;
  return std::min(max_block, RoundUp((total + blocks - 1) / blocks, multiple));
}

// Grow-only 64-byte aligned scratch buffer; one pair per thread, kept across calls.
// Get returns nullptr when memory runs out (it is called inside parallel regions, where an
// exception would terminate the process); the driver turns that into std::bad_alloc.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { Release(); }
  float* Get(int64_t count) {
    if (count > capacity_) {
      Release();
      data_ = static_cast<float*>(::operator new(sizeof(float) * count, std::align_val_t(64),
                                                 std::nothrow));
      capacity_ = data_ == nullptr ? 0 : count;
    }
    return data_;
  }

 private:
  void Release() {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t(64));
    data_ = nullptr;
    capacity_ = 0;
  }
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

struct Workspace {
  Buffer a;
  Buffer b[2];  // a team alternates between two shared B blocks
};

inline Workspace& ThreadWorkspace() {
  static thread_local Workspace ws;
  return ws;
}

// One matrix of the batch: op(A) is m x k, op(B) is k x n, C is m x n.
struct Operands {
  const float* a;
  int64_t lda;
  bool trans_a;
  const float* b;
  int64_t ldb;
  bool trans_b;
  float* c;
  int64_t ldc;
};

inline void PrefetchRead(const float* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

// Transposes ROWS rows of `src` (leading dim ld), k steps of each, into dst[p * LD + r]:
// the packing of a non-transposed A or a transposed B. SSE 4x4 transposes over 4 k steps;
// returns the number of k steps done (the caller finishes the remainder with scalar code).
template <int ROWS, int LD>
inline int64_t TransposeRows(const float* src, int64_t ld, int64_t kc, float* dst) {
#if NEEDLE_GEMM_X86
  static_assert(ROWS % 2 == 0, "row groups of 4, then at most one pair");
  int64_t p = 0;
  for (; p + 4 <= kc; p += 4) {
    // Each row is read for only kc floats, too short for the hardware prefetcher to ramp
    // up: fetch the same columns of the next ROWS rows (the next panel) one panel ahead.
    if (p % 16 == 0)
      for (int r = 0; r < ROWS; ++r) PrefetchRead(src + (ROWS + r) * ld + p);
    int r = 0;
    for (; r + 4 <= ROWS; r += 4) {
      __m128 r0 = _mm_loadu_ps(src + (r + 0) * ld + p);
      __m128 r1 = _mm_loadu_ps(src + (r + 1) * ld + p);
      __m128 r2 = _mm_loadu_ps(src + (r + 2) * ld + p);
      __m128 r3 = _mm_loadu_ps(src + (r + 3) * ld + p);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(dst + (p + 0) * LD + r, r0);
      _mm_storeu_ps(dst + (p + 1) * LD + r, r1);
      _mm_storeu_ps(dst + (p + 2) * LD + r, r2);
      _mm_storeu_ps(dst + (p + 3) * LD + r, r3);
    }
    if (r < ROWS) {  // the last two rows: interleave them, two floats per k step
      const __m128 x = _mm_loadu_ps(src + (r + 0) * ld + p);
      const __m128 y = _mm_loadu_ps(src + (r + 1) * ld + p);
      const __m128 lo = _mm_unpacklo_ps(x, y), hi = _mm_unpackhi_ps(x, y);
      _mm_storel_pi(reinterpret_cast<__m64*>(dst + (p + 0) * LD + r), lo);
      _mm_storeh_pi(reinterpret_cast<__m64*>(dst + (p + 1) * LD + r), lo);
      _mm_storel_pi(reinterpret_cast<__m64*>(dst + (p + 2) * LD + r), hi);
      _mm_storeh_pi(reinterpret_cast<__m64*>(dst + (p + 3) * LD + r), hi);
    }
  }
  return p;
#else
  (void)src, (void)ld, (void)kc, (void)dst;
  return 0;
#endif
}

// Packs W-wide column panels [panel0, panel1) of a row-major kc x width block (leading dim
// ld): row p of panel q, src[p * ld + q * W ...], goes to dst[q * W * kc + p * W ...],
// zero-padded past `width`. Works on 4 source rows at a time: the reads are 4 sequential
// streams and each panel receives 4 * W contiguous floats (row by row, the writes would hit
// one cache line per panel, all W * kc floats apart: the same cache set).
template <int W>
inline void PackPanelsByRow(const float* src, int64_t ld, int64_t kc, int64_t width,
                            int64_t panel0, int64_t panel1, float* dst) {
  constexpr int64_t kRows = 4;
  const int64_t full_end = std::max(panel0, std::min(panel1, width / W));
  const int64_t lo = panel0 * W, hi = std::min(width, panel1 * W);
  for (int64_t p0 = 0; p0 < kc; p0 += kRows) {
    const int64_t rows = std::min(kRows, kc - p0);
    const float* s = src + p0 * ld;
    // Source rows are ld apart, too far for the hardware prefetcher: ask a group ahead.
    if (p0 + 2 * kRows <= kc && hi - lo <= 1024)
      for (int64_t r = kRows; r < 2 * kRows; ++r)
        for (int64_t j = lo; j < hi; j += 16) PrefetchRead(s + r * ld + j);
    for (int64_t q = panel0; q < full_end; ++q) {
      float* d = dst + q * W * kc + p0 * W;
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(d + r * W, s + r * ld + q * W, sizeof(float) * W);
    }
    for (int64_t q = full_end; q < panel1; ++q) {
      const int64_t w = std::min<int64_t>(W, width - q * W);
      for (int64_t r = 0; r < rows; ++r) {
        float* d = dst + q * W * kc + (p0 + r) * W;
        for (int64_t j = 0; j < w; ++j) d[j] = s[r * ld + q * W + j];
        for (int64_t j = w; j < W; ++j) d[j] = 0.0f;
      }
    }
  }
}

// Packs W-wide panels [panel0, panel1) of the transpose of a row-major width x kc block:
// element (p, j) of panel q is src[(q * W + j) * ld + p], stored at dst[q * W * kc + p * W + j].
template <int W>
inline void PackPanelsByColumn(const float* src, int64_t ld, int64_t kc, int64_t width,
                               int64_t panel0, int64_t panel1, float* dst) {
  for (int64_t q = panel0; q < panel1; ++q) {
    const float* s = src + q * W * ld;
    float* d = dst + q * W * kc;
    const int64_t w = std::min<int64_t>(W, width - q * W);
    if (w == W) {
      // Walks W rows of the source side by side, one element of each per k step.
      int64_t p = TransposeRows<W, W>(s, ld, kc, d);
      for (; p < kc; ++p)
        for (int j = 0; j < W; ++j) d[p * W + j] = s[j * ld + p];
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        for (int64_t j = 0; j < w; ++j) d[p * W + j] = s[j * ld + p];
        for (int64_t j = w; j < W; ++j) d[p * W + j] = 0.0f;
      }
    }
  }
}

// Packs op(A)[i0:i0+mc, p0:p0+kc] into MR-row micro-panels, each kc x MR (k-major),
// zero-padding the last panel to MR rows.
template <int MR>
inline void PackA(const Operands& op, int64_t i0, int64_t p0, int64_t mc, int64_t kc, float* dst) {
  const int64_t panels = (mc + MR - 1) / MR;
  if (op.trans_a)  // op(A)[i, p] = A[p, i]: rows of the stored A are k steps
    PackPanelsByRow<MR>(op.a + p0 * op.lda + i0, op.lda, kc, mc, 0, panels, dst);
  else
    PackPanelsByColumn<MR>(op.a + i0 * op.lda + p0, op.lda, kc, mc, 0, panels, dst);
}

// Packs micro-panels [panel0, panel1) of op(B)[p0:p0+kc, j0:j0+nc]; panel q covers columns
// j0 + q*NR ... and is stored kc x NR (row per k step), zero-padded to NR columns.
template <int NR>
inline void PackB(const Operands& op, int64_t p0, int64_t j0, int64_t nc, int64_t kc,
                  int64_t panel0, int64_t panel1, float* dst) {
  if (op.trans_b)  // op(B)[p, j] = B[j, p]
    PackPanelsByColumn<NR>(op.b + j0 * op.ldb + p0, op.ldb, kc, nc, panel0, panel1, dst);
  else
    PackPanelsByRow<NR>(op.b + p0 * op.ldb + j0, op.ldb, kc, nc, panel0, panel1, dst);
}

// Runs the micro-kernel over an mc x nc block whose panels are packed; partial tiles at the
// right and bottom edges go through a scratch tile so C is never written out of bounds.
template <class K>
inline void MacroKernel(int64_t mc, int64_t panel0, int64_t panel1, int64_t nc, int64_t kc,
                        const float* a_packed, const float* b_packed, float* c, int64_t ldc,
                        bool accumulate) {
  constexpr int MR = K::kMR, NR = K::kNR;
  alignas(64) float tile[MR * NR];
  for (int64_t q = panel0; q < panel1; ++q) {
    const int64_t jr = q * NR;
    const int64_t nr = std::min<int64_t>(NR, nc - jr);
    const float* bp = b_packed + q * NR * kc;
    // The next B micro-panel comes from L3: fetch it bit by bit while this one is in use.
    const float* next = q + 1 < panel1 ? bp + NR * kc : nullptr;
    const int64_t lines = NR * kc / 16, steps = (mc + MR - 1) / MR;
    const int64_t per_step = (lines + steps - 1) / steps;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t mr = std::min<int64_t>(MR, mc - ir);
      if (next != nullptr) {
        const int64_t l0 = ir / MR * per_step, l1 = std::min(lines, l0 + per_step);
        for (int64_t l = l0; l < l1; ++l) PrefetchRead(next + l * 16);
      }
      const float* ap = a_packed + ir * kc;
      float* ct = c + ir * ldc + jr;
      if (mr == MR && nr == NR) {
        K::Run(kc, ap, bp, ct, ldc, accumulate);
      } else {
        K::Run(kc, ap, bp, tile, NR, false);
        for (int64_t i = 0; i < mr; ++i)
          for (int64_t j = 0; j < nr; ++j)
            ct[i * ldc + j] = (accumulate ? ct[i * ldc + j] : 0.0f) + tile[i * NR + j];
      }
    }
  }
}

#ifdef _OPENMP
inline void TeamBarrier(int nthreads) {
  if (nthreads > 1) {
#pragma omp barrier
  }
}
#else
inline void TeamBarrier(int) {}
#endif

// Thread `tid` of a team of `tm * tn` threads computes its share of one m x n x k product.
// The team packs each B block together, then thread (ti, tj) computes rows [row0, row1) and
// its share of the block's micro-panels with a private A block. Every thread runs the same
// jc / pc iterations, so the barriers match. B blocks alternate between two buffers (block
// counter `*block` runs on across calls), so one barrier per block is enough: a thread
// packing block j + 1 has passed the barrier of block j, which every thread reached only
// after computing block j - 1, the last user of that buffer.
template <class K>
inline void GemmTeam(const Operands& op, int64_t m, int64_t n, int64_t k, bool accumulate,
                     int tid, int tm, int tn, float* const b_shared[2], float* a_private,
                     int64_t* block) {
  constexpr int MR = K::kMR, NR = K::kNR;
  const int nthreads = tm * tn;
  const int ti = tid / tn, tj = tid % tn;
  // Row ranges in whole micro-panels, as even as possible.
  const int64_t row_panels = (m + MR - 1) / MR;
  const int64_t row0 = std::min(m, row_panels * ti / tm * MR);
  const int64_t row1 = std::min(m, row_panels * (ti + 1) / tm * MR);
  const int64_t nc_step = BlockStep(n, kNC, NR), kc_step = BlockStep(k, kKC, 8);
  const int64_t mc_step = BlockStep(row1 - row0, kMC, MR);
  for (int64_t jc = 0; jc < n; jc += nc_step) {
    const int64_t nc = std::min(nc_step, n - jc);
    const int64_t panels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < k; pc += kc_step) {
      const int64_t kc = std::min(kc_step, k - pc);
      const bool acc = accumulate || pc > 0;
      float* b_packed = b_shared[(*block)++ % 2];
      PackB<NR>(op, pc, jc, nc, kc, panels * tid / nthreads, panels * (tid + 1) / nthreads,
                b_packed);
      TeamBarrier(nthreads);
      const int64_t q0 = panels * tj / tn, q1 = panels * (tj + 1) / tn;
      for (int64_t ic = row0; ic < row1; ic += mc_step) {
        const int64_t mc = std::min(mc_step, row1 - ic);
        PackA<MR>(op, ic, pc, mc, kc, a_private);
        MacroKernel<K>(mc, q0, q1, nc, kc, a_private, b_packed, op.c + ic * op.ldc + jc, op.ldc,
                       acc);
      }
    }
  }
}

// Picks a tm x tn thread grid (tm * tn == nthreads) that keeps each thread's share of C
// as square as possible, counted in micro-tiles; ties favour splitting rows, which needs
// no duplicated packing.
inline void ThreadGrid(int64_t m, int64_t n, int mr, int nr, int nthreads, int* tm, int* tn) {
  *tm = nthreads;
  *tn = 1;
  double best = -1.0;
  for (int r = nthreads; r >= 1; --r) {
    if (nthreads % r != 0) continue;
    const int c = nthreads / r;
    const double rows = double(m) / (double(r) * mr), cols = double(n) / (double(c) * nr);
    const double score = std::min(rows, cols);
    if (score > best * 1.0001) {
      best = score;
      *tm = r;
      *tn = c;
    }
  }
}

inline Operands BatchOperands(const Operands& base, int64_t i, int64_t stride_a, int64_t stride_b,
                              int64_t stride_c) {
  Operands op = base;
  op.a += i * stride_a;
  op.b += i * stride_b;
  op.c += i * stride_c;
  return op;
}

inline int MaxThreads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

template <class K>
inline void GemmDriver(int64_t batch, int64_t m, int64_t n, int64_t k, const Operands& base,
                       int64_t stride_a, int64_t stride_b, int64_t stride_c, bool accumulate) {
  constexpr int MR = K::kMR, NR = K::kNR;
  const double macs = double(m) * double(n) * double(k);
  int nthreads = MaxThreads();
  if (macs * double(batch) < double(kParallelMinMacs)) nthreads = 1;
  const int64_t kc_max = std::min(kKC, k);
  const int64_t b_floats = kc_max * RoundUp(std::min(kNC, n), NR);
  bool out_of_memory = false;
  if (nthreads == 1 || (batch >= nthreads && macs < double(kTeamMinMacs))) {
    // Whole matrices per thread, each with its own buffers.
    const int64_t a_floats = kc_max * RoundUp(std::min(kMC, m), MR);
    const int team = static_cast<int>(std::min<int64_t>(nthreads, batch));
    (void)team;  // unused without OpenMP
#pragma omp parallel for schedule(static) num_threads(team) if (team > 1)
    for (int64_t i = 0; i < batch; ++i) {
      Workspace& ws = ThreadWorkspace();
      float* b_private = ws.b[0].Get(b_floats);
      float* a_private = ws.a.Get(a_floats);
      if (b_private == nullptr || a_private == nullptr) {
#pragma omp atomic write
        out_of_memory = true;
        continue;
      }
      float* const b_buffers[2] = {b_private, b_private};  // one thread: no one to wait for
      int64_t block = 0;
      GemmTeam<K>(BatchOperands(base, i, stride_a, stride_b, stride_c), m, n, k, accumulate, 0, 1,
                  1, b_buffers, a_private, &block);
    }
    if (out_of_memory) throw std::bad_alloc();
    return;
  }
  int tm = 1, tn = 1;
  ThreadGrid(m, n, MR, NR, nthreads, &tm, &tn);
  Workspace& master = ThreadWorkspace();
  float* const b_shared[2] = {master.b[0].Get(b_floats), master.b[1].Get(b_floats)};
  if (b_shared[0] == nullptr || b_shared[1] == nullptr) throw std::bad_alloc();
#pragma omp parallel num_threads(nthreads)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
    const int team = omp_get_num_threads();
#else
    const int tid = 0, team = 1;
#endif
    // The runtime may give fewer threads than asked; fall back to a row split then.
    int gm = tm, gn = tn;
    if (team != nthreads) {
      gm = team;
      gn = 1;
    }
    float* a_private = ThreadWorkspace().a.Get(
        kc_max * RoundUp(std::min(kMC, RoundUp((m + gm - 1) / gm, MR)), MR));
    if (a_private == nullptr) {
#pragma omp atomic write
      out_of_memory = true;
    }
    // Every thread must see the same flag before the barriers inside GemmTeam.
#pragma omp barrier
    bool give_up;
#pragma omp atomic read
    give_up = out_of_memory;
    int64_t block = 0;
    if (!give_up)
      for (int64_t i = 0; i < batch; ++i)
        GemmTeam<K>(BatchOperands(base, i, stride_a, stride_b, stride_c), m, n, k, accumulate,
                    tid, gm, gn, b_shared, a_private, &block);
  }
  if (out_of_memory) throw std::bad_alloc();
}

enum class KernelChoice { kGeneric, kAvx2, kInvalid };

// Reads NEEDLE_GEMM_KERNEL once: "auto" (default: the best kernel this CPU runs), "generic"
// (portable kernel, also for testing), "avx2" (falls back to generic without AVX2/FMA).
inline KernelChoice SelectKernel() {
  static const KernelChoice choice = [] {
    const char* env = std::getenv("NEEDLE_GEMM_KERNEL");
    const std::string want = env == nullptr ? "auto" : env;
    if (want != "auto" && want != "" && want != "generic" && want != "avx2")
      return KernelChoice::kInvalid;
    if (want == "generic") return KernelChoice::kGeneric;
#if NEEDLE_GEMM_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return KernelChoice::kAvx2;
#endif
    return KernelChoice::kGeneric;
  }();
  return choice;
}

}  // namespace gemm_detail

// Name of the micro-kernel sgemm runs on this machine ("generic" or "avx2").
inline const char* sgemm_kernel_name() {
  switch (gemm_detail::SelectKernel()) {
#if NEEDLE_GEMM_X86
    case gemm_detail::KernelChoice::kAvx2:
      return gemm_detail::Avx2Kernel::kName;
#endif
    case gemm_detail::KernelChoice::kGeneric:
      return gemm_detail::GenericKernel::kName;
    default:
      return "invalid";
  }
}

// C[b] (m x n, row-major, leading dim ldc) = op(A[b]) (m x k) @ op(B[b]) (k x n)  (+ C[b] if accumulate)
// A[b] = A + b*stride_a, stored row-major with leading dim lda; op(A) = A^T when trans_a. Same for B.
// C may be uninitialised when accumulate is false (never read it then). k may be 0 (C = 0 or unchanged).
// Uses OpenMP internally (callers do not call it from inside a parallel region).
// Throws std::invalid_argument for negative sizes or an unknown NEEDLE_GEMM_KERNEL value.
inline void sgemm_batched(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                          const float* A, int64_t stride_a, int64_t lda,
                          const float* B, int64_t stride_b, int64_t ldb,
                          float* C, int64_t stride_c, int64_t ldc, bool accumulate) {
  using namespace gemm_detail;
  if (batch < 0 || m < 0 || n < 0 || k < 0)
    throw std::invalid_argument("sgemm: negative size (batch=" + std::to_string(batch) +
                                ", m=" + std::to_string(m) + ", n=" + std::to_string(n) +
                                ", k=" + std::to_string(k) + ")");
  const KernelChoice choice = SelectKernel();
  if (choice == KernelChoice::kInvalid)
    throw std::invalid_argument(
        "sgemm: NEEDLE_GEMM_KERNEL must be one of auto, generic, avx2 (got '" +
        std::string(std::getenv("NEEDLE_GEMM_KERNEL")) + "')");
  if (batch == 0 || m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < batch; ++i)
        for (int64_t r = 0; r < m; ++r) std::fill_n(C + i * stride_c + r * ldc, n, 0.0f);
    return;
  }
  const Operands base{A, lda, trans_a, B, ldb, trans_b, C, ldc};
#if NEEDLE_GEMM_X86
  if (choice == KernelChoice::kAvx2) {
    GemmDriver<Avx2Kernel>(batch, m, n, k, base, stride_a, stride_b, stride_c, accumulate);
    return;
  }
#endif
  GemmDriver<GenericKernel>(batch, m, n, k, base, stride_a, stride_b, stride_c, accumulate);
}

inline void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  sgemm_batched(trans_a, trans_b, 1, m, n, k, A, 0, lda, B, 0, ldb, C, 0, ldc, accumulate);
}

}  // namespace needle
