// needle CPU backend: the buffer, argument validation and the parallel range splitter.
//
// Every entry point validates all its views and compact operands with the helpers below
// BEFORE touching memory: std::invalid_argument (-> ValueError) for bad sizes,
// std::out_of_range (-> IndexError) for a view leaving its buffer. Kernels never throw.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <list>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/mman.h>

#include "cpu_threads.h"

// Kernels that must round every product and sum to float32 on its own (to equal the numpy spec
// or the separate array ops bit for bit) are compiled without fused multiply-adds.
#if defined(__GNUC__) && !defined(__clang__)
#define NEEDLE_NO_FMA __attribute__((optimize("fp-contract=off")))
#else
#define NEEDLE_NO_FMA  // clang contracts only within one expression: such kernels keep steps apart
#endif

namespace needle {
namespace cpu {

using Shape = std::vector<int64_t>;

constexpr size_t kAlignment = 64;
// Below these element counts one thread is faster than handing pieces to the workers (a
// sleeping worker takes ~10 us to wake; cpu_threads.h).
constexpr int64_t kParallelMinCopy = int64_t(1) << 17;  // memory-bound loops
constexpr int64_t kParallelMinMath = int64_t(1) << 15;  // exp / log / tanh / pow

// Freed buffers of 64 KiB .. 64 MiB are kept (up to NEEDLE_CPU_CACHE_MB, default 256 MiB in
// all) for the next Array of the same size: training loops allocate the same sizes every step,
// and fresh pages cost a page fault plus zeroing each, several times the kernel that writes
// them. Buffers from 8 MiB on are 2 MiB aligned and advised for transparent huge pages.
class BufferCache {
 public:
  static BufferCache& Instance() {
    static BufferCache* cache = new BufferCache();  // never destroyed: Arrays may outlive exit
    return *cache;
  }
  // Rounded byte size that Allocate / Release use for n floats.
  static size_t Bytes(int64_t n) {
    size_t bytes = std::max<size_t>(size_t(n) * sizeof(float), 1);
    const size_t step = bytes >= kHugeMin ? kHuge : bytes >= kCacheMin ? 4096 : kAlignment;
    return (bytes + step - 1) / step * step;
  }
  float* Allocate(size_t bytes) {
    if (bytes >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = by_size_.find(bytes);
      if (it != by_size_.end() && !it->second.empty()) {  // the most recently freed: still in cache
        const auto entry = it->second.back();
        it->second.pop_back();
        void* p = entry->ptr;
        lru_.erase(entry);
        cached_ -= bytes;
        return static_cast<float*>(p);
      }
    }
    void* p = std::aligned_alloc(bytes >= kHugeMin ? kHuge : kAlignment, bytes);
    if (p == nullptr) {  // give the cached buffers back and try once more
      Trim();
      p = std::aligned_alloc(bytes >= kHugeMin ? kHuge : kAlignment, bytes);
      if (p == nullptr) throw std::bad_alloc();
    }
#ifdef MADV_HUGEPAGE
    if (bytes >= kHugeMin) madvise(p, bytes, MADV_HUGEPAGE);  // only advice: failure is harmless
#endif
    return static_cast<float*>(p);
  }
  void Release(float* p, size_t bytes) {
    if (bytes < kCacheMin || bytes > kCacheMaxEntry || bytes > capacity_) {
      std::free(p);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    while (cached_ + bytes > capacity_) {  // evict the least recently freed
      const Entry old = lru_.back();
      auto& same = by_size_[old.bytes];  // oldest of its size: the bottom of its stack
      same.erase(same.begin());
      lru_.pop_back();
      cached_ -= old.bytes;
      std::free(old.ptr);
    }
    try {  // runs in a destructor: bookkeeping that cannot allocate just frees the buffer
      auto& stack = by_size_[bytes];
      lru_.push_front({p, bytes});
      try {
        stack.push_back(lru_.begin());
      } catch (...) {
        lru_.pop_front();
        throw;
      }
      cached_ += bytes;
    } catch (...) {
      std::free(p);
    }
  }
  void Trim() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Entry& e : lru_) std::free(e.ptr);
    lru_.clear();
    by_size_.clear();
    cached_ = 0;
  }

