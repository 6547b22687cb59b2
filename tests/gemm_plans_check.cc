// Correctness of every thread plan of src/gemm.h (row / column / K splits, shared or private B
// blocks) and of both ways of reading A (packed, in place), whatever the cost model would pick
// and however many cores the machine has. Built and run by tests/test_gemm.py::test_every_plan.
//
//   c++ -O2 -fopenmp -std=c++17 -Isrc tests/gemm_plans_check.cc -o /tmp/plans && /tmp/plans
// Prints "cases=N failed=F" and exits 1 on a failure.
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

}  // namespace

int main() {
  std::mt19937 rng(7);
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
    omp_set_num_threads(p.threads);
    needle::gemm_detail::ForcedPlan() = p.plan.threads() == p.threads ? &p.plan : nullptr;
    for (const Shape& s : shapes)
      for (int t = 0; t < 4; ++t) {
        ++cases;
        failed += !Check(s, t & 1, t & 2, (cases % 3) == 0, cases % 2, p.name, rng);
      }
  }
  needle::gemm_detail::ForcedPlan() = nullptr;
  std::printf("kernel=%s cases=%d failed=%d\n", needle::sgemm_kernel_name(), cases, failed);
  return failed == 0 ? 0 : 1;
}
