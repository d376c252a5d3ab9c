// The thread pool: every index runs exactly once, for any thread count and task count, repeatedly
// (the spinning hand-off between jobs must not lose or repeat work).
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "base/thread_pool.h"

namespace kvwise {
namespace {

TEST(ThreadPool, EveryIndexOnceAcrossManyJobs) {
  for (int threads : {1, 2, 3, 9}) {  // 9: more threads than this machine's cores: late joiners stay out
    ThreadPool pool(threads, /*cap_to_cores=*/false);
    for (size_t n : {0u, 1u, 2u, 7u, 1000u}) {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_tasks(n, [&](size_t i, int worker) {
          ASSERT_GE(worker, 0);
          ASSERT_LT(worker, threads);
          hits[i].fetch_add(1);
        });
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " threads, n " << n;
        std::vector<std::atomic<int>> covered(n);
        pool.parallel_for(n, [&](size_t b, size_t e, int) {
          for (size_t i = b; i < e; ++i) covered[i].fetch_add(1);
        });
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(covered[i].load(), 1);
      }
    }
  }
}

TEST(ThreadPool, RunsNoMoreThreadsThanUsableCores) {
  ThreadPool capped(usable_cores() + 3);
  EXPECT_EQ(capped.size(), usable_cores());
  EXPECT_EQ(capped.requested(), usable_cores() + 3);
  std::atomic<int> n{0};
  capped.parallel_for(100, [&](size_t b, size_t e, int w) {
    EXPECT_LT(w, capped.size());
    n.fetch_add(static_cast<int>(e - b));
  });
  EXPECT_EQ(n.load(), 100);
}

TEST(ThreadPool, UsableCoresFollowTheAffinityMask) {
  const int n = usable_cores();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &saved)) {
      CPU_SET(c, &one);
      break;
    }
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(usable_cores(), 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
}

// A task that throws while other threads are parked or late still reaches the caller, and the pool
// goes on working (oversubscribed).
TEST(ThreadPool, OversubscribedPoolSurvivesManyShortJobs) {
  ThreadPool pool(6, /*cap_to_cores=*/false);
  std::atomic<long> sum{0};
  for (int rep = 0; rep < 2000; ++rep)
    pool.parallel_for(64, [&](size_t b, size_t e, int) { sum.fetch_add(static_cast<long>(e - b)); });
  EXPECT_EQ(sum.load(), 2000L * 64);
  EXPECT_THROW(pool.parallel_tasks(10,
                                   [](size_t i, int) {
                                     if (i == 3) throw std::runtime_error("task 3");
                                   }),
               std::runtime_error);
  sum = 0;
  pool.parallel_tasks(100, [&](size_t, int) { sum.fetch_add(1); });
  EXPECT_EQ(sum.load(), 100);
}

}  // namespace
}  // namespace kvwise
