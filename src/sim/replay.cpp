#include "sim/replay.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "base/error.h"
#include "base/timer.h"

namespace kvwise::sim {

LatencyStats latency_stats(std::vector<double> s) {
  LatencyStats st;
  if (s.empty()) return st;
  std::sort(s.begin(), s.end());
  double sum = 0;
  for (double x : s) sum += x;
  st.mean = sum / static_cast<double>(s.size());
  const auto q = [&](double p) {
    return s[std::min(s.size() - 1, static_cast<size_t>(p * static_cast<double>(s.size())))];
  };
  st.p50 = q(0.50);
  st.p90 = q(0.90);
  st.p99 = q(0.99);
  return st;
}

std::pair<size_t, size_t> scored_requests(size_t n, double from, double until) {
  const auto at = [&](double f) { return static_cast<size_t>(std::llround(f * static_cast<double>(n))); };
  const size_t first = at(from);
  return {first, std::max(first + 1, std::min(n, at(until)))};
}

double infinite_capacity_hit_ratio(const Trace& trace, bool chain, double score_from, double score_until) {
  std::unordered_set<prefix::BlockKey> seen;
  uint64_t hits = 0, total = 0;
  const auto [first, end] = scored_requests(trace.requests.size(), score_from, score_until);
  for (size_t i = 0; i < end && i < trace.requests.size(); ++i) {
    const auto& r = trace.requests[i];
    bool usable = true;
    for (auto k : r.blocks) {
      const bool present = seen.count(k) != 0;
      if (!present) usable = false;
      if (i < first) continue;
      if (present && (usable || !chain)) ++hits;
      ++total;
    }
    for (auto k : r.blocks) seen.insert(k);
  }
  return total ? static_cast<double>(hits) / static_cast<double>(total) : 0;
}

namespace {
// For each request and block: the index of the next request that uses the same key (+inf: none).
std::vector<std::vector<double>> next_uses(const Trace& trace) {
  std::vector<std::vector<double>> out(trace.requests.size());
  std::unordered_map<prefix::BlockKey, double> next;
  for (size_t i = trace.requests.size(); i-- > 0;) {
    const auto& r = trace.requests[i];
    out[i].resize(r.blocks.size());
    for (size_t j = 0; j < r.blocks.size(); ++j) {
      auto it = next.find(r.blocks[j]);
      out[i][j] = it == next.end() ? std::numeric_limits<double>::infinity() : it->second;
    }
    for (auto k : r.blocks) next[k] = static_cast<double>(i);
  }
  return out;
}
}  // namespace

ReplayResult replay(const Trace& trace, const ReplayOptions& o) {
  KV_CHECK(o.capacity_blocks > 0, "cache capacity must be positive");
  KV_CHECK(o.latency.instances > 0 && o.latency.prefill_tokens_per_second > 0, "invalid latency model");
  const double t_start = now_seconds();
  prefix::PrefixCacheConfig cfg;
  cfg.policy = o.policy;
  cfg.policy_options = o.policy_options;
  cfg.chain = o.chain;
  cfg.tiers.push_back({"tier0", o.capacity_blocks, o.first_tier_bandwidth});
  for (const auto& t : o.lower_tiers) cfg.tiers.push_back(t);
  prefix::PrefixCache cache(cfg);
  const bool offline = prefix::is_offline_policy(o.policy);  // the policy needs each block's next use
  const std::vector<std::vector<double>> nu = offline ? next_uses(trace) : std::vector<std::vector<double>>{};

  std::priority_queue<double, std::vector<double>, std::greater<>> free_at;
  for (int i = 0; i < o.latency.instances; ++i) free_at.push(0.0);
  ReplayResult res;
  res.policy = o.policy;
  res.capacity_blocks = o.capacity_blocks;
  res.hits_by_tier.assign(cfg.tiers.size(), 0);
  std::vector<double> ttft;
  ttft.reserve(trace.requests.size());
  const double block_bytes = o.latency.kv_bytes_per_token * trace.block_tokens;
  // Requests still holding their blocks, by finish time (hold_until_done).
  using Pending = std::pair<double, size_t>;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> pending;
  std::vector<prefix::Admission> held(o.hold_until_done ? trace.requests.size() : 0);
  const auto release_until = [&](double t) {
    while (!pending.empty() && pending.top().first <= t) {
      cache.release(held[pending.top().second], pending.top().first);
      held[pending.top().second] = {};
      pending.pop();
    }
  };
  KV_CHECK(o.score_from >= 0 && o.score_from < o.score_until && o.score_until <= 1,
           "score range {}:{} must satisfy 0 <= from < until <= 1", o.score_from, o.score_until);
  const size_t n_req = trace.requests.size();
  const auto [first_scored, end] = scored_requests(n_req, o.score_from, o.score_until);
  prefix::CacheMetrics before;  // the cache's counters when scoring starts
  for (size_t i = 0; i < end && i < n_req; ++i) {
    const TraceRequest& r = trace.requests[i];
    const bool scored = i >= first_scored;
    if (i == first_scored) before = cache.metrics();
    res.replayed_blocks += r.blocks.size();
    const double start = std::max(r.time, free_at.top());
    free_at.pop();
    release_until(start);
    const auto a = cache.acquire(r.blocks, r.category, start,
                                 offline ? std::span<const double>(nu[i]) : std::span<const double>());
    double hit_tokens = 0, transfer = 0;
    for (size_t j = 0; j < a.hit_blocks && j < r.blocks.size(); ++j) hit_tokens += trace.block_token_count(r, j);
    for (size_t t = 1; t < a.hits_by_tier.size(); ++t)
      if (cfg.tiers[t].bandwidth > 0)
        transfer += static_cast<double>(a.hits_by_tier[t]) * block_bytes / cfg.tiers[t].bandwidth;
    if (scored)
      for (size_t t = 0; t < a.hits_by_tier.size(); ++t) res.hits_by_tier[t] += a.hits_by_tier[t];
    const double uncached = std::max(0.0, static_cast<double>(r.input_tokens) - hit_tokens);
    const double prefill = uncached / o.latency.prefill_tokens_per_second;
    const double first_token = start + transfer + prefill;
    if (scored) ttft.push_back(first_token - r.time);
    double busy_until = first_token;
    if (o.latency.decode_tokens_per_second > 0) busy_until += r.output_tokens / o.latency.decode_tokens_per_second;
    free_at.push(busy_until);
    if (o.hold_until_done) {
      held[i] = a;
      pending.push({busy_until, i});
    } else {
      cache.release(a, start);
    }
    if (scored) {
      res.token_hits += hit_tokens;
      res.tokens += r.input_tokens;
    }
  }
  release_until(std::numeric_limits<double>::infinity());
  const auto& m = cache.metrics();
  res.tier_specs = cfg.tiers;
  res.tier_metrics = m.tiers;
  for (size_t t = 0; t < before.tiers.size() && t < res.tier_metrics.size(); ++t) {
    res.tier_metrics[t].hits -= before.tiers[t].hits;
    res.tier_metrics[t].insertions -= before.tiers[t].insertions;
    res.tier_metrics[t].evictions -= before.tiers[t].evictions;
  }
  res.block_bytes = block_bytes;
  res.requests = m.requests - before.requests;
  res.blocks = m.blocks - before.blocks;
  res.block_hits = m.block_hits - before.block_hits;
  res.bypassed = m.bypassed - before.bypassed;
  for (size_t t = 0; t < m.tiers.size(); ++t) {
    const bool had = t < before.tiers.size();
    res.insertions += m.tiers[t].insertions - (had ? before.tiers[t].insertions : 0);
    res.evictions += m.tiers[t].evictions - (had ? before.tiers[t].evictions : 0);
  }
  res.history_bytes = cache.history_bytes();
  res.qttft = latency_stats(std::move(ttft));
  size_t resident = 0;
  for (const auto& t : m.tiers) resident += t.resident;
  res.metadata_bytes_per_block =
      resident ? static_cast<double>(cache.metadata_bytes()) / static_cast<double>(resident) : 0;
  res.wall_seconds = now_seconds() - t_start;
  return res;
}

}  // namespace kvwise::sim
