// needle CPU backend: the project's own thread pool (replaces OpenMP).
//
// Persistent workers spin for a bounded time after a job, then sleep on a condition variable.
// A job is a fixed set of pieces (the partition depends only on the team size asked for, so
// results never depend on load); the caller and the workers claim pieces from one atomic word,
// so a worker that the OS has descheduled does not hold the job up: the caller runs its piece.
// Team jobs (gemm's region with barriers) need every member running at once. When workers keep
// arriving late (another process holds the cores) workers spin less (LatePolicy), and, opted in
// with NEEDLE_ADAPTIVE_THREADS=1, team jobs run on the caller alone for a while. Nothing here
// touches the process environment.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include <pthread.h>
#include <sched.h>

namespace needle {
namespace cpu {

constexpr int kMaxThreads = 255;  // the claim word holds the team size in 8 bits

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Whether workers get CPU time when woken, judged from the last jobs: a late arrival (a worker
// that was spinning, so awake, yet did not start within kLateNs) counts 3, an arrival in time
// takes 1 off. From kEnter on the machine counts as busy until the score is back at 0. Busy:
// team jobs run on the caller alone, except every kProbeEvery-th one, which tries the team
// again. Pure bookkeeping, no clock: tests drive it directly (tests/threads_check.cc).
class LatePolicy {
 public:
  static constexpr int kLate = 3, kEnter = 6, kMax = 12, kProbeEvery = 16;
  void Record(bool late) {
    score_ = late ? std::min(kMax, score_ + kLate) : std::max(0, score_ - 1);
    if (score_ >= kEnter && !Busy()) {
      busy_.store(true, std::memory_order_relaxed);
      skipped_ = 0;
    }
    if (score_ == 0) busy_.store(false, std::memory_order_relaxed);
  }
  bool Busy() const { return busy_.load(std::memory_order_relaxed); }
  // Whether a team job should ask for its whole team now.
  bool TryTeam() { return !Busy() || ++skipped_ % kProbeEvery == 0; }
  int Score() const { return score_; }

 private:
  int score_ = 0;
  unsigned skipped_ = 0;
  std::atomic<bool> busy_{false};
};

// Thread cap: NEEDLE_NUM_THREADS, else OMP_NUM_THREADS (its first number), else the CPUs this
// process may run on. Values that are not a positive integer are ignored (device.cpu() reports
// a bad NEEDLE_NUM_THREADS to Python users).
inline int ThreadsFromEnvironment() {
  for (const char* name : {"NEEDLE_NUM_THREADS", "OMP_NUM_THREADS"}) {
    const char* env = std::getenv(name);
    if (env == nullptr) continue;
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && (*end == '\0' || *end == ',') && v > 0) return int(std::min<long>(v, kMaxThreads));
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, std::min(CPU_COUNT(&set), kMaxThreads));
  return int(std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), kMaxThreads)));
}

// Opt-in (NEEDLE_ADAPTIVE_THREADS=1): a team product run alone sums a K split in another
// order, so results would depend on the load (and jit would no longer equal eager bit for bit).
inline bool AdaptiveFromEnvironment() {
  const char* env = std::getenv("NEEDLE_ADAPTIVE_THREADS");
  return env != nullptr && std::string(env) == "1";
}

class ThreadPool {
 public:
  using Fn = void (*)(const void* ctx, int index, int slot_or_team);
  // Idle workers spin this long, then sleep. Eager steps leave 0.1-1 ms of Python between two
  // parallel jobs, and waking a sleeping worker costs tens of us (more in a VM), paid by every
  // GEMM of the step: 2 ms keeps an eager step's workers awake (OpenMP runtimes spin longer).
  static constexpr int64_t kSpinNs = 2000000;
  static constexpr int64_t kSpinBusyNs = 5000;   // idle spin on a busy machine
  static constexpr int64_t kLateNs = 50000;      // a spinning worker later than this is late
  static constexpr int64_t kYieldAfterNs = 20000;  // waits spin this long, then yield the CPU

  // The process's pool, created on first use; a forked child gets a fresh one (the parent's
  // workers do not exist there), the parent's is left as it was.
  static ThreadPool& Get() {
    ThreadPool* pool = Slot().load(std::memory_order_acquire);
    if (pool != nullptr) return *pool;
    static std::mutex create;
    std::lock_guard<std::mutex> lock(create);
    static const bool registered = pthread_atfork(nullptr, nullptr, [] { Slot().store(nullptr); }) == 0;
    (void)registered;
    pool = Slot().load();
    if (pool == nullptr) {
      pool = new ThreadPool();  // never destroyed: workers may still run at exit
      Slot().store(pool, std::memory_order_release);
    }
    return *pool;
  }

  int max_threads() const { return max_threads_.load(std::memory_order_relaxed); }
  void set_max_threads(int n) { max_threads_.store(std::max(1, std::min(n, kMaxThreads))); }
  void set_adaptive(bool on) { adaptive_.store(on); }
  LatePolicy& policy() { return policy_; }

