// needle SGEMM for the CPU backend: packed, cache-blocked, register-blocked, multi-threaded.
//
// Loop nest (Goto/BLIS), for each matrix of the batch:
//   jc over n in NC columns      B block  (KC x NC)  -> packed (shared by the team or per thread)
//    pc over k in KC steps       A block  (MC x KC)  -> packed per thread (L2), or read in place
//     ic over this thread's rows in MC steps                  when few B micro-panels reuse it
//      jr over NR-wide micro-panels of B (L1)
//       ir over MR-high micro-panels of A: micro-kernel, MR x NR tile of C in registers
// Transposed operands are handled while packing (or by the kernel's A addressing), so every
// micro-kernel sees one B layout. Threads split C by rows, by micro-panel columns and/or k
// (a Plan, picked by a cost model per shape), or take whole matrices of a batch of small ones.
// Operands and packing: gemm_pack.h; narrow products (n <= 8): gemm_skinny*.h. See docs/gemm.md.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "cpu_threads.h"
#include "gemm_kernels.h"
#include "gemm_pack.h"

namespace needle {
namespace gemm_detail {

// The k depth of a block, KC, is the kernel's (K::kKC, 384 for AVX2): a KC x NR B micro-panel
// stays in L1.
constexpr int64_t kMC = 96;   // rows of the packed A block: MC x KC floats (144 KiB) in L2
constexpr int64_t kNC = 4080;  // columns of the packed B block: KC x NC floats (6 MiB) in L3
// Below this many multiply-adds in total, threads cost more than they save.
constexpr int64_t kParallelMinMacs = int64_t(1) << 20;
// A matrix with fewer multiply-adds than this is done by one thread when the batch has many.
constexpr int64_t kTeamMinMacs = int64_t(1) << 21;
// An A panel used by at most this many B micro-panels is read where it lies, not packed: a
// non-transposed A (six rows read side by side) or a transposed one (k steps lda apart).
constexpr int64_t kPackAMinReuseRows = 16;
constexpr int64_t kPackAMinReuseCols = 4;
// A transposed A bigger than this is packed all the same: read in place, each k step is a new
// cache line, and from DRAM (a weight gradient's im2col matrix, saved since the forward pass)
// that walk runs at a fraction of the bandwidth that the row-by-row packing streams at.
constexpr int64_t kInPlaceMaxColsA = int64_t(1) << 17;  // floats (512 KiB)
// 0 (always pack) for kernels that read packed panels only.
inline int64_t PackAMinReuse(bool in_place_a, bool trans_a, int64_t m, int64_t k,
                             bool strided_a = false) {
  if (!in_place_a || strided_a) return 0;
  if (!trans_a) return kPackAMinReuseRows;
  return m * k <= kInPlaceMaxColsA ? kPackAMinReuseCols : 0;
}
// A K split gives each thread at least this many k steps, and needs an m x n scratch product
// per extra thread: at most this many floats.
constexpr int64_t kMinSplitK = 64;
constexpr int64_t kMaxSplitScratch = int64_t(1) << 20;

inline int64_t RoundUp(int64_t x, int64_t r) { return (x + r - 1) / r * r; }

// Step that cuts `total` into the fewest blocks of at most `max_block` (a multiple of
// `multiple`), all about equal: k = 1040 gives 352 + 352 + 336 rather than 384 + 384 + 272,
// whose thin last block would cost a whole extra pass over C.
inline int64_t BlockStep(int64_t total, int64_t max_block, int64_t multiple) {
  if (total <= max_block) return std::max<int64_t>(total, 1);
  const int64_t blocks = (total + max_block - 1) / max_block;
  return std::min(max_block, RoundUp((total + blocks - 1) / blocks, multiple));
}

// Grow-only 64-byte aligned scratch buffer, kept across calls (see Workspace).
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
  Buffer a, b;  // one thread working alone
  Buffer team;  // every buffer of a team, owned by the thread that calls it
  Buffer skinny;  // op(B)^T of gemm_skinny.h
};

inline Workspace& ThreadWorkspace() {
  static thread_local Workspace ws;
  return ws;
}

// Where the micro-kernels read an mc x kc block of op(A): the packed block, or A itself when
// packing would cost more than it saves (see PackAMinReuse). The panel of rows i .. i + MR
// starts at ptr + i * row_step: kc for the packed block (whole MR panels), lda for a
// non-transposed A, 1 for a transposed one.
struct ABlock {
  const float* ptr;
  int64_t stride;    // the kernel's a_stride (lda when in place)
  int64_t row_step;
  int layout;        // ALayout
};

// The half-width kernel when the tile has at most NR / 2 columns.
template <class K, int kLayout>
inline void RunKernel(int64_t kc, const float* a, int64_t a_stride, const float* b, float* c,
                      int64_t ldc, bool accumulate, int mr, int nr) {
  if (2 * nr <= K::kNR)
    K::template Run<kLayout, true>(kc, a, a_stride, b, c, ldc, accumulate, mr, nr);
  else
    K::template Run<kLayout, false>(kc, a, a_stride, b, c, ldc, accumulate, mr, nr);
}

// Runs the micro-kernel over an mc x nc block (B panels [panel0, panel1) packed); the kernels
// write only the valid corner of edge tiles. An A read in place has no zero padding: its last,
// partial panel is packed into `edge` first.
template <class K>
inline void MacroKernel(const Operands& op, int64_t i0, int64_t p0, const ABlock& a, int64_t mc,
                        int64_t panel0, int64_t panel1, int64_t nc, int64_t kc,
                        const float* b_packed, float* c, int64_t ldc, bool accumulate) {
  constexpr int MR = K::kMR, NR = K::kNR;
  alignas(64) float edge[MR * K::kKC];
  const int64_t full_rows = a.layout != kPacked ? mc / MR * MR : mc;
  if (full_rows < mc) PackA<MR>(op, i0 + full_rows, p0, mc - full_rows, kc, edge);
  for (int64_t q = panel0; q < panel1; ++q) {
    const int64_t jr = q * NR;
    const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
    const float* bp = b_packed + q * NR * kc;
    // The next B micro-panel comes from L3: fetch it bit by bit while this one is in use.
    const float* next = q + 1 < panel1 ? bp + NR * kc : nullptr;
    const int64_t lines = NR * kc / 16, steps = (mc + MR - 1) / MR;
    const int64_t per_step = (lines + steps - 1) / steps;
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
      if (next != nullptr) {
        const int64_t l0 = ir / MR * per_step, l1 = std::min(lines, l0 + per_step);
        for (int64_t l = l0; l < l1; ++l) PrefetchRead(next + l * 16);
      }
      float* ct = c + ir * ldc + jr;
      const float* ap = a.ptr + ir * a.row_step;
      if constexpr (K::kInPlaceA) {
        if (ir >= full_rows) {
          RunKernel<K, kPacked>(kc, edge, 0, bp, ct, ldc, accumulate, mr, nr);
          continue;
        }
        if (a.layout == kRows) {
          RunKernel<K, kRows>(kc, ap, a.stride, bp, ct, ldc, accumulate, mr, nr);
          continue;
        }
        if (a.layout == kCols) {
          RunKernel<K, kCols>(kc, ap, a.stride, bp, ct, ldc, accumulate, mr, nr);
          continue;
        }
      }
      RunKernel<K, kPacked>(kc, ap, 0, bp, ct, ldc, accumulate, mr, nr);
    }
  }
}

