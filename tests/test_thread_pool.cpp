// The thread pool: every index runs exactly once, for any thread count and task count, repeatedly
// (the spinning hand-off between jobs must not lose or repeat work).
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "base/thread_pool.h"

namespace kvwise {
namespace {

TEST(ThreadPool, EveryIndexOnceAcrossManyJobs) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
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

}  // namespace
}  // namespace kvwise
