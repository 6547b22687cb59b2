// Standalone harness for src/gemm.h: correctness sweep and GFLOP/s, without Python.
//
// Build into /tmp (never into the repo):
//   g++ -O3 -pthread -std=c++17 -Isrc benchmarks/bench_gemm_native.cc -o /tmp/bench_gemm
// Run:
//   /tmp/bench_gemm check              # all transposes, odd sizes, ld > width, batch strides,
//                                      # accumulate, k = 0; exits 1 on a mismatch
//   OMP_NUM_THREADS=2 /tmp/bench_gemm bench [NN|TN|NT|TT ...] [n ...]   # square GFLOP/s
//   NEEDLE_GEMM_KERNEL=generic /tmp/bench_gemm check  # the portable kernel
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gemm.h"

namespace {

struct Case {
  bool ta, tb;
  int64_t batch, m, n, k;
  int64_t pad;  // extra leading-dim elements
  bool shared_a, shared_b;
  bool accumulate;
};

// Double-precision reference on the same strided storage.
void Reference(const Case& t, const std::vector<float>& A, int64_t sa, int64_t lda,
               const std::vector<float>& B, int64_t sb, int64_t ldb, std::vector<double>& C,
               int64_t sc, int64_t ldc) {
  for (int64_t b = 0; b < t.batch; ++b)
    for (int64_t i = 0; i < t.m; ++i)
      for (int64_t j = 0; j < t.n; ++j) {
        double s = t.accumulate ? C[b * sc + i * ldc + j] : 0.0;
        for (int64_t p = 0; p < t.k; ++p) {
          const float a = t.ta ? A[b * sa + p * lda + i] : A[b * sa + i * lda + p];
          const float v = t.tb ? B[b * sb + j * ldb + p] : B[b * sb + p * ldb + j];
          s += double(a) * double(v);
        }
        C[b * sc + i * ldc + j] = s;
      }
}

bool RunCase(const Case& t, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t lda = (t.ta ? t.m : t.k) + t.pad, rows_a = t.ta ? t.k : t.m;
  const int64_t ldb = (t.tb ? t.k : t.n) + t.pad, rows_b = t.tb ? t.n : t.k;
  const int64_t ldc = t.n + t.pad;
  const int64_t sa = t.shared_a ? 0 : rows_a * lda, sb = t.shared_b ? 0 : rows_b * ldb;
  const int64_t sc = t.m * ldc;
  std::vector<float> A(std::max<int64_t>(1, (t.shared_a ? 1 : t.batch) * rows_a * lda));
  std::vector<float> B(std::max<int64_t>(1, (t.shared_b ? 1 : t.batch) * rows_b * ldb));
  std::vector<float> C(std::max<int64_t>(1, t.batch * sc));
  for (auto& x : A) x = dist(rng);
  for (auto& x : B) x = dist(rng);
  for (auto& x : C) x = t.accumulate ? dist(rng) : NAN;  // NaN: C must not be read
  std::vector<double> ref(C.size());
  for (size_t i = 0; i < C.size(); ++i) ref[i] = C[i];
  needle::sgemm_batched(t.ta, t.tb, t.batch, t.m, t.n, t.k, A.data(), sa, lda, B.data(), sb, ldb,
                        C.data(), sc, ldc, t.accumulate);
  Reference(t, A, sa, lda, B, sb, ldb, ref, sc, ldc);
  const double tol = 1e-5 * (4.0 + std::sqrt(double(t.k)) * 4.0);
  for (int64_t b = 0; b < t.batch; ++b)
    for (int64_t i = 0; i < t.m; ++i)
      for (int64_t j = 0; j < t.n; ++j) {
        const int64_t idx = b * sc + i * ldc + j;
        if (!(std::fabs(C[idx] - ref[idx]) <= tol)) {
          std::printf("MISMATCH ta=%d tb=%d batch=%ld m=%ld n=%ld k=%ld pad=%ld acc=%d at "
                      "[%ld,%ld,%ld]: got %g want %g\n",
                      t.ta, t.tb, long(t.batch), long(t.m), long(t.n), long(t.k), long(t.pad),
                      t.accumulate, long(b), long(i), long(j), C[idx], ref[idx]);
          return false;
        }
      }
  // The padding columns of C must be untouched (NaN or the random initial values).
  for (int64_t b = 0; b < t.batch; ++b)
    for (int64_t i = 0; i < t.m; ++i)
      for (int64_t j = t.n; j < ldc; ++j) {
        const int64_t idx = b * sc + i * ldc + j;
        const bool same = t.accumulate ? C[idx] == float(ref[idx]) : std::isnan(C[idx]);
        if (!same) {
          std::printf("PADDING WRITTEN m=%ld n=%ld k=%ld at [%ld,%ld,%ld]\n", long(t.m),
                      long(t.n), long(t.k), long(b), long(i), long(j));
          return false;
        }
      }
  return true;
}

int Check() {
  std::mt19937 rng(0);
  const int64_t sizes[] = {1, 2, 5, 7, 16, 17, 33, 65, 150, 257};
  int cases = 0, failed = 0;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int64_t m : sizes)
        for (int64_t n : {int64_t(1), int64_t(7), int64_t(16), int64_t(33), int64_t(300)})
          for (int64_t k : {int64_t(1), int64_t(9), int64_t(64), int64_t(300)}) {
            const Case t{bool(ta), bool(tb), 1, m, n, k, (m + n + k) % 3, false, false,
                         (m + k) % 2 == 1};
            ++cases;
            failed += !RunCase(t, rng);
          }
  // Batched: broadcast operands (stride 0), many small and a few big matrices, k = 0.
  const Case extra[] = {
      {false, false, 5, 7, 9, 11, 0, false, false, false},
      {true, false, 64, 6, 16, 8, 1, true, false, true},
      {false, true, 3, 33, 17, 65, 2, false, true, false},
      {true, true, 2, 130, 140, 270, 0, false, false, true},
      {false, false, 3, 200, 300, 100, 0, false, true, false},
      {false, false, 4, 5, 6, 0, 1, false, false, false},
      {false, false, 4, 5, 6, 0, 1, false, false, true},
      {true, true, 1, 1000, 9, 1000, 3, false, false, false},
      {false, false, 1, 3, 5000, 260, 0, false, false, true},
      {false, false, 1, 517, 4100, 20, 0, false, false, false},
  };
  for (const Case& t : extra) {
    ++cases;
    failed += !RunCase(t, rng);
  }
  std::printf("kernel=%s cases=%d failed=%d\n", needle::sgemm_kernel_name(), cases, failed);
  return failed == 0 ? 0 : 1;
}

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

