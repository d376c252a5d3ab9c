// Replays a trace through the prefix cache in timestamp order with a latency model: N serving
// instances take requests from one FIFO queue; a request's time to first token (QTTFT) is its
// queueing delay plus the transfer time of the blocks it hits in lower tiers plus the prefill time
// of its uncached tokens. An instance is busy for that transfer + prefill (+ decode, if a decode
// rate is given; with continuous batching decode mostly overlaps, so it is off by default).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "prefix/prefix_cache.h"
#include "sim/trace.h"

namespace kvwise::sim {

struct LatencyModel {
  double prefill_tokens_per_second = 10000;  // of one instance
  double decode_tokens_per_second = 0;       // 0: decode does not hold the instance
  int instances = 1;
  double kv_bytes_per_token = 131072;  // bytes to move per cached token between tiers
};

struct ReplayOptions {
  std::string policy = "lru";
  prefix::PolicyOptions policy_options;
  size_t capacity_blocks = 1000;              // the first tier
  std::vector<prefix::TierSpec> lower_tiers;  // demotion targets, fastest first
  double first_tier_bandwidth = 0;
  bool chain = true;
  LatencyModel latency;
  // true: a request holds (pins) its blocks until it finishes by the latency model and releases them
  // then, as a live server does; false: blocks are released when the request starts.
  bool hold_until_done = false;
  // Requests [0, score_until * n) are replayed; only those from score_from * n on are counted (the
  // earlier ones warm the cache and whatever the policy learns). Fractions of the request count.
  double score_from = 0, score_until = 1;
};

struct LatencyStats {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
};

struct ReplayResult {
  std::string policy;
  size_t capacity_blocks = 0;
  uint64_t requests = 0, blocks = 0, block_hits = 0, insertions = 0, evictions = 0, bypassed = 0;
  double tokens = 0, token_hits = 0;
  std::vector<uint64_t> hits_by_tier;
  std::vector<prefix::TierSpec> tier_specs;
  std::vector<prefix::TierMetrics> tier_metrics;
  double block_bytes = 0;
  LatencyStats qttft;  // seconds
  double wall_seconds = 0;
  double metadata_bytes_per_block = 0;
  size_t history_bytes = 0;      // what the policy remembers about keys, resident or not, at the end
  uint64_t replayed_blocks = 0;  // block accesses replayed, scored or not (the cost denominator)
  double us_per_block_access() const {
    return replayed_blocks ? wall_seconds * 1e6 / static_cast<double>(replayed_blocks) : 0;
  }
  double block_hit_ratio() const { return blocks ? static_cast<double>(block_hits) / static_cast<double>(blocks) : 0; }
  double token_hit_ratio() const { return tokens > 0 ? token_hits / tokens : 0; }
};

ReplayResult replay(const Trace& trace, const ReplayOptions& options);

// Block hit ratio with unlimited capacity (a block hits when it and its whole prefix were seen), over
// the requests a score range counts (the earlier ones are seen, not counted).
double infinite_capacity_hit_ratio(const Trace& trace, bool chain = true, double score_from = 0,
                                   double score_until = 1);
// The requests [first, end) that a score range of n requests counts.
std::pair<size_t, size_t> scored_requests(size_t n, double from, double until);

LatencyStats latency_stats(std::vector<double> samples);

}  // namespace kvwise::sim