inline void TeamBarrier(int nthreads) { cpu::TeamBarrier(nthreads); }

// How a team of tm * tn * tk threads shares one m x n x k product: thread (ti, tj, tl) computes
// rows ti (whole MR panels) x the tj-th share of every B block's NR micro-panels over the tl-th
// share of k. The tl = 0 threads write C; the others write a scratch C each, which the team adds
// in at the end (a K split: for products with a long k and a small C, such as the weight
// gradient cols^T @ dY). With shared_b the threads pack each B block together and wait for
// each other once per block; otherwise each packs the panels it uses and never waits.
struct Plan {
  int tm = 1, tn = 1, tk = 1;
  bool shared_b = false;
  int threads() const { return tm * tn * tk; }
};

// Thread `tid`'s share of one product (see Plan). `b_shared` is used when plan.shared_b,
// `b_private` otherwise; `scratch` holds tk - 1 row-major m x n partial products. B blocks
// alternate between the two shared buffers (block counter `*block` runs on across calls), so
// one barrier per block is enough: a thread packing block j + 1 has passed the barrier of
// block j, which every thread reached only after computing block j - 1, the last user of
// that buffer.
template <class K>
inline void GemmTeam(const Operands& op, int64_t m, int64_t n, int64_t k, bool accumulate,
                     int tid, const Plan& plan, float* const b_shared[2], float* b_private,
                     float* a_private, float* scratch, int64_t* block) {
  constexpr int MR = K::kMR, NR = K::kNR;
  const int nthreads = plan.threads(), per_k = plan.tm * plan.tn;
  const int tl = tid / per_k, ti = tid % per_k / plan.tn, tj = tid % plan.tn;
  // Row ranges in whole micro-panels, as even as possible.
  const int64_t row_panels = (m + MR - 1) / MR;
  const int64_t row0 = std::min(m, row_panels * ti / plan.tm * MR);
  const int64_t row1 = std::min(m, row_panels * (ti + 1) / plan.tm * MR);
  const int64_t k0 = k * tl / plan.tk, k1 = k * (tl + 1) / plan.tk;
  float* const c = tl == 0 ? op.c : scratch + (tl - 1) * m * n;
  const int64_t ldc = tl == 0 ? op.ldc : n;
  const bool accumulate_c = tl == 0 && accumulate;
  // NC rounded down to whole micro-panels (4080 is already, for NR = 8 and 16).
  const int64_t nc_step = BlockStep(n, kNC / NR * NR, NR);
  const int64_t kc_step = BlockStep(k1 - k0, K::kKC, 8);
  const int64_t mc_step = BlockStep(row1 - row0, kMC, MR);
  for (int64_t jc = 0; jc < n; jc += nc_step) {
    const int64_t nc = std::min(nc_step, n - jc);
    const int64_t panels = (nc + NR - 1) / NR;
    const int64_t q0 = panels * tj / plan.tn, q1 = panels * (tj + 1) / plan.tn;
    // An A panel feeds q1 - q0 micro-kernel calls: with few, packing it costs more than
    // reading A where it lies.
    const bool pack_a = q1 - q0 > PackAMinReuse(K::kInPlaceA, op.trans_a, m, k,
                                                       op.strided_a != nullptr);
    for (int64_t pc = k0; pc < k1; pc += kc_step) {
      const int64_t kc = std::min(kc_step, k1 - pc);
      const bool acc = accumulate_c || pc > k0;
      const float* b_packed;
      int64_t b_panel0 = q0;  // panel q of the block is panel q - b_panel0 of the buffer
      if (plan.shared_b) {
        float* buf = b_shared[(*block)++ % 2];
        PackB<NR>(op, pc, jc, nc, kc, panels * tid / nthreads, panels * (tid + 1) / nthreads,
                  buf);
        TeamBarrier(nthreads);
        b_packed = buf;
        b_panel0 = 0;
      } else {
        if (q0 == q1) break;
        PackB<NR>(op, pc, jc + q0 * NR, nc - q0 * NR, kc, 0, q1 - q0, b_private);
        b_packed = b_private;
      }
      for (int64_t ic = row0; ic < row1; ic += mc_step) {
        const int64_t mc = std::min(mc_step, row1 - ic);
        ABlock a;
        if (pack_a) {
          PackA<MR>(op, ic, pc, mc, kc, a_private);
          a = {a_private, MR, kc, kPacked};
        } else if (op.trans_a) {
          a = {op.a + pc * op.lda + ic, op.lda, 1, kCols};
        } else {
          a = {op.a + ic * op.lda + pc, op.lda, op.lda, kRows};
        }
        MacroKernel<K>(op, ic, pc, a, mc, q0 - b_panel0, q1 - b_panel0, nc - b_panel0 * NR, kc,
                       b_packed, c + ic * ldc + jc + b_panel0 * NR, ldc, acc);
      }
    }
  }
}

