#include "base/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#define KVWISE_PAUSE() _mm_pause()
#else
#define KVWISE_PAUSE() std::this_thread::yield()
#endif

namespace kvwise {

namespace {
constexpr int kPauseSpins = 1 << 11;  // a few µs of pause instructions: the next loop usually comes sooner
constexpr int kYieldSpins = 1 << 11;  // then sched_yield, which runs a thread the spinner would starve
                                      // when there are more threads than cores; then sleep

// Waits a bounded while for done() without sleeping: pause, then yield.
template <typename Done>
bool spin_until(Done done) {
  for (int i = 0; i < kPauseSpins; ++i) {
    if (done()) return true;
    KVWISE_PAUSE();
  }
  for (int i = 0; i < kYieldSpins; ++i) {
    if (done()) return true;
    std::this_thread::yield();
  }
  return done();
}

int cgroup_cpu_limit() {
  // cgroup v2: "max 100000" or "200000 100000".
  if (std::ifstream f("/sys/fs/cgroup/cpu.max"); f) {
    std::string quota;
    double period = 0;
    if (f >> quota >> period && quota != "max" && period > 0) {
      const double q = std::atof(quota.c_str());
      if (q > 0) return static_cast<int>(std::ceil(q / period));
    }
  }
  std::ifstream q("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  double quota = 0, period = 0;
  if (q >> quota && p >> period && quota > 0 && period > 0) return static_cast<int>(std::ceil(quota / period));
  return 0;
}
}  // namespace

int usable_cores() {
  int n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = std::max(1, CPU_COUNT(&set));
  const int limit = cgroup_cpu_limit();
  if (limit > 0) n = std::min(n, limit);
  return std::max(1, n);
}

ThreadPool::ThreadPool(int n_threads, bool cap_to_cores)
    : requested_(std::max(1, n_threads)),
      n_threads_(cap_to_cores ? std::min(requested_, usable_cores()) : requested_),
      oversubscribed_(n_threads_ > usable_cores()) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_tasks(int worker) {
  for (;;) {
    const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= job_n_) return;
    try {
      (*job_)(i, worker);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu_);
      if (!error_) error_ = std::current_exception();
      next_.store(job_n_, std::memory_order_relaxed);  // hand out no more tasks
    }
  }
}

void ThreadPool::worker_loop(int id) {
  uint64_t seen = 0;
  for (;;) {
    if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
      std::unique_lock<std::mutex> lock(mu_);
      sleeping_.fetch_add(1);
      cv_.wait(lock, [&] { return generation_.load() != seen; });
      sleeping_.fetch_sub(1);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    // Join only a job that is still open; the caller closes it once every task is handed out and
    // then waits for the workers that joined (sequentially consistent: a worker that joins after the
    // caller saw active_ == 0 also sees open_ == false and touches nothing).
    active_.fetch_add(1);
    if (open_.load()) run_tasks(id);
    active_.fetch_sub(1);
  }
}

void ThreadPool::parallel_tasks(size_t n_tasks, const std::function<void(size_t, int)>& fn) {
  if (n_tasks == 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (size_t i = 0; i < n_tasks; ++i) fn(i, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n_tasks;
  next_.store(0, std::memory_order_relaxed);
  open_.store(true);
  {
    // Publishing under the mutex pairs with the sleepers' predicate check, so no wake-up is lost.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  if (sleeping_.load() > 0) cv_.notify_all();
  run_tasks(0);
  open_.store(false);
  while (!spin_until([&] { return active_.load() == 0; })) {
  }
  job_ = nullptr;
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(error_mu_);
    error.swap(error_);
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t, int)>& fn) {
  if (n == 0) return;
  // One range per thread, unless there are more threads than cores: then the threads that do run
  // share finer ranges between them instead of waiting for one the OS runs later.
  const size_t per_thread = oversubscribed_ ? 4 : 1;
  const size_t chunks = std::min<size_t>(n, per_thread * static_cast<size_t>(n_threads_));
  parallel_tasks(chunks, [&](size_t c, int worker) {
    const size_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    fn(begin, end, worker);
  });
}

}  // namespace kvwise
