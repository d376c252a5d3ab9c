#include "sim/cluster.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>

#include "base/error.h"
#include "base/svg_plot.h"
#include "base/thread_pool.h"
#include "base/timer.h"

namespace kvwise::sim {

double ClusterResult::load_imbalance() const {
  if (busy_seconds_per_instance.empty()) return 1;
  double sum = 0, mx = 0;
  for (double b : busy_seconds_per_instance) sum += b, mx = std::max(mx, b);
  const double mean = sum / static_cast<double>(busy_seconds_per_instance.size());
  return mean > 0 ? mx / mean : 1;
}

namespace {

struct Instance {
  std::unique_ptr<prefix::PrefixCache> cache;
  // When each of its slots (sequences served at once) is free; the instance's queue is FIFO.
  std::priority_queue<double, std::vector<double>, std::greater<>> slot_free;
  // Requests holding their blocks until they finish (ReplayOptions::hold_until_done).
  std::priority_queue<std::pair<double, size_t>, std::vector<std::pair<double, size_t>>, std::greater<>> holding;
  // Requests routed here and not yet finished: (finish time, active blocks).
  std::priority_queue<std::pair<double, double>, std::vector<std::pair<double, double>>, std::greater<>> running;
  double active_blocks = 0;
  void retire_until(double t) {
    while (!running.empty() && running.top().first <= t) {
      active_blocks -= running.top().second;
      running.pop();
    }
  }
};

}  // namespace

ClusterResult replay_cluster(const Trace& trace, const ClusterOptions& o) {
  KV_CHECK(o.instances > 0 && o.instances <= 64, "--instances must be 1..64");
  const ReplayOptions& ro = o.instance;
  KV_CHECK(ro.capacity_blocks > 0, "cache capacity must be positive");
  KV_CHECK(!prefix::is_offline_policy(ro.policy), "the cluster simulator replays online policies only, not '{}'",
           ro.policy);
  KV_CHECK(ro.latency.prefill_tokens_per_second > 0, "invalid latency model");
  const double t0 = now_seconds();
  auto policy = prefix::make_routing_policy(o.routing, o.routing_options);
  std::vector<Instance> inst(static_cast<size_t>(o.instances));
  std::vector<prefix::TierSpec> tiers{{"memory", ro.capacity_blocks, ro.first_tier_bandwidth}};
  for (const auto& t : ro.lower_tiers) tiers.push_back(t);
  KV_CHECK(ro.latency.instances >= 1, "an instance serves at least one sequence at a time");
  std::vector<prefix::Admission> held(ro.hold_until_done ? trace.requests.size() : 0);
  for (auto& in : inst) {
    for (int k = 0; k < ro.latency.instances; ++k) in.slot_free.push(0.0);
    prefix::PrefixCacheConfig cfg;
    cfg.policy = ro.policy;
    cfg.policy_options = ro.policy_options;
    cfg.chain = ro.chain;
    cfg.tiers = tiers;
    in.cache = std::make_unique<prefix::PrefixCache>(cfg);
  }
  std::unique_ptr<prefix::PrefixCache> shared;
  if (o.shared_tier_blocks > 0) {
    prefix::PrefixCacheConfig cfg;
    cfg.policy = o.shared_policy;
    cfg.chain = ro.chain;
    cfg.tiers.push_back({"shared", o.shared_tier_blocks, 0});
    shared = std::make_unique<prefix::PrefixCache>(cfg);
  }
  ClusterResult res;
  res.routing = policy->name();
  res.policy = ro.policy;
  res.instances = o.instances;
  res.capacity_blocks = ro.capacity_blocks;
  res.shared_tier_blocks = o.shared_tier_blocks;
  res.requests_per_instance.assign(inst.size(), 0);
  res.busy_seconds_per_instance.assign(inst.size(), 0);
  const double block_bytes = ro.latency.kv_bytes_per_token * trace.block_tokens;
  const auto [first_scored, end] = scored_requests(trace.requests.size(), ro.score_from, ro.score_until);
  std::vector<double> ttft;
  std::vector<prefix::InstanceView> view(inst.size());
  double first_arrival = std::numeric_limits<double>::infinity(), last_token = 0;
  for (size_t i = 0; i < end && i < trace.requests.size(); ++i) {
    const TraceRequest& r = trace.requests[i];
    const bool scored = i >= first_scored;
    // What the router sees on arrival.
    for (size_t k = 0; k < inst.size(); ++k) {
      Instance& in = inst[k];
      in.retire_until(r.time);
      view[k].healthy = true;
      view[k].in_flight = static_cast<int>(in.running.size());
      view[k].active_blocks = in.active_blocks;
      int overlap = 0;
      for (const auto key : r.blocks) {
        if (in.cache->tier_of(key) < 0) break;
        ++overlap;
      }
      view[k].overlap_blocks = overlap;
    }
    const double decode_blocks = static_cast<double>(r.output_tokens) / trace.block_tokens;
    const int chosen = policy->choose(view, static_cast<int>(r.blocks.size()), decode_blocks);
    KV_ASSERT(chosen >= 0, "every simulated instance is healthy");
    Instance& in = inst[static_cast<size_t>(chosen)];
    const double start = std::max(r.time, in.slot_free.top());
    in.slot_free.pop();
    while (!in.holding.empty() && in.holding.top().first <= start) {
      in.cache->release(held[in.holding.top().second], in.holding.top().first);
      in.holding.pop();
    }
    const prefix::Admission a = in.cache->acquire(r.blocks, r.category, start);
    double hit_tokens = 0, transfer = 0;
    for (size_t j = 0; j < a.hit_blocks && j < r.blocks.size(); ++j) hit_tokens += trace.block_token_count(r, j);
    for (size_t t = 1; t < a.hits_by_tier.size(); ++t)
      if (tiers[t].bandwidth > 0) transfer += static_cast<double>(a.hits_by_tier[t]) * block_bytes / tiers[t].bandwidth;
    size_t shared_hits = 0;
    if (shared && a.hit_blocks < r.blocks.size()) {
      // What the instance lacks is looked up in the shared tier; what it then computes is written there.
      const std::span<const prefix::BlockKey> rest(r.blocks.data() + a.hit_blocks, r.blocks.size() - a.hit_blocks);
      const prefix::Admission s = shared->acquire(rest, r.category, start);
      shared_hits = s.hit_blocks;
      shared->release(s, start);
      for (size_t j = 0; j < shared_hits; ++j) hit_tokens += trace.block_token_count(r, a.hit_blocks + j);
      transfer += static_cast<double>(shared_hits) * block_bytes / o.shared_bandwidth;
    }
    const double uncached = std::max(0.0, static_cast<double>(r.input_tokens) - hit_tokens);
    const double first_token = start + transfer + uncached / ro.latency.prefill_tokens_per_second;
    double busy_until = first_token;
    if (ro.latency.decode_tokens_per_second > 0) busy_until += r.output_tokens / ro.latency.decode_tokens_per_second;
    if (ro.hold_until_done) {
      held[i] = a;
      in.holding.push({busy_until, i});
    } else {
      in.cache->release(a, start);
    }
    in.slot_free.push(busy_until);
    const double active = static_cast<double>(r.blocks.size()) + decode_blocks;
    in.running.push({busy_until, active});
    in.active_blocks += active;
    if (!scored) continue;
    ttft.push_back(first_token - r.time);
    ++res.requests;
    res.blocks += r.blocks.size();
    res.local_hits += a.hit_blocks;
    res.shared_hits += shared_hits;
    res.tokens += r.input_tokens;
    res.token_hits += hit_tokens;
    ++res.requests_per_instance[static_cast<size_t>(chosen)];
    res.busy_seconds_per_instance[static_cast<size_t>(chosen)] += busy_until - start;
    first_arrival = std::min(first_arrival, r.time);
    last_token = std::max(last_token, first_token);
  }
  res.qttft = latency_stats(std::move(ttft));
  res.makespan = res.requests ? last_token - first_arrival : 0;
  res.wall_seconds = now_seconds() - t0;
  return res;
}

std::vector<ClusterResult> run_cluster_sweep(const Trace& trace, const ClusterSweepOptions& o,
                                             const std::function<void(size_t, size_t)>& progress) {
  struct Job {
    std::string routing, policy;
    int instances;
    size_t shared, capacity;
  };
  std::vector<Job> jobs;
  for (const auto& p : o.policies)
    for (size_t c : o.capacities)
      for (size_t s : o.shared_tier_blocks)
        for (const auto& r : o.routings)
          for (int n : o.instances) jobs.push_back({r, p, n, s, c});
  std::vector<ClusterResult> out(jobs.size());
  ThreadPool pool(o.threads);
  std::atomic<size_t> done{0};
  std::mutex mu;
  pool.parallel_tasks(jobs.size(), [&](size_t i, int) {
    ClusterOptions c = o.base;
    c.routing = jobs[i].routing;
    c.instances = jobs[i].instances;
    c.shared_tier_blocks = jobs[i].shared;
    c.instance.policy = jobs[i].policy;
    c.instance.capacity_blocks = jobs[i].capacity;
    out[i] = replay_cluster(trace, c);
    const size_t d = ++done;
    if (progress) {
      std::lock_guard<std::mutex> lock(mu);
      progress(d, jobs.size());
    }
  });
  return out;
}

std::string format_cluster_tables(const std::vector<ClusterResult>& runs) {
  std::string s;
  std::string group;
  for (const auto& x : runs) {
    const std::string g = fmt::format("policy {}, {} blocks per instance, shared tier {}", x.policy, x.capacity_blocks,
                                      x.shared_tier_blocks ? fmt::format("{} blocks", x.shared_tier_blocks) : "off");
    if (g != group) {
      group = g;
      s += fmt::format("\n{}\n", g);
      s += fmt::format("| {:<11} | {:>9} | {:>9} | {:>10} | {:>9} | {:>10} | {:>10} | {:>9} | {:>9} |\n", "routing",
                       "instances", "local hit", "shared hit", "total hit", "QTTFT p50", "QTTFT p90", "imbalance",
                       "req/s");
      s += "|-------------|-----------|-----------|------------|-----------|------------|------------|-----------|"
           "-----------|\n";
    }
    s += fmt::format(
        "| {:<11} | {:>9} | {:>9.4f} | {:>10.4f} | {:>9.4f} | {:>9.3f}s | {:>9.3f}s | {:>9.2f} | {:>9.2f} |\n",
        x.routing, x.instances, x.local_hit_ratio(), x.shared_hit_ratio(), x.hit_ratio(), x.qttft.p50, x.qttft.p90,
        x.load_imbalance(), x.throughput());
  }
  s += "\nimbalance = max / mean busy time over instances; hit ratios are of blocks\n";
  return s;
}

std::string cluster_to_json(const Trace& trace, const std::vector<ClusterResult>& runs, const ClusterSweepOptions& o) {
  nlohmann::json j;
  j["trace"] = {{"source", trace.source},
                {"format", trace.format},
                {"requests", trace.requests.size()},
                {"block_tokens", trace.block_tokens}};
  j["latency"] = {{"prefill_tokens_per_second", o.base.instance.latency.prefill_tokens_per_second},
                  {"decode_tokens_per_second", o.base.instance.latency.decode_tokens_per_second},
                  {"kv_bytes_per_token", o.base.instance.latency.kv_bytes_per_token},
                  {"shared_bandwidth", o.base.shared_bandwidth}};
  j["overlap_weight"] = o.base.routing_options.overlap_weight;
  j["runs"] = nlohmann::json::array();
  for (const auto& x : runs)
    j["runs"].push_back(
        {{"routing", x.routing},
         {"policy", x.policy},
         {"instances", x.instances},
         {"capacity_blocks", x.capacity_blocks},
         {"shared_tier_blocks", x.shared_tier_blocks},
         {"requests", x.requests},
         {"blocks", x.blocks},
         {"local_hit_ratio", x.local_hit_ratio()},
         {"shared_hit_ratio", x.shared_hit_ratio()},
         {"hit_ratio", x.hit_ratio()},
         {"token_hit_ratio", x.tokens > 0 ? x.token_hits / x.tokens : 0},
         {"qttft", {{"mean", x.qttft.mean}, {"p50", x.qttft.p50}, {"p90", x.qttft.p90}, {"p99", x.qttft.p99}}},
         {"load_imbalance", x.load_imbalance()},
         {"requests_per_instance", x.requests_per_instance},
         {"busy_seconds_per_instance", x.busy_seconds_per_instance},
         {"throughput", x.throughput()},
         {"wall_seconds", x.wall_seconds}});
  return j.dump(2);
}

void write_cluster_plots(const std::vector<ClusterResult>& runs, const std::string& dir, const std::string& title) {
  std::filesystem::create_directories(dir);
  PlotSpec hit{title + ": block hit ratio (local + shared)", "instances", "block hit ratio", true, true, {}};
  PlotSpec lat{title + ": QTTFT p90", "instances", "QTTFT p90 (s)", true, true, {}};
  PlotSpec imb{title + ": load imbalance (max / mean busy)", "instances", "max / mean", true, false, {}};
  std::map<std::string, size_t> index;  // series name -> position
  for (const auto& x : runs) {
    // One plot per sweep's first policy and capacity (the tables hold every combination).
    if (x.policy != runs.front().policy || x.capacity_blocks != runs.front().capacity_blocks) continue;
    const std::string name = x.shared_tier_blocks ? x.routing + " + shared" : x.routing;
    auto it = index.find(name);
    if (it == index.end()) {
      it = index.emplace(name, hit.series.size()).first;
      for (auto* p : {&hit, &lat, &imb}) p->series.push_back({name, {}, {}, x.shared_tier_blocks > 0});
    }
    const double n = x.instances;
    hit.series[it->second].x.push_back(n);
    hit.series[it->second].y.push_back(x.hit_ratio());
    lat.series[it->second].x.push_back(n);
    lat.series[it->second].y.push_back(x.qttft.p90);
    imb.series[it->second].x.push_back(n);
    imb.series[it->second].y.push_back(x.load_imbalance());
  }
  write_svg(hit, dir + "/cluster_hit_ratio.svg");
  write_svg(lat, dir + "/cluster_qttft_p90.svg");
  write_svg(imb, dir + "/cluster_imbalance.svg");
}

}  // namespace kvwise::sim