// Adds the tk - 1 scratch partial products of a K split into C, rows shared by the team.
inline void ReduceKSplit(const Operands& op, int64_t m, int64_t n, int tk, const float* scratch,
                         int tid, int nthreads) {
  const int64_t r0 = m * tid / nthreads, r1 = m * (tid + 1) / nthreads;
  for (int64_t i = r0; i < r1; ++i) {
    float* c = op.c + i * op.ldc;
    for (int l = 0; l + 1 < tk; ++l) {
      const float* s = scratch + l * m * n + i * n;
      for (int64_t j = 0; j < n; ++j) c[j] += s[j];
    }
  }
}

// Per-thread cost of a plan in multiply-add equivalents: the padded micro-tiles it computes,
// plus packing, barriers and the K-split reduction. The weights are rough (a packed float
// costs about as much as kPackCost multiply-adds); they only need to rank the candidates.
inline double PlanCost(int64_t m, int64_t n, int64_t k, int mr, int nr, int64_t kc_max,
                       int64_t a_min_reuse, const Plan& p) {
  constexpr double kPackCost = 6.0, kReadCost = 2.0, kReduceCost = 8.0, kBarrierCost = 65536.0;
  const int64_t row_panels = (m + mr - 1) / mr, col_panels = (n + nr - 1) / nr;
  const double rows = double((row_panels + p.tm - 1) / p.tm * mr);
  const double col_share = double((col_panels + p.tn - 1) / p.tn);
  const double cols = col_share * nr;
  const double depth = double((k + p.tk - 1) / p.tk);
  double cost = rows * cols * depth;
  // A is packed, or read in place by every thread that shares its rows.
  cost += rows * depth * (col_share > a_min_reuse ? kPackCost : kReadCost);
  if (p.shared_b) {
    const double blocks = double((k + kc_max - 1) / kc_max) * double((n + kNC - 1) / kNC);
    cost += double(col_panels * nr) * double(k) / p.threads() * kPackCost + blocks * kBarrierCost;
  } else {
    cost += cols * depth * kPackCost;
  }
  if (p.tk > 1) cost += kBarrierCost + double(m) * double(n) * p.tk / p.threads() * kReduceCost;
  return cost;
}