int Bench(const std::vector<int64_t>& ns, const std::vector<std::string>& variants) {
  const int threads = needle::gemm_detail::MaxThreads();
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::printf("kernel=%s threads=%d\n", needle::sgemm_kernel_name(),
              needle::gemm_detail::MaxThreads());
  for (int64_t n : ns) {
    std::vector<float> A(n * n), B(n * n), C(n * n);
    for (auto& x : A) x = dist(rng);
    for (auto& x : B) x = dist(rng);
    const double flops = 2.0 * double(n) * n * n;
    const int reps = std::max(3, int(std::min(200.0, 2e10 / flops)));
    for (const std::string& variant : variants) {
      const bool ta = variant[0] == 'T', tb = variant[1] == 'T';
      std::vector<double> times, cpu_times;
      for (int r = 0; r < reps + 1; ++r) {
        const double c0 = CpuSeconds();
        const auto t0 = std::chrono::steady_clock::now();
        needle::sgemm(ta, tb, n, n, n, A.data(), n, B.data(), n, C.data(), n, false);
        const auto t1 = std::chrono::steady_clock::now();
        const double c1 = CpuSeconds();
        if (r > 0) {
          times.push_back(std::chrono::duration<double>(t1 - t0).count());
          cpu_times.push_back(c1 - c0);
        }
      }
      std::sort(times.begin(), times.end());
      std::sort(cpu_times.begin(), cpu_times.end());
      // CPU time per thread: robust to other processes taking the cores (spinning counts).
      const double per_thread = cpu_times[0] / threads;
      std::printf("n=%5ld %s  median %7.2f  best %7.2f  best-by-cpu-time %7.2f GFLOP/s  (%d reps)\n",
                  long(n), variant.c_str(), flops / times[times.size() / 2] / 1e9, flops / times[0] / 1e9,
                  flops / per_thread / 1e9, reps);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "check";
  if (mode == "check") return Check();
  std::vector<int64_t> ns;
  std::vector<std::string> variants;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "NN" || arg == "TN" || arg == "NT" || arg == "TT")
      variants.push_back(arg);
    else
      ns.push_back(std::atoll(argv[i]));
  }
  if (ns.empty()) ns = {256, 512, 1024, 2048};
  if (variants.empty()) variants = {"NN", "TN", "NT"};
  return Bench(ns, variants);
}
