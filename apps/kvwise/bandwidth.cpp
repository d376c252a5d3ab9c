#include "bandwidth.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "base/timer.h"

namespace kvwise::cli {

namespace {

// Sums 64-bit words; four independent sums so the loop is limited by loads, not by one add chain.
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  for (; i < n; ++i) a += p[i];
  return a + b + c + d;
}

template <typename Fn>
double best_seconds(int threads, int rounds, Fn&& slice) {
  double best = 1e30;
  for (int r = 0; r < rounds; ++r) {
    std::vector<std::thread> pool;
    const double t0 = now_seconds();
    for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { slice(t); });
    for (auto& th : pool) th.join();
    best = std::min(best, now_seconds() - t0);
  }
  return best;
}

}  // namespace

Bandwidth measure_bandwidth(int threads, size_t bytes, int rounds) {
  threads = std::max(1, threads);
  const size_t words = bytes / 8, per = words / static_cast<size_t>(threads);
  std::vector<uint64_t> src(words), dst(words);
  for (size_t i = 0; i < words; ++i) src[i] = i;  // touch every page before timing
  std::memset(dst.data(), 1, words * 8);
  std::vector<uint64_t> sink(static_cast<size_t>(threads));
  Bandwidth b;
  const double read_s =
      best_seconds(threads, rounds, [&](int t) { sink[static_cast<size_t>(t)] = sum_words(&src[per * t], per); });
  b.read_gbps = static_cast<double>(per * 8 * static_cast<size_t>(threads)) / read_s / 1e9;
  const double copy_s =
      best_seconds(threads, rounds, [&](int t) { std::memcpy(&dst[per * t], &src[per * t], per * 8); });
  b.copy_gbps = 2.0 * static_cast<double>(per * 8 * static_cast<size_t>(threads)) / copy_s / 1e9;
  volatile uint64_t keep = 0;
  for (uint64_t s : sink) keep = keep + s;
  return b;
}

}  // namespace kvwise::cli