// Tests only: a plan to use instead of the cheapest whenever it has the right thread count
// (tests/gemm_plans_check.cc walks every plan this way).
inline const Plan*& ForcedPlan() {
  static const Plan* plan = nullptr;
  return plan;
}

// The cheapest plan for `nthreads` threads on one m x n x k product (PlanCost); ties go to
// row splits, then to private B blocks (no waiting).
inline Plan ChoosePlan(int64_t m, int64_t n, int64_t k, int mr, int nr, int64_t kc_max,
                       int64_t a_min_reuse, int nthreads) {
  const Plan* forced = ForcedPlan();
  if (forced != nullptr && forced->threads() == nthreads && (forced->tk == 1 || k >= forced->tk) &&
      !(forced->shared_b && forced->tk > 1))
    return *forced;
  Plan best;
  best.tm = nthreads;
  double best_cost = -1.0;
  for (int tk = 1; tk <= nthreads; ++tk) {
    if (nthreads % tk != 0) continue;
    if (tk > 1 && (k < tk * kMinSplitK || m * n > kMaxSplitScratch)) continue;
    for (int tm = nthreads / tk; tm >= 1; --tm) {
      if (nthreads / tk % tm != 0) continue;
      for (int shared = 0; shared < 2; ++shared) {
        if (shared && (tm == 1 || tk > 1)) continue;
        Plan p;
        p.tm = tm;
        p.tn = nthreads / tk / tm;
        p.tk = tk;
        p.shared_b = shared != 0;
        const double cost = PlanCost(m, n, k, mr, nr, kc_max, a_min_reuse, p);
        if (best_cost < 0.0 || cost < best_cost * 0.999) {
          best = p;
          best_cost = cost;
        }
      }
    }
  }
  return best;
}

inline Operands BatchOperands(const Operands& base, int64_t i, int64_t stride_a, int64_t stride_b,
                              int64_t stride_c) {
  Operands op = base;
  op.a += i * stride_a;
  op.b += i * stride_b;
  op.c += i * stride_c;
  return op;
}

inline int MaxThreads() { return cpu::MaxThreads(); }

