// needle's CUDA emulator: runs the CUDA C++ kernels of src/ on the CPU, for tests (g++ -std=c++17,
// glibc ucontext). Built by CMake with NEEDLE_CUDA_EMULATOR=ON (docs/cuda.md, "Testing CUDA
// without a GPU").
//
// Every CUDA thread of a block is a fiber; blocks run one after another on the calling OS thread,
// so `__shared__` can be a function-local static. A fiber runs until it reaches a barrier:
// __syncthreads waits for the whole block, warp collectives (__shfl_*_sync, __syncwarp, wmma) for
// their warp only. A barrier that can never be released throws KernelError, which the launch
// turns into a Python RuntimeError naming the kernel.
//
// CUDA_EMU_ORDER=reverse|random runs the threads between two barriers in another order, and
// CUDA_EMU_WARP_EAGER=1 lets each warp run ahead to its next block barrier before the next warp
// starts, so a missing barrier shows up as a different result.
#pragma once

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUDA_EMU_ASAN 1
#else
#define CUDA_EMU_ASAN 0
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
// Every __shared__ array lives in one ELF section, which is filled with NaN at each block start
// (a read before the first write shows up). Under ASan the arrays stay ordinary statics instead,
// because ASan puts no red zones around variables in a named section.
#if CUDA_EMU_ASAN
#define __shared__ static
#else
#define __shared__ static __attribute__((section("cuda_emu_shared")))
#endif

