// Correctness of every thread plan of src/gemm.h (row / column / K splits, shared or private B
// blocks) and of every way of reading A (packed, in place, gathered from an im2col view),
// whatever the cost model would pick and however many cores the machine has; then a sweep of
// odd sizes that crosses every edge of every kernel's register tile and k block. Built and run
// by tests/test_gemm.py::test_every_plan, once per kernel (NEEDLE_GEMM_KERNEL), the AVX-512 one
// emulated on AVX2 where the CPU lacks it:
//
//   c++ -O2 -pthread -std=c++17 -Isrc tests/gemm_plans_check.cc -o /tmp/plans && /tmp/plans
//   c++ -O2 -pthread -std=c++17 -Isrc -include tests/avx512_emulation.h
//       tests/gemm_plans_check.cc -o /tmp/plans512   # one command line
//   NEEDLE_GEMM_KERNEL=avx512 /tmp/plans512
// Prints "kernel=NAME cases=N failed=F" and exits 1 on a failure.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "gemm.h"

namespace {

using needle::gemm_detail::Plan;

struct Shape {
  int64_t batch, m, n, k;
};

// One sgemm_batched call against a double-precision reference; C has a padded leading dim and
// starts as NaN (never read) or random values (accumulate); the padding must stay untouched.
bool Check(const Shape& s, bool ta, bool tb, bool accumulate, int64_t pad, const char* plan,
           std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t lda = (ta ? s.m : s.k) + pad, rows_a = ta ? s.k : s.m;
  const int64_t ldb = (tb ? s.k : s.n) + pad, rows_b = tb ? s.n : s.k;
  const int64_t ldc = s.n + pad, sa = rows_a * lda, sb = rows_b * ldb, sc = s.m * ldc;
  std::vector<float> A(s.batch * sa), B(s.batch * sb), C(s.batch * sc);
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  for (float& x : C) x = accumulate ? dist(rng) : NAN;
  const std::vector<float> C0 = C;
  needle::sgemm_batched(ta, tb, s.batch, s.m, s.n, s.k, A.data(), sa, lda, B.data(), sb, ldb,
                        C.data(), sc, ldc, accumulate);
  const double tol = 1e-5 * (4.0 + 4.0 * std::sqrt(double(s.k)));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < ldc; ++j) {
        const int64_t at = b * sc + i * ldc + j;
        bool ok;
        if (j >= s.n) {
          ok = accumulate ? C[at] == C0[at] : std::isnan(C[at]);
        } else {
          double want = accumulate ? C0[at] : 0.0;
          for (int64_t p = 0; p < s.k; ++p)
            want += double(ta ? A[b * sa + p * lda + i] : A[b * sa + i * lda + p]) *
                    double(tb ? B[b * sb + j * ldb + p] : B[b * sb + p * ldb + j]);
          ok = std::fabs(C[at] - want) <= tol;
        }
        if (!ok) {
          std::printf("MISMATCH plan=%s ta=%d tb=%d acc=%d batch=%ld m=%ld n=%ld k=%ld pad=%ld at "
                      "[%ld,%ld,%ld]: got %g\n",
                      plan, ta, tb, accumulate, long(s.batch), long(s.m), long(s.n), long(s.k),
                      long(pad), long(b), long(i), long(j), C[at]);
          return false;
        }
      }
  return true;
}

// Offset of flat index i in the mixed radix `shape` with `strides` (3 dims).
int64_t OffsetOf(int64_t i, const int64_t shape[3], const int64_t strides[3]) {
  int64_t off = 0;
  for (int d = 2; d >= 0; --d) {
    off += i % shape[d] * strides[d];
    i /= shape[d];
  }
  return off;
}