template <class K>
inline void GemmDriver(int64_t batch, int64_t m, int64_t n, int64_t k, const Operands& base,
                       int64_t stride_a, int64_t stride_b, int64_t stride_c, bool accumulate) {
  constexpr int MR = K::kMR, NR = K::kNR;
  static_assert(K::kKC <= kMaxKC, "the k block depth bounds stack arrays");
  const double macs = double(m) * double(n) * double(k);
  int nthreads = MaxThreads();
  if (macs * double(batch) < double(kParallelMinMacs)) nthreads = 1;
  const int64_t kc_max = std::min(K::kKC, k);
  // Multiples of 16 floats: buffers carved out of one pool stay 64-byte aligned.
  const int64_t a_floats = RoundUp(kc_max * RoundUp(std::min(kMC, m), MR), 16);
  const int64_t b_floats = RoundUp(kc_max * RoundUp(std::min(kNC, n), NR), 16);
  if (nthreads == 1 || (batch >= nthreads && macs < double(kTeamMinMacs))) {
    // Whole matrices per thread, each with its own buffers.
    const int team = static_cast<int>(std::min<int64_t>(nthreads, batch));
    std::atomic<bool> out_of_memory{false};
    cpu::ParallelFor(batch, team, [&](int64_t i) {
      Workspace& ws = ThreadWorkspace();
      float* b_private = ws.b.Get(b_floats);
      float* a_private = ws.a.Get(a_floats);
      if (b_private == nullptr || a_private == nullptr) {
        out_of_memory.store(true, std::memory_order_relaxed);
        return;
      }
      int64_t block = 0;
      GemmTeam<K>(BatchOperands(base, i, stride_a, stride_b, stride_c), m, n, k, accumulate, 0,
                  Plan(), nullptr, b_private, a_private, nullptr, &block);
    });
    if (out_of_memory.load()) throw std::bad_alloc();
    return;
  }
  const int64_t a_min_reuse =
      PackAMinReuse(K::kInPlaceA, base.trans_a, m, k, base.strided_a != nullptr);
  const Plan plan = ChoosePlan(m, n, k, MR, NR, K::kKC, a_min_reuse, nthreads);
  // The calling thread allocates every buffer of the team up front, so nothing inside the
  // parallel region can fail: shared B blocks or one private B block per thread, an A block
  // per thread, and the K-split partial products.
  const int64_t per_thread = a_floats + (plan.shared_b ? 0 : b_floats);
  const int64_t shared = plan.shared_b ? 2 * b_floats : 0;
  const int64_t scratch_floats = (plan.tk - 1) * m * n;
  float* pool = ThreadWorkspace().team.Get(shared + nthreads * per_thread + scratch_floats);
  if (pool == nullptr) throw std::bad_alloc();
  float* const b_shared[2] = {pool, pool + (plan.shared_b ? b_floats : 0)};
  float* const scratch = pool + shared + nthreads * per_thread;
  cpu::ParallelTeam(nthreads, [&](int tid, int team) {
    float* a_private = pool + shared + tid * per_thread;
    float* b_private = plan.shared_b ? b_shared[0] : a_private + a_floats;
    // The pool may give fewer threads than asked (a busy machine): thread 0 then does it all alone.
    const Plan mine = team == nthreads ? plan : Plan();
    int64_t block = 0;
    if (team == nthreads || tid == 0)
      for (int64_t i = 0; i < batch; ++i) {
        const Operands op = BatchOperands(base, i, stride_a, stride_b, stride_c);
        GemmTeam<K>(op, m, n, k, accumulate, tid, mine, b_shared, b_private, a_private, scratch,
                    &block);
        if (mine.tk > 1) {
          TeamBarrier(nthreads);
          ReduceKSplit(op, m, n, mine.tk, scratch, tid, nthreads);
          if (i + 1 < batch) TeamBarrier(nthreads);  // scratch is rewritten next
        }
      }
  });
}

enum class KernelChoice { kGeneric, kAvx2, kAvx512, kInvalid };

// Reads NEEDLE_GEMM_KERNEL once: "auto" (default: the best kernel this CPU runs: avx512, then
// avx2, then generic), "generic" (portable kernel, also for testing), "avx2" or "avx512" (that
// kernel, or the best one below it on a CPU without its instructions).
inline KernelChoice SelectKernel() {
  static const KernelChoice choice = [] {
    const char* env = std::getenv("NEEDLE_GEMM_KERNEL");
    const std::string want = env == nullptr ? "auto" : env;
    if (want != "auto" && want != "" && want != "generic" && want != "avx2" && want != "avx512")
      return KernelChoice::kInvalid;
    if (want == "generic") return KernelChoice::kGeneric;
#if NEEDLE_GEMM_X86
    if (want != "avx2" && NEEDLE_GEMM_CPU_HAS_AVX512()) return KernelChoice::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return KernelChoice::kAvx2;
#endif
    return KernelChoice::kGeneric;
  }();
  return choice;
}

}  // namespace gemm_detail
}  // namespace needle