struct uint3 { unsigned x = 0, y = 0, z = 0; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

// Set by the scheduler before each switch into a fiber.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

namespace cuda_emu {

// A fault inside a kernel (deadlock, bad wmma pointer, ...): becomes a Python RuntimeError.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class State { kReady, kAtBlockBarrier, kAtWarpBarrier, kDone };
enum class Order { kForward, kReverse, kRandom };

struct Fiber {
  ucontext_t ctx;
  State state = State::kDone;
  unsigned wait_mask = 0;  // the lanes a warp barrier waits for
  char* stack = nullptr;
};

struct Block {
  static constexpr size_t kStackBytes = 256 * 1024;
  std::vector<Fiber> fibers;
  int size = 0;     // threads per block
  int current = 0;  // linear thread index of the running fiber
  ucontext_t scheduler;
  const std::function<void()>* body = nullptr;
  uint64_t mailbox[32][32];  // per warp, per lane: the value a shuffle publishes
  std::vector<int> order;
  std::mt19937 rng{12345};
  Order mode = Order::kForward;
  bool strict = false;  // __syncthreads with exited threads is an error
  bool warp_eager = false;
  std::string error;
  const char* kernel = "";
#if CUDA_EMU_ASAN
  const void* scheduler_stack = nullptr;
  size_t scheduler_stack_size = 0;
#endif
};
inline Block& B() {
  static Block b;
  return b;
}

inline std::string Where() {
  return std::string("kernel ") + B().kernel + ", block (" + std::to_string(blockIdx.x) + "," +
         std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + ")";
}

inline void SetThreadIdx(int t) {
  threadIdx.x = t % blockDim.x;
  threadIdx.y = (t / blockDim.x) % blockDim.y;
  threadIdx.z = t / (blockDim.x * blockDim.y);
}

// Fiber switches, annotated for ASan so that it tracks which stack is live.
inline void SwitchToFiber(int i) {
  Block& b = B();
  b.current = i;
  SetThreadIdx(i);
#if CUDA_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, b.fibers[i].stack, Block::kStackBytes);
  swapcontext(&b.scheduler, &b.fibers[i].ctx);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  swapcontext(&b.scheduler, &b.fibers[i].ctx);
#endif
}

inline void EnteredFiber() {
#if CUDA_EMU_ASAN
  Block& b = B();
  __sanitizer_finish_switch_fiber(nullptr, &b.scheduler_stack, &b.scheduler_stack_size);
#endif
}

inline void SwitchToScheduler(bool exiting) {
  Block& b = B();
#if CUDA_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(exiting ? nullptr : &fake, b.scheduler_stack, b.scheduler_stack_size);
#endif
  if (exiting) return;  // uc_link resumes the scheduler
  swapcontext(&b.fibers[b.current].ctx, &b.scheduler);
#if CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, &b.scheduler_stack, &b.scheduler_stack_size);
#endif
  SetThreadIdx(b.current);
}

inline void FiberMain() {
  EnteredFiber();
  Block& b = B();
  try {
    (*b.body)();
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = e.what();
  } catch (...) {
    if (b.error.empty()) b.error = "exception thrown inside the kernel";
  }
  b.fibers[b.current].state = State::kDone;
  SwitchToScheduler(true);
}

inline void Wait(State s, unsigned mask = 0) {
  Block& b = B();
  Fiber& me = b.fibers[b.current];
  me.state = s;
  me.wait_mask = mask;
  SwitchToScheduler(false);
}

inline void SyncThreads() { Wait(State::kAtBlockBarrier); }
inline void SyncWarp(unsigned mask) { Wait(State::kAtWarpBarrier, mask); }

// Lanes of warp w that exist (the last warp of a block may be partial).
inline unsigned ExistingLanes(int w, int n) {
  return w * 32 + 32 <= n ? 0xffffffffu : (1u << (n - w * 32)) - 1;
}

// One pass over the ready fibers. Warp-eager: a warp runs through its own warp barriers until
// it reaches __syncthreads or exits, before the next warp starts.
inline void RunReadyFibers() {
  Block& b = B();
  const int n = b.size, nwarps = (n + 31) / 32;
  if (!b.warp_eager) {
    if (b.mode == Order::kRandom) std::shuffle(b.order.begin(), b.order.end(), b.rng);
    for (int i : b.order)
      if (b.fibers[i].state == State::kReady) SwitchToFiber(i);
    return;
  }
  for (int wi = 0; wi < nwarps; ++wi) {
    const int w = b.mode == Order::kReverse ? nwarps - 1 - wi : wi;
    const int lanes = std::min(32, n - w * 32);
    for (;;) {
      for (int l = 0; l < lanes; ++l) {
        const int lane = b.mode == Order::kReverse ? lanes - 1 - l : l;
        if (b.fibers[w * 32 + lane].state == State::kReady) SwitchToFiber(w * 32 + lane);
      }
      if (!b.error.empty()) return;
      bool any_at_warp = false, all_at_warp = true;
      for (int l = 0; l < lanes; ++l) {
        const State st = b.fibers[w * 32 + l].state;
        if (st == State::kAtWarpBarrier) any_at_warp = true;
        else if (st != State::kDone) all_at_warp = false;
      }
      if (!(any_at_warp && all_at_warp)) break;  // the general release below decides
      unsigned need = 0, exited = 0;
      for (int l = 0; l < lanes; ++l) {
        const Fiber& f = b.fibers[w * 32 + l];
        if (f.state == State::kAtWarpBarrier) need |= f.wait_mask;
        if (f.state == State::kDone) exited |= 1u << l;
      }
      if (need & exited) break;  // reported below
      for (int l = 0; l < lanes; ++l)
        if (b.fibers[w * 32 + l].state == State::kAtWarpBarrier) b.fibers[w * 32 + l].state = State::kReady;
    }
  }
}

// Releases the warp barriers whose lanes have all arrived; true if any was released.
inline bool ReleaseWarpBarriers() {
  Block& b = B();
  const int n = b.size, nwarps = (n + 31) / 32;
  bool released = false;
  for (int w = 0; w < nwarps; ++w) {
    unsigned arrived = 0, need = 0, exited = 0;
    for (int l = 0; l < 32 && w * 32 + l < n; ++l) {
      const Fiber& f = b.fibers[w * 32 + l];
      if (f.state == State::kAtWarpBarrier) {
        arrived |= 1u << l;
        need |= f.wait_mask;
      }
      if (f.state == State::kDone) exited |= 1u << l;
    }
    if (arrived == 0) continue;
    if (need & exited)
      throw KernelError("a warp collective (shuffle, __syncwarp, wmma) waits for a lane that has exited (" +
                        Where() + ", warp " + std::to_string(w) + ")");
    if ((need & ExistingLanes(w, n) & ~arrived) == 0) {
      for (int l = 0; l < 32; ++l)
        if (arrived >> l & 1) b.fibers[w * 32 + l].state = State::kReady;
      released = true;
    }
  }
  return released;
}

// Runs one block to completion; throws KernelError on a fault or a barrier that cannot be
// released.
inline void RunBlock() {
  Block& b = B();
  const int n = b.size;
  for (int i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
#if CUDA_EMU_ASAN
    // A fault may have abandoned frames on this stack: forget their red zones.
    ASAN_UNPOISON_MEMORY_REGION(f.stack, Block::kStackBytes);
#endif
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = Block::kStackBytes;
    f.ctx.uc_link = &b.scheduler;
    makecontext(&f.ctx, FiberMain, 0);
    f.state = State::kReady;
  }
  for (;;) {
    RunReadyFibers();
    if (!b.error.empty()) throw KernelError(b.error + " (" + Where() + ")");
    bool released = ReleaseWarpBarriers();
    int at_block_barrier = 0, done = 0, ready = 0;
    for (int i = 0; i < n; ++i) {
      at_block_barrier += b.fibers[i].state == State::kAtBlockBarrier;
      done += b.fibers[i].state == State::kDone;
      ready += b.fibers[i].state == State::kReady;
    }
    if (done == n) return;
    if (at_block_barrier > 0 && at_block_barrier + done == n) {
      if (done > 0 && b.strict)
        throw KernelError("__syncthreads reached by " + std::to_string(at_block_barrier) + " threads while " +
                          std::to_string(done) + " have exited (" + Where() + ")");
      for (int i = 0; i < n; ++i)
        if (b.fibers[i].state == State::kAtBlockBarrier) b.fibers[i].state = State::kReady;
      released = true;
    }
    if (!released && ready == 0)
      throw KernelError("deadlock: " + std::to_string(at_block_barrier) +
                        " threads wait at __syncthreads while others wait at a warp collective (" + Where() +
                        ")");
  }
}

inline void ReadOptions() {
  Block& b = B();
  const char* order = std::getenv("CUDA_EMU_ORDER");
  const std::string o = order ? order : "";
  b.mode = o == "reverse" ? Order::kReverse : o == "random" ? Order::kRandom : Order::kForward;
  const char* strict = std::getenv("CUDA_EMU_STRICT");
  b.strict = strict != nullptr && std::strcmp(strict, "1") == 0;
  const char* eager = std::getenv("CUDA_EMU_WARP_EAGER");
  b.warp_eager = eager != nullptr && std::strcmp(eager, "1") == 0;
}

inline void EnsureFibers(int n) {
  Block& b = B();
  const long page = sysconf(_SC_PAGESIZE);
  while (static_cast<int>(b.fibers.size()) < n) {
    Fiber f;
    void* mem = mmap(nullptr, Block::kStackBytes + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) throw std::bad_alloc();
    mprotect(mem, page, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
    f.stack = static_cast<char*>(mem) + page;
    b.fibers.push_back(f);
  }
  b.order.resize(n);
  for (int i = 0; i < n; ++i) b.order[i] = b.mode == Order::kReverse ? n - 1 - i : i;
}

#if !CUDA_EMU_ASAN
extern "C" char __start_cuda_emu_shared[] __attribute__((weak));
extern "C" char __stop_cuda_emu_shared[] __attribute__((weak));
#endif

// All-ones bytes: a NaN in every float and double, -1 in every integer.
inline void PoisonSharedMemory() {
#if !CUDA_EMU_ASAN
  if (__start_cuda_emu_shared != nullptr)
    std::memset(__start_cuda_emu_shared, 0xff, __stop_cuda_emu_shared - __start_cuda_emu_shared);
#endif
}

inline int& LastLaunchError() {
  static int e = 0;
  return e;
}

// Launches are serialised: the scheduler, the block index and shared memory are global.
inline std::mutex& LaunchMutex() {
  static std::mutex m;
  return m;
}

inline bool ValidLaunch(dim3 grid, dim3 block) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  return threads > 0 && threads <= 1024 && block.x <= 1024 && block.y <= 1024 && block.z <= 64 && grid.x > 0 &&
         grid.y > 0 && grid.z > 0 && grid.x <= 2147483647u && grid.y <= 65535 && grid.z <= 65535;
}

inline void Run(const char* kernel, dim3 grid, dim3 block, const std::function<void()>& body) {
  if (!ValidLaunch(grid, block)) {
    LastLaunchError() = 9;  // cudaErrorInvalidConfiguration, read by cudaGetLastError
    return;
  }
  std::lock_guard<std::mutex> lock(LaunchMutex());
  ReadOptions();
  const int threads = static_cast<int>(block.x * block.y * block.z);
  EnsureFibers(threads);
  Block& b = B();
  b.size = threads;
  b.body = &body;
  b.error.clear();
  b.kernel = kernel;
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = {x, y, z};
        PoisonSharedMemory();
        RunBlock();
      }
}

// The emulated `kernel<<<grid, block>>>(args...)`: the arguments are converted to the kernel's
// parameter types once, as CUDA copies them into parameter space, and every thread calls the
// kernel on a copy.
template <typename... Params, typename... Args>
void Launch(const char* name, dim3 grid, dim3 block, void (*kernel)(Params...), Args&&... args) {
  std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  const std::function<void()> body = [&] { std::apply(kernel, params); };
  Run(name, grid, block, body);
}

// Warp shuffles: each lane publishes its value in the warp's mailbox, the warp meets at a
// barrier, each lane reads its source lane, and the warp meets again before the mailbox is
// reused.
template <typename T>
inline T Shuffle(unsigned mask, T v, int src, bool valid) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of at most 8 bytes");
  Block& b = B();
  const int w = b.current / 32, lane = b.current % 32;
  if (!(mask >> lane & 1)) throw KernelError("shuffle called by a lane outside its mask");
  std::memcpy(&b.mailbox[w][lane], &v, sizeof(T));
  SyncWarp(mask);
  T r = v;
  if (valid && w * 32 + src < b.size) {
    if (!(mask >> src & 1)) throw KernelError("shuffle reads lane " + std::to_string(src) + ", outside its mask");
    std::memcpy(&r, &b.mailbox[w][src], sizeof(T));
  }
  SyncWarp(mask);
  return r;
}

inline int Lane() { return B().current % 32; }

}  // namespace cuda_emu

// ------------------------------------------------------------------------------------ intrinsics

inline void __syncthreads() { cuda_emu::SyncThreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { cuda_emu::SyncWarp(mask); }
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = cuda_emu::Lane(), src = lane ^ lane_mask;
  return cuda_emu::Shuffle(mask, v, src, src / width == lane / width);
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  const int lane = cuda_emu::Lane();
  return cuda_emu::Shuffle(mask, v, (lane / width) * width + src_lane % width, true);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = cuda_emu::Lane(), src = lane + static_cast<int>(delta);
  return cuda_emu::Shuffle(mask, v, src, src / width == lane / width);
}
// One OS thread runs every fiber, and a fiber yields only at a barrier: a read-modify-write is
// atomic. (So the emulator cannot show what a lost update would do.)
template <typename T>
inline T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
inline void __threadfence() {}
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((uint64_t{a} * b) >> 32); }
// The _rn intrinsics round each operation on its own: the build uses -ffp-contract=off.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