  // fn(ctx, piece, slot) for every piece in [0, pieces), on up to `threads` threads; slot
  // (< threads) names the thread running the piece (0: the caller). Serial when the pool is in
  // use (another thread's job, or a job inside a job).
  void RunPieces(int pieces, int threads, Fn fn, const void* ctx) {
    threads = std::min(threads, pieces);
    if (threads <= 1 || !Acquire()) {
      for (int p = 0; p < pieces; ++p) fn(ctx, p, 0);
      return;
    }
    threads = StartWorkers(threads);
    if (threads <= 1) {
      Release();
      for (int p = 0; p < pieces; ++p) fn(ctx, p, 0);
      return;
    }
    const bool spinning = Publish(threads, pieces, fn, ctx, false);
    const int64_t t0 = NowNs();
    int mine = 0;
    for (int p; (p = Claim(gen_)) >= 0; ++mine) fn(ctx, p, 0);
    const bool alone = mine == pieces;
    WaitUntil([&] { return done_.load(std::memory_order_acquire) == pieces - mine; });
    if (alone ? spinning && NowNs() - t0 > kLateNs : true) policy_.Record(alone);
    Release();
  }

  // fn(ctx, tid, team) on `threads` threads running at once (they may call Barrier()); on a
  // busy machine (or with the pool in use) on the caller alone: fn(ctx, 0, 1).
  void RunTeam(int threads, Fn fn, const void* ctx) {
    if (threads <= 1 || !Acquire()) {
      fn(ctx, 0, 1);
      return;
    }
    threads = StartWorkers(threads);
    if (threads <= 1 || (adaptive_.load(std::memory_order_relaxed) && !policy_.TryTeam())) {
      Release();
      fn(ctx, 0, 1);
      return;
    }
    team_ = threads;
    arrived_.store(0, std::memory_order_relaxed);
    const bool spinning = Publish(threads, threads - 1, fn, ctx, true);
    const int64_t t0 = NowNs();
    WaitUntil([&] { return Next(claim_.load(std::memory_order_acquire)) == threads - 1; });
    if (spinning) policy_.Record(NowNs() - t0 > kLateNs);
    fn(ctx, 0, threads);
    WaitUntil([&] { return done_.load(std::memory_order_acquire) == threads - 1; });
    Release();
  }

  // Inside a team job of `team` members: returns once every member has called it.
  void Barrier(int team) {
    if (team <= 1) return;
    const uint32_t phase = phase_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == team) {
      arrived_.store(0, std::memory_order_relaxed);
      phase_.store(phase + 1, std::memory_order_release);
      return;
    }
    WaitUntil([&] { return phase_.load(std::memory_order_acquire) != phase; });
  }

  // The slot of the piece this thread is running (0 outside jobs).
  static int& CurrentSlot() {
    static thread_local int slot = 0;
    return slot;
  }

  // True on a thread that is running a piece or a team member (nested work runs serially).
  static bool& InJob() {
    static thread_local bool in_job = false;
    return in_job;
  }

 private:
  // claim_: generation (24 bits) | team size (8) | pieces (16) | next unclaimed piece (16).
  static uint64_t Pack(uint64_t gen, uint64_t threads, uint64_t limit, uint64_t next) {
    return (gen & 0xffffff) << 40 | threads << 32 | limit << 16 | next;
  }
  static uint32_t Gen(uint64_t w) { return uint32_t(w >> 40); }
  static int Threads(uint64_t w) { return int(w >> 32 & 0xff); }
  static int Limit(uint64_t w) { return int(w >> 16 & 0xffff); }
  static int Next(uint64_t w) { return int(w & 0xffff); }

  static std::atomic<ThreadPool*>& Slot() {
    static std::atomic<ThreadPool*> pool{nullptr};
    return pool;
  }

  ThreadPool() : max_threads_(ThreadsFromEnvironment()), adaptive_(AdaptiveFromEnvironment()) {}

  bool Acquire() {
    if (InJob() || in_use_.exchange(true, std::memory_order_acquire)) return false;
    InJob() = true;
    return true;
  }
  void Release() {
    InJob() = false;
    in_use_.store(false, std::memory_order_release);
  }

  template <class P>
  void WaitUntil(const P& done) const {
    const int64_t t0 = NowNs();
    for (int i = 0; !done(); ++i) {
      if (i % 64 == 63 && NowNs() - t0 > kYieldAfterNs)
        std::this_thread::yield();  // a descheduled member may be waiting for this core
      else
        CpuRelax();
    }
  }

  // Starts the workers a team of `threads` lacks; returns the team size there are threads for.
  int StartWorkers(int threads) {
    for (; workers_ + 1 < threads; ++workers_) {
      try {
        std::thread([this, slot = workers_ + 1, seen = gen_] { WorkerLoop(slot, seen); }).detach();
      } catch (...) {  // the system has no more threads: run with those there are
        break;
      }
    }
    return std::min(threads, workers_ + 1);
  }

  // Writes the job and wakes sleeping workers. Returns whether every worker was awake
  // (spinning), i.e. whether a slow start means the OS did not run it.
  bool Publish(int threads, int pieces, Fn fn, const void* ctx, bool team) {
    fn_ = fn;
    ctx_ = ctx;
    team_job_ = team;
    done_.store(0, std::memory_order_relaxed);
    gen_ = (gen_ + 1) & 0xffffff;
    claim_.store(Pack(gen_, uint64_t(threads), uint64_t(pieces), 0), std::memory_order_seq_cst);
    const bool spinning = sleepers_.load(std::memory_order_seq_cst) == 0;
    if (!spinning) {
      { std::lock_guard<std::mutex> lock(mu_); }  // a worker between its check and its wait
      cv_.notify_all();
    }
    return spinning;
  }

  // The next piece of job `gen`, or -1 when all are taken (or that job is over).
  int Claim(uint32_t gen) {
    uint64_t w = claim_.load(std::memory_order_acquire);
    while (Gen(w) == gen && Next(w) < Limit(w))
      if (claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) return Next(w);
    return -1;
  }

  void WorkerLoop(int slot, uint32_t seen) {
    for (;;) {
      const uint64_t w = WaitForJob(seen);
      seen = Gen(w);
      if (slot >= Threads(w)) continue;
      InJob() = true;
      for (int p; (p = Claim(seen)) >= 0;) {
        if (team_job_) {  // one member per worker: tid p + 1
          fn_(ctx_, p + 1, team_);
          done_.fetch_add(1, std::memory_order_release);
          break;
        }
        fn_(ctx_, p, slot);
        done_.fetch_add(1, std::memory_order_release);
      }
      InJob() = false;
    }
  }

  uint64_t WaitForJob(uint32_t seen) {
    const int64_t spin = policy_.Busy() ? kSpinBusyNs : kSpinNs, t0 = NowNs();
    for (int i = 0;; ++i) {
      const uint64_t w = claim_.load(std::memory_order_acquire);
      if (Gen(w) != seen) return w;
      if (i % 64 == 63 && NowNs() - t0 > spin) break;
      CpuRelax();
    }
    std::unique_lock<std::mutex> lock(mu_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    uint64_t w;
    cv_.wait(lock, [&] { return Gen(w = claim_.load(std::memory_order_seq_cst)) != seen; });
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return w;
  }

  std::atomic<int> max_threads_;
  std::atomic<bool> adaptive_;
  LatePolicy policy_;
  std::atomic<bool> in_use_{false};
  int workers_ = 0;  // detached threads, started by a job's owner
  // The current job: written by its owner before claim_ is published, read by workers only
  // after they claimed one of its pieces (the job cannot end before that piece does).
  Fn fn_ = nullptr;
  const void* ctx_ = nullptr;
  bool team_job_ = false;
  int team_ = 1;
  uint32_t gen_ = 0;
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};
  std::atomic<int> arrived_{0};
  std::atomic<uint32_t> phase_{0};
  std::atomic<int> sleepers_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