 private:
  static constexpr size_t kCacheMin = size_t(64) << 10;
  static constexpr size_t kCacheMaxEntry = size_t(64) << 20;
  static constexpr size_t kHuge = size_t(2) << 20;      // huge page
  static constexpr size_t kHugeMin = size_t(8) << 20;   // rounding up to kHuge wastes <= 25%
  BufferCache() {
    const char* env = std::getenv("NEEDLE_CPU_CACHE_MB");
    if (env != nullptr) capacity_ = size_t(std::max(0L, std::strtol(env, nullptr, 10))) << 20;
  }
  struct Entry {
    void* ptr;
    size_t bytes;
  };
  std::mutex mu_;
  std::list<Entry> lru_;  // most recently freed first
  std::unordered_map<size_t, std::vector<std::list<Entry>::iterator>> by_size_;  // stacks
  size_t cached_ = 0;
  size_t capacity_ = size_t(256) << 20;
};

// A flat float32 buffer, 64-byte aligned, given back in the destructor.
struct AlignedArray {
  explicit AlignedArray(int64_t n) {
    if (n < 0) throw std::invalid_argument("Array: size must be >= 0, got " + std::to_string(n));
    if (n > (int64_t(1) << 60) / int64_t(sizeof(float))) throw std::bad_alloc();
    ptr = BufferCache::Instance().Allocate(BufferCache::Bytes(n));
    size = n;
  }
  // A view of memory owned elsewhere (wrap_pointer: DLPack / numpy import); never freed here.
  struct External {};
  AlignedArray(External, float* p, int64_t n) : ptr(p), size(n), owned(false) {}
  ~AlignedArray() {
    if (owned) BufferCache::Instance().Release(ptr, BufferCache::Bytes(size));
  }
  AlignedArray(const AlignedArray&) = delete;
  AlignedArray& operator=(const AlignedArray&) = delete;
  uintptr_t ptr_as_int() const { return reinterpret_cast<uintptr_t>(ptr); }

  float* ptr = nullptr;
  int64_t size = 0;
  bool owned = true;
};
using Array = AlignedArray;  // the name the kernel entry points use

// ------------------------------------------------------------------------ messages
inline std::string Str(__int128 v) {
  if (v == 0) return "0";
  bool neg = v < 0;
  unsigned __int128 u = neg ? -static_cast<unsigned __int128>(v) : static_cast<unsigned __int128>(v);
  std::string s;
  while (u > 0) {
    s.insert(s.begin(), char('0' + int(u % 10)));
    u /= 10;
  }
  return neg ? "-" + s : s;
}

// Python tuple style: (2, 3), (5,), ().
inline std::string Str(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// ------------------------------------------------------------------------ validation
// Number of elements of the view (shape, strides, offset) over a buffer of buf_size elements;
// throws unless every reachable element lies inside the buffer (docs/backends.md).
inline int64_t CheckView(const char* fn, const Shape& shape, const Shape& strides, int64_t offset,
                         int64_t buf_size) {
  const std::string f(fn);
  if (shape.size() != strides.size())
    throw std::invalid_argument(f + ": shape " + Str(shape) + " and strides " + Str(strides) +
                                " differ in length");
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument(f + ": negative dimension in shape " + Str(shape));
    if (__builtin_mul_overflow(count, d, &count))
      throw std::invalid_argument(f + ": shape " + Str(shape) + " has too many elements");
  }
  if (count == 0) return 0;
  __int128 lo = offset, hi = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    __int128 reach = static_cast<__int128>(shape[i] - 1) * strides[i];
    (reach < 0 ? lo : hi) += reach;
  }
  if (lo < 0 || hi >= buf_size)
    throw std::out_of_range(f + ": view shape " + Str(shape) + " strides " + Str(strides) +
                            " offset " + std::to_string(offset) + " reaches elements [" + Str(lo) +
                            ", " + Str(hi) + "] of a buffer of " + std::to_string(buf_size));
  return count;
}

// A compact operand `what` must hold at least `need` elements.
inline void CheckHolds(const char* fn, const char* what, int64_t have, int64_t need) {
  if (have < need)
    throw std::invalid_argument(std::string(fn) + ": " + what + " holds " + std::to_string(have) +
                                " elements, needs " + std::to_string(need));
}

// Product of non-negative sizes, throwing on overflow.
inline int64_t CheckedProduct(const char* fn, std::initializer_list<int64_t> sizes) {
  int64_t r = 1;
  for (int64_t s : sizes)
    if (__builtin_mul_overflow(r, s, &r))
      throw std::invalid_argument(std::string(fn) + ": sizes overflow int64");
  return r;
}

// ------------------------------------------------------------------------ threads
// Calls body(i0, i1) on disjoint pieces covering [0, n): one piece per thread when `work`
// reaches `min_work`, else one piece. Piece borders are multiples of `align` (false sharing).
// The pieces depend only on MaxThreads(), never on which thread runs them.
template <class F>
void ParallelRange(int64_t n, int64_t work, int64_t min_work, int64_t align, const F& body) {
  if (n <= 0) return;
  const int nt = MaxThreads();
  if (nt <= 1 || work < min_work || n < 2) {
    body(int64_t(0), n);
    return;
  }
  ParallelPieces(nt, nt, [&](int t, int) {
    const int64_t i0 = std::min(n, n * t / nt / align * align);
    const int64_t i1 = t + 1 == nt ? n : std::min(n, n * (t + 1) / nt / align * align);
    if (i0 < i1) body(i0, i1);
  });
}

}  // namespace cpu
}  // namespace needle
