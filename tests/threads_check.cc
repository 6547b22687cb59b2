// Checks of the CPU thread pool (src/cpu_threads.h), built and run by tests/test_threads.py:
//   c++ -O2 -pthread -std=c++17 -Isrc tests/threads_check.cc -o /tmp/threads_check
//   /tmp/threads_check            # prints one line per check and "failed=N"
// The late-worker policy is driven by recorded events, not by timing.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "cpu_threads.h"

using needle::cpu::LatePolicy;

static int failed = 0;

static void Expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  failed += !ok;
}

// Every piece runs once, on a slot below the threads asked for, whatever the team size.
static void CheckPieces(int threads) {
  needle::cpu::SetMaxThreads(threads);
  const int pieces = 37;
  std::vector<std::atomic<int>> runs(pieces);
  std::atomic<bool> slot_ok{true};
  for (int rep = 0; rep < 200; ++rep)
    needle::cpu::ParallelPieces(pieces, threads, [&](int p, int slot) {
      runs[size_t(p)].fetch_add(1);
      if (slot < 0 || slot >= threads || slot != needle::cpu::ThreadSlot()) slot_ok = false;
      if (needle::cpu::MaxThreads() != 1) slot_ok = false;  // nested work is serial
    });
  bool once = true;
  for (auto& r : runs) once = once && r.load() == 200;
  Expect(once, "ParallelPieces runs every piece once per call");
  Expect(slot_ok.load(), "pieces see their slot, and MaxThreads() == 1 inside a piece");
}

// A team runs at once: every member passes each barrier only after all reached it.
static void CheckTeam(int threads) {
  needle::cpu::SetMaxThreads(threads);
  needle::cpu::SetAdaptiveThreads(false);
  std::atomic<int> count{0};
  bool ok = true, full = true;
  for (int rep = 0; rep < 100; ++rep) {
    count = 0;
    std::vector<int> seen(size_t(threads), -1);
    needle::cpu::ParallelTeam(threads, [&](int tid, int team) {
      if (team != threads) full = false;
      count.fetch_add(1);
      needle::cpu::TeamBarrier(team);
      seen[size_t(tid)] = count.load();
      needle::cpu::TeamBarrier(team);
    });
    for (int t = 0; t < threads; ++t) ok = ok && seen[size_t(t)] == threads;
  }
  Expect(full, "a non-adaptive team always has every member");
  Expect(ok, "TeamBarrier holds every member until all arrived");
}

static void CheckPolicy() {
  LatePolicy p;
  Expect(!p.Busy() && p.TryTeam(), "policy: a fresh pool is not busy and runs teams");
  for (int i = 0; i < 100; ++i) p.Record(false);
  Expect(!p.Busy(), "policy: workers in time keep it quiet");
  p.Record(true);
  Expect(!p.Busy(), "policy: one late worker is not enough");
  p.Record(true);
  Expect(p.Busy(), "policy: two late workers in a row mean busy");
  int teams = 0;
  for (int i = 0; i < 4 * LatePolicy::kProbeEvery; ++i) teams += p.TryTeam();
  Expect(teams == 4, "policy: busy, only every kProbeEvery-th team job probes the team");
  for (int i = 0; i < LatePolicy::kEnter - 1; ++i) p.Record(false);
  Expect(p.Busy() && p.Score() == 1, "policy: stays busy until the score is back at 0");
  p.Record(false);
  Expect(!p.Busy() && p.TryTeam(), "policy: workers in time again make it quiet");
  LatePolicy q;
  for (int i = 0; i < 50; ++i) {  // one late in four: 3 - 3 = 0 per round
    q.Record(true);
    q.Record(false), q.Record(false), q.Record(false);
  }
  Expect(!q.Busy(), "policy: an occasional late worker (1 in 4) is not busy");
}

// A busy policy makes team jobs run on the caller alone; pieces still use the workers.
static void CheckBusyTeam() {
  needle::cpu::SetMaxThreads(2);
  needle::cpu::SetAdaptiveThreads(true);
  auto& pool = needle::cpu::ThreadPool::Get();
  for (int i = 0; i < LatePolicy::kEnter; ++i) pool.policy().Record(true);
  int alone = 0;
  for (int i = 0; i < LatePolicy::kProbeEvery - 1; ++i)
    needle::cpu::ParallelTeam(2, [&](int, int team) { alone += team == 1; });
  Expect(alone == LatePolicy::kProbeEvery - 1, "busy pool: team jobs run on the caller alone");
  for (int i = 0; i < LatePolicy::kMax; ++i) pool.policy().Record(false);
  Expect(!pool.policy().Busy(), "pool policy back to quiet");
  needle::cpu::SetAdaptiveThreads(false);
}

// Jobs from several threads at once: one owns the pool, the others run serially.
static void CheckConcurrentCallers() {
  needle::cpu::SetMaxThreads(2);
  std::atomic<long> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 300; ++rep)
        needle::cpu::ParallelFor(100, 2, [&](int64_t i) { total.fetch_add(long(i)); });
    });
  for (auto& t : callers) t.join();
  Expect(total.load() == 4L * 300 * 4950, "concurrent callers: every index once");
}

// After fork the child has no workers: it must get a fresh pool, not wait on the parent's.
static void CheckFork() {
  needle::cpu::SetMaxThreads(2);
  std::atomic<int> sum{0};
  needle::cpu::ParallelFor(10, 2, [&](int64_t i) { sum += int(i); });  // parent's workers run
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(20);  // a deadlock ends in SIGALRM, not a hang
    std::atomic<int> s{0};
    for (int rep = 0; rep < 100; ++rep) needle::cpu::ParallelFor(10, 2, [&](int64_t i) { s += int(i); });
    int team = 0;
    needle::cpu::ParallelTeam(2, [&](int, int n) { team = n; });
    _exit(s.load() == 4500 && team >= 1 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  Expect(sum.load() == 45 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
         "a forked child runs parallel jobs on a fresh pool");
}

int main() {
  for (int threads : {1, 2, 3, 5}) {
    CheckPieces(threads);
    CheckTeam(threads);
  }
  CheckPolicy();
  CheckBusyTeam();
  CheckConcurrentCallers();
  CheckFork();
  std::printf("failed=%d\n", failed);
  return failed == 0 ? 0 : 1;
}