// sgemm_strided_a on the im2col view of an N x H x H x C buffer (3 x 3 taps, stride s): pixels
// x taps (a forward pass) or, transposed, taps x pixels (a weight gradient). Odd channel counts
// make the MR-row panels straddle tap boundaries.
bool CheckStrided(int64_t batch, int64_t h, int64_t c, int64_t s, bool weight_grad, int64_t p,
                  bool tb, const char* plan, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t ho = (h - 3) / s + 1;
  needle::gemm_detail::StridedA v;
  const int64_t pix_shape[3] = {batch, ho, ho}, pix_strides[3] = {h * h * c, s * h * c, s * c};
  const int64_t tap_shape[3] = {3, 3, c}, tap_strides[3] = {h * c, c, 1};
  for (int d = 0; d < 3; ++d) {
    v.row_shape[d] = weight_grad ? tap_shape[d] : pix_shape[d];
    v.row_strides[d] = weight_grad ? tap_strides[d] : pix_strides[d];
    v.col_shape[d] = weight_grad ? pix_shape[d] : tap_shape[d];
    v.col_strides[d] = weight_grad ? pix_strides[d] : tap_strides[d];
  }
  const int64_t pixels = batch * ho * ho, taps = 9 * c;
  const int64_t m = weight_grad ? taps : pixels, k = weight_grad ? pixels : taps;
  std::vector<float> X(batch * h * h * c), B(k * p), C(m * p, NAN);
  for (float& x : X) x = dist(rng);
  for (float& x : B) x = dist(rng);
  needle::sgemm_strided_a(tb, m, p, k, X.data(), v, B.data(), tb ? k : p, C.data(), p);
  const double tol = 1e-5 * (4.0 + 4.0 * std::sqrt(double(k)));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < p; ++j) {
      double want = 0.0;
      for (int64_t q = 0; q < k; ++q)
        want += double(X[OffsetOf(i, v.row_shape, v.row_strides) +
                         OffsetOf(q, v.col_shape, v.col_strides)]) *
                double(tb ? B[j * k + q] : B[q * p + j]);
      if (!(std::fabs(C[i * p + j] - want) <= tol)) {
        std::printf("MISMATCH strided plan=%s weight_grad=%d tb=%d batch=%ld h=%ld c=%ld s=%ld "
                    "p=%ld at [%ld,%ld]: got %g want %g\n",
                    plan, weight_grad, tb, long(batch), long(h), long(c), long(s), long(p),
                    long(i), long(j), C[i * p + j], want);
        return false;
      }
    }
  return true;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  needle::cpu::SetAdaptiveThreads(false);  // every plan runs its whole team, however busy the CPU
  // Shapes over 2^20 multiply-adds (so a team runs), with odd edges, a k past one KC block, a
  // long-k small-C weight-gradient shape, an A that is packed (many B panels) or read in place.
  const Shape shapes[] = {
      {1, 151, 37, 1000}, {1, 1000, 23, 77}, {1, 65, 530, 70}, {1, 7, 300, 600},
      {1, 300, 300, 13},  {1, 97, 16, 2000}, {2, 130, 70, 150}, {1, 400, 5, 900},
  };
  struct Named {
    const char* name;
    int threads;
    Plan plan;
  };
  const Named plans[] = {
      {"2x1x1 private", 2, {2, 1, 1, false}}, {"2x1x1 shared", 2, {2, 1, 1, true}},
      {"1x2x1 private", 2, {1, 2, 1, false}}, {"1x2x1 shared", 2, {1, 2, 1, true}},
      {"1x1x2", 2, {1, 1, 2, false}},         {"1x1x3", 3, {1, 1, 3, false}},
      {"3x1x1 shared", 3, {3, 1, 1, true}},   {"2x2x1 shared", 4, {2, 2, 1, true}},
      {"1x2x2", 4, {1, 2, 2, false}},         {"2x1x2", 4, {2, 1, 2, false}},
      {"cost model", 2, {}},
  };
  int cases = 0, failed = 0;
  for (const Named& p : plans) {
    needle::cpu::SetMaxThreads(p.threads);
    needle::gemm_detail::ForcedPlan() = p.plan.threads() == p.threads ? &p.plan : nullptr;
    for (const Shape& s : shapes)
      for (int t = 0; t < 4; ++t) {
        ++cases;
        failed += !Check(s, t & 1, t & 2, (cases % 3) == 0, cases % 2, p.name, rng);
      }
  }
  // Implicit GEMM over im2col views under every plan: small, odd, and a team-sized one whose
  // k runs past one block.
  struct Conv {
    int64_t batch, h, c, s, p;
  };
  // Then few output columns (gemm_skinny.h on AVX-512): runs of 13 channels (masked chunks),
  // and one-channel images whose weight gradient (pixel rows of 38) splits k over threads.
  const Conv convs[] = {{2, 9, 3, 1, 17}, {2, 8, 16, 2, 5}, {1, 7, 7, 1, 1}, {4, 20, 48, 1, 40},
                        {3, 11, 13, 1, 6},  {16, 40, 1, 1, 7}, {2, 12, 29, 2, 3}};
  for (const Named& p : plans) {
    needle::cpu::SetMaxThreads(p.threads);
    needle::gemm_detail::ForcedPlan() = p.plan.threads() == p.threads ? &p.plan : nullptr;
    for (const Conv& c : convs)
      for (int t = 0; t < 4; ++t) {
        ++cases;
        failed += !CheckStrided(c.batch, c.h, c.c, c.s, t & 1, c.p, t & 2, p.name, rng);
      }
  }
  needle::gemm_detail::ForcedPlan() = nullptr;
  // Odd sizes in every position: partial rows and columns of the 4 x 8, 6 x 16 and 12 x 32
  // tiles (16 / 17 columns: either side of the half-width kernel), k over one 256-deep block;
  // A packed or read in place; the cost model's plan for 2 threads where a team runs.
  needle::cpu::SetMaxThreads(2);
  const int64_t sizes[] = {1, 7, 13, 16, 17, 31, 33, 257};
  for (int64_t m : sizes)
    for (int64_t n : sizes)
      for (int64_t k : sizes)
        for (int t = 0; t < 4; ++t) {
          ++cases;
          const bool accumulate = cases % 3 == 0;
          failed += !Check({1, m, n, k}, t & 1, t & 2, accumulate, cases / 4 % 2, "sizes", rng);
        }
  std::printf("kernel=%s cases=%d failed=%d\n", needle::sgemm_kernel_name(), cases, failed);
  return failed == 0 ? 0 : 1;
}
