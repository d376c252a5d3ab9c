// A cluster of serving instances in the simulator (kvwise sim --instances N --routing LIST): each
// instance has its own prefix cache (memory, optional lower tiers) and its own queue; an optional
// shared tier below them stands for Redis (LRU over `shared_tier_blocks`, as maxmemory-policy
// allkeys-lru approximates it); requests are routed on arrival by the same policies as kvwise route
// (prefix/routing.h), seeing each instance's requests in flight, active blocks and resident prefix
// (what the instances' KV events tell the router). A request's QTTFT is its wait for its instance +
// the transfer of blocks found in lower tiers or the shared tier + the prefill of the rest.
// Thread-safety: replay_cluster is pure (runs may go in parallel).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "prefix/routing.h"
#include "sim/replay.h"

namespace kvwise::sim {

struct ClusterOptions {
  int instances = 2;
  std::string routing = "round-robin";
  prefix::RoutingOptions routing_options;
  ReplayOptions instance;            // per instance: policy, capacity, lower tiers, latency (instances ignored)
  size_t shared_tier_blocks = 0;     // 0: no shared tier
  double shared_bandwidth = 1.25e9;  // bytes/s from the shared tier to an instance (10 Gb/s)
  std::string shared_policy = "lru";
};

struct ClusterResult {
  std::string routing, policy;
  int instances = 0;
  size_t capacity_blocks = 0, shared_tier_blocks = 0;
  uint64_t requests = 0, blocks = 0, local_hits = 0, shared_hits = 0;
  double tokens = 0, token_hits = 0;
  LatencyStats qttft;
  std::vector<uint64_t> requests_per_instance;
  std::vector<double> busy_seconds_per_instance;  // transfer + prefill (+ decode) served
  double makespan = 0;                            // last first-token time - first arrival
  double wall_seconds = 0;
  double local_hit_ratio() const { return blocks ? static_cast<double>(local_hits) / static_cast<double>(blocks) : 0; }
  double shared_hit_ratio() const {
    return blocks ? static_cast<double>(shared_hits) / static_cast<double>(blocks) : 0;
  }
  double hit_ratio() const { return local_hit_ratio() + shared_hit_ratio(); }
  // max / mean busy time over instances (1: perfectly balanced).
  double load_imbalance() const;
  double throughput() const { return makespan > 0 ? static_cast<double>(requests) / makespan : 0; }
};

ClusterResult replay_cluster(const Trace& trace, const ClusterOptions& options);

}  // namespace kvwise::sim

namespace kvwise::sim {

// routing x instances x shared tier x policy x capacity, run in parallel.
struct ClusterSweepOptions {
  std::vector<std::string> routings;
  std::vector<int> instances;
  std::vector<size_t> shared_tier_blocks;  // 0: off
  std::vector<std::string> policies;
  std::vector<size_t> capacities;  // per instance
  ClusterOptions base;
  int threads = 2;
};

std::vector<ClusterResult> run_cluster_sweep(const Trace& trace, const ClusterSweepOptions& options,
                                             const std::function<void(size_t done, size_t total)>& progress = {});
// One table per (policy, capacity, shared tier): a row per routing x instances.
std::string format_cluster_tables(const std::vector<ClusterResult>& runs);
std::string cluster_to_json(const Trace& trace, const std::vector<ClusterResult>& runs, const ClusterSweepOptions& o);
// cluster_hit_ratio.svg, cluster_qttft_p90.svg and cluster_imbalance.svg: against instances, a line
// per routing (dashed: with the shared tier).
void write_cluster_plots(const std::vector<ClusterResult>& runs, const std::string& dir, const std::string& title);

}  // namespace kvwise::sim