#include "gemm_skinny.h"
#include "gemm_skinny_rows.h"

namespace needle {

// Name of the micro-kernel sgemm runs on this machine ("generic", "avx2" or "avx512").
inline const char* sgemm_kernel_name() {
  switch (gemm_detail::SelectKernel()) {
#if NEEDLE_GEMM_X86
    case gemm_detail::KernelChoice::kAvx512:
      return gemm_detail::Avx512Kernel::kName;
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
// Runs on the CPU thread pool (cpu_threads.h); inside a parallel piece it runs on one thread.
// Throws std::invalid_argument for negative sizes or an unknown NEEDLE_GEMM_KERNEL value.
// With `strided_a` (see sgemm_strided_a), op(A) is that view of A instead.
inline void sgemm_batched(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                          const float* A, int64_t stride_a, int64_t lda,
                          const float* B, int64_t stride_b, int64_t ldb,
                          float* C, int64_t stride_c, int64_t ldc, bool accumulate,
                          const gemm_detail::StridedA* strided_a = nullptr) {
  using namespace gemm_detail;
  if (batch < 0 || m < 0 || n < 0 || k < 0)
    throw std::invalid_argument("sgemm: negative size (batch=" + std::to_string(batch) +
                                ", m=" + std::to_string(m) + ", n=" + std::to_string(n) +
                                ", k=" + std::to_string(k) + ")");
  const KernelChoice choice = SelectKernel();
  if (choice == KernelChoice::kInvalid)
    throw std::invalid_argument(
        "sgemm: NEEDLE_GEMM_KERNEL must be one of auto, generic, avx2, avx512 (got '" +
        std::string(std::getenv("NEEDLE_GEMM_KERNEL")) + "')");
  if (batch == 0 || m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < batch; ++i)
        for (int64_t r = 0; r < m; ++r) std::fill_n(C + i * stride_c + r * ldc, n, 0.0f);
    return;
  }
  const Operands base{A, lda, trans_a, B, ldb, trans_b, C, ldc, strided_a};
#if NEEDLE_GEMM_X86
  if (choice == KernelChoice::kAvx512) {
    GemmDriver<Avx512Kernel>(batch, m, n, k, base, stride_a, stride_b, stride_c, accumulate);
    return;
  }
  if (choice == KernelChoice::kAvx2) {
    GemmDriver<Avx2Kernel>(batch, m, n, k, base, stride_a, stride_b, stride_c, accumulate);
    return;
  }
#endif
  GemmDriver<GenericKernel>(batch, m, n, k, base, stride_a, stride_b, stride_c, accumulate);
}

// C (m x n) = A' (m x k) @ op(B) (k x n), where A'[i, p] = A[RowOffset(i) + ColOffset(p)] through
// `view` (gemm_detail::StridedA): an implicit GEMM over an im2col view, which is gathered straight
// into packed micro-panels. The caller has checked that every offset stays inside A's buffer.
inline void sgemm_strided_a(bool trans_b, int64_t m, int64_t n, int64_t k, const float* A,
                            const gemm_detail::StridedA& view, const float* B, int64_t ldb, float* C,
                            int64_t ldc) {
  using namespace gemm_detail;
#if NEEDLE_GEMM_X86
  // Few columns of C (small convolutions): 16 rows per vector where rows are adjacent floats
  // and k is short (gemm_skinny_rows.h), else dot products along k (gemm_skinny.h).
  const bool avx512 = SelectKernel() == KernelChoice::kAvx512;
  const int threads =
      double(m) * double(n) * double(k) >= double(kParallelMinMacs) ? MaxThreads() : 1;
  if (m > 0 && n > 0 && k > 0 && SkinnyRowsApplies(view, n, k, avx512))
    return SkinnyRowsDispatch(trans_b, m, n, k, A, view, B, ldb, C, ldc, threads);
  if (m > 0 && n > 0 && SkinnyApplies(view, n, k, avx512))
    return SkinnyDispatch(trans_b, m, n, k, A, view, B, ldb, C, ldc, threads);
#endif
  sgemm_batched(false, trans_b, 1, m, n, k, A, 0, 0, B, 0, ldb, C, 0, ldc, false, &view);
}

inline void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  sgemm_batched(trans_a, trans_b, 1, m, n, k, A, 0, lda, B, 0, ldb, C, 0, ldc, accumulate);
}

}  // namespace needle
