// A fixed pool of worker threads for data-parallel loops (GEMV rows, attention heads, dequantization).
// parallel_for blocks until all chunks are done; the calling thread takes part in the work. An
// exception thrown by a task stops the job from handing out more tasks and is rethrown to the caller
// once every worker has left the job (the first one, if several throw). One job at a time: a pool is
// used by one thread (its engine's); workers are internal.
// Workers spin briefly before sleeping: a decode step issues hundreds of short parallel loops, and
// a condition-variable wake-up per loop would cost more than the loop itself. The spin turns into
// sched_yield after a few microseconds, and a job waits only for the workers that joined it (a
// worker that was descheduled when the job began and wakes after its tasks are gone stays out), so
// more threads than free cores costs a little, not a collapse: no loop waits for a thread the OS
// has not run.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvwise {

// The cores this process may use: its CPU affinity mask, capped by a cgroup CPU quota (cgroup v2
// cpu.max, v1 cfs_quota_us / cfs_period_us), rounded up; at least 1.
int usable_cores();

class ThreadPool {
 public:
  // More threads than usable_cores() cannot add throughput, so by default the pool runs only that
  // many (requested() says what was asked); cap_to_cores = false keeps them all (tests of the
  // oversubscribed hand-off).
  explicit ThreadPool(int n_threads, bool cap_to_cores = true);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }  // threads that work (the caller's included)
  int requested() const { return requested_; }

  // Calls fn(begin, end, worker) on disjoint ranges covering [0, n); at most size() ranges at once
  // (one per thread; four per thread when the pool has more threads than usable cores).
  void parallel_for(size_t n, const std::function<void(size_t, size_t, int)>& fn);
  // Like parallel_for, but each index is its own task, handed out dynamically (uneven work).
  void parallel_tasks(size_t n_tasks, const std::function<void(size_t, int)>& fn);

 private:
  void worker_loop(int id);
  void run_tasks(int worker);

  int requested_;
  int n_threads_;
  bool oversubscribed_;  // more threads than usable_cores()
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  const std::function<void(size_t, int)>* job_ = nullptr;
  size_t job_n_ = 0;
  std::atomic<size_t> next_{0};
  std::atomic<bool> open_{false};  // workers may join the current job
  std::atomic<int> active_{0};     // workers inside the current job
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stop_{false};
  std::mutex error_mu_;
  std::exception_ptr error_;  // the current job's first exception
};

}  // namespace kvwise