// ------------------------------------------------------------------------ entry points
// Threads a kernel may split its work over: the cap, or 1 inside a parallel piece.
inline int MaxThreads() { return ThreadPool::InJob() ? 1 : ThreadPool::Get().max_threads(); }

// Sets the cap (tests, benchmarks); takes effect at the next job.
inline void SetMaxThreads(int n) { ThreadPool::Get().set_max_threads(n); }

// On (as NEEDLE_ADAPTIVE_THREADS=1): on a busy machine team jobs run on the caller alone.
// Off (the default): team jobs always wait for their whole team.
inline void SetAdaptiveThreads(bool on) { ThreadPool::Get().set_adaptive(on); }

// f(piece, slot) for every piece in [0, pieces), pieces <= 65535, on up to `threads` threads.
template <class F>
void ParallelPieces(int pieces, int threads, const F& f) {
  if (pieces <= 0) return;
  ThreadPool::Get().RunPieces(pieces, threads, [](const void* c, int p, int s) {
    const int outer = ThreadPool::CurrentSlot();
    ThreadPool::CurrentSlot() = s;
    (*static_cast<const F*>(c))(p, s);
    ThreadPool::CurrentSlot() = outer;
  }, &f);
}

// Inside ParallelPieces / ParallelRange: the slot (< the threads asked for) running this piece,
// for per-thread scratch.
inline int ThreadSlot() { return ThreadPool::CurrentSlot(); }

// f(i) for i in [0, n): `threads` contiguous chunks (schedule(static) of OpenMP).
template <class F>
void ParallelFor(int64_t n, int threads, const F& f) {
  const int k = int(std::max<int64_t>(1, std::min<int64_t>(threads, n)));
  ParallelPieces(k, k, [&](int p, int) {
    for (int64_t i = n * p / k, end = n * (p + 1) / k; i < end; ++i) f(i);
  });
}

// f(tid, team) on a team of `threads` running at once, or f(0, 1) (see RunTeam).
template <class F>
void ParallelTeam(int threads, const F& f) {
  ThreadPool::Get().RunTeam(threads, [](const void* c, int t, int n) { (*static_cast<const F*>(c))(t, n); }, &f);
}

// Inside ParallelTeam: waits for every member of the team.
inline void TeamBarrier(int team) { ThreadPool::Get().Barrier(team); }

}  // namespace cpu
}  // namespace needle
