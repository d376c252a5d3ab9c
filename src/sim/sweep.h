// Policy x capacity sweeps over one trace (runs in parallel threads) and their reports: a text
// table per capacity, JSON, CSV, and SVG plots of hit ratio and QTTFT against capacity.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "sim/replay.h"

namespace kvwise::sim {

struct SweepOptions {
  std::vector<std::string> policies;
  std::vector<size_t> capacities;  // blocks of the first tier
  ReplayOptions base;              // everything but policy and capacity
  int threads = 2;
};

struct SweepResult {
  std::vector<ReplayResult> runs;  // capacity-major, then policy in the order given
  double infinite_hit_ratio = 0;
};

// The share of the LRU -> Belady gap that run (capacity c, policy p) closes: (x - lru) / (belady - lru);
// NaN when the sweep lacks lru or belady, or they are equal at that capacity.
double gap_closed(const SweepResult& r, const SweepOptions& o, size_t c, size_t p);

SweepResult run_sweep(const Trace& trace, const SweepOptions& options,
                      const std::function<void(size_t done, size_t total)>& progress = {});

std::string format_tables(const SweepResult& r, const SweepOptions& o);
std::string to_json(const Trace& trace, const SweepResult& r, const SweepOptions& o);
std::string to_csv(const SweepResult& r);
// hit_ratio.svg, qttft.svg and (with lru and belady in the sweep) gap_closed.svg in dir (created if needed).
void write_plots(const SweepResult& r, const SweepOptions& o, const std::string& dir, const std::string& title);

}  // namespace kvwise::sim
