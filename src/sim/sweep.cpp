#include "sim/sweep.h"

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "base/svg_plot.h"
#include "base/thread_pool.h"

namespace kvwise::sim {

SweepResult run_sweep(const Trace& trace, const SweepOptions& o, const std::function<void(size_t, size_t)>& progress) {
  SweepResult out;
  out.infinite_hit_ratio = infinite_capacity_hit_ratio(trace, o.base.chain, o.base.score_from, o.base.score_until);
  const size_t n = o.policies.size() * o.capacities.size();
  out.runs.resize(n);
  ThreadPool pool(o.threads);
  std::atomic<size_t> done{0};
  std::mutex mu;
  pool.parallel_tasks(n, [&](size_t i, int) {
    ReplayOptions r = o.base;
    r.capacity_blocks = o.capacities[i / o.policies.size()];
    r.policy = o.policies[i % o.policies.size()];
    out.runs[i] = replay(trace, r);
    const size_t d = ++done;
    if (progress) {
      std::lock_guard<std::mutex> lock(mu);
      progress(d, n);
    }
  });
  return out;
}

namespace {
size_t index_of(const std::vector<std::string>& v, const std::string& name) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] == name) return i;
  return v.size();
}
}  // namespace

double gap_closed(const SweepResult& r, const SweepOptions& o, size_t c, size_t p) {
  const size_t P = o.policies.size(), lru = index_of(o.policies, "lru"), opt = index_of(o.policies, "belady");
  if (lru == P || opt == P) return std::nan("");
  const double lo = r.runs[c * P + lru].block_hit_ratio(), hi = r.runs[c * P + opt].block_hit_ratio();
  if (!(hi > lo)) return std::nan("");
  return (r.runs[c * P + p].block_hit_ratio() - lo) / (hi - lo);
}

std::string format_tables(const SweepResult& r, const SweepOptions& o) {
  std::string s;
  const size_t P = o.policies.size();
  for (size_t c = 0; c < o.capacities.size(); ++c) {
    const double bytes = static_cast<double>(o.capacities[c]) * r.runs[c * P].block_bytes;
    s += fmt::format("\ncapacity {} blocks = {:.2f} GiB (infinite-capacity block hit ratio {:.4f})\n", o.capacities[c],
                     bytes / (1024.0 * 1024 * 1024), r.infinite_hit_ratio);
    s += fmt::format("| {:<8} | {:>9} | {:>6} | {:>9} | {:>10} | {:>10} | {:>10} | {:>10} | {:>9} | {:>7} |\n",
                     "policy", "block hit", "gap", "token hit", "QTTFT mean", "QTTFT p50", "QTTFT p90", "QTTFT p99",
                     "evictions", "us/acc");
    s += "|----------|-----------|--------|-----------|------------|------------|------------|------------|-----------|"
         "---------|\n";
    for (size_t p = 0; p < P; ++p) {
      const ReplayResult& x = r.runs[c * P + p];
      const double g = gap_closed(r, o, c, p);
      s += fmt::format(
          "| {:<8} | {:>9.4f} | {:>6} | {:>9.4f} | {:>9.3f}s | {:>9.3f}s | {:>9.3f}s | {:>9.3f}s | {:>9} | {:>7.3f} "
          "|\n",
          x.policy, x.block_hit_ratio(), std::isnan(g) ? "-" : fmt::format("{:.0f}%", 100 * g), x.token_hit_ratio(),
          x.qttft.mean, x.qttft.p50, x.qttft.p90, x.qttft.p99, x.evictions, x.us_per_block_access());
    }
  }
  s += "\ngap = the share of the LRU -> Belady hit-ratio gap closed; us/acc = replay time per block access\n";
  return s;
}

std::string to_json(const Trace& trace, const SweepResult& r, const SweepOptions& o) {
  nlohmann::json j;
  j["trace"] = {{"source", trace.source},
                {"format", trace.format},
                {"requests", trace.requests.size()},
                {"block_tokens", trace.block_tokens},
                {"skipped_lines", trace.skipped_lines},
                {"categories", trace.category_names}};
  j["infinite_capacity_block_hit_ratio"] = r.infinite_hit_ratio;
  j["score_range"] = {o.base.score_from, o.base.score_until};
  j["latency_model"] = {{"prefill_tokens_per_second", o.base.latency.prefill_tokens_per_second},
                        {"decode_tokens_per_second", o.base.latency.decode_tokens_per_second},
                        {"instances", o.base.latency.instances},
                        {"kv_bytes_per_token", o.base.latency.kv_bytes_per_token}};
  for (size_t i = 0; i < r.runs.size(); ++i) {
    const ReplayResult& x = r.runs[i];
    const double gap = gap_closed(r, o, i / o.policies.size(), i % o.policies.size());
    nlohmann::json tiers = nlohmann::json::array();
    for (size_t t = 0; t < x.tier_metrics.size(); ++t) {
      const auto& m = x.tier_metrics[t];
      tiers.push_back({{"name", x.tier_specs[t].name},
                       {"capacity_blocks", m.capacity},
                       {"capacity_bytes", static_cast<double>(m.capacity) * x.block_bytes},
                       {"resident_blocks", m.resident},
                       {"resident_bytes", static_cast<double>(m.resident) * x.block_bytes},
                       {"hits", m.hits},
                       {"insertions", m.insertions},
                       {"evictions", m.evictions}});
    }
    j["runs"].push_back(
        {{"policy", x.policy},
         {"capacity_blocks", x.capacity_blocks},
         {"capacity_bytes", static_cast<double>(x.capacity_blocks) * x.block_bytes},
         {"block_bytes", x.block_bytes},
         {"block_hit_ratio", x.block_hit_ratio()},
         {"lru_belady_gap_closed", std::isnan(gap) ? nlohmann::json() : nlohmann::json(gap)},
         {"token_hit_ratio", x.token_hit_ratio()},
         {"blocks", x.blocks},
         {"block_hits", x.block_hits},
         {"hits_by_tier", x.hits_by_tier},
         {"insertions", x.insertions},
         {"evictions", x.evictions},
         {"bypassed", x.bypassed},
         {"qttft_seconds", {{"mean", x.qttft.mean}, {"p50", x.qttft.p50}, {"p90", x.qttft.p90}, {"p99", x.qttft.p99}}},
         {"replay_wall_seconds", x.wall_seconds},
         {"metadata_bytes_per_block", x.metadata_bytes_per_block},
         {"history_bytes", x.history_bytes},
         {"us_per_block_access", x.us_per_block_access()},
         {"tiers", tiers}});
  }
  return j.dump(2);
}

std::string to_csv(const SweepResult& r) {
  std::string s =
      "policy,capacity_blocks,block_hit_ratio,token_hit_ratio,qttft_mean,qttft_p50,qttft_p90,qttft_p99,evictions,"
      "insertions,replay_seconds,infinite_block_hit_ratio\n";
  for (const auto& x : r.runs)
    s += fmt::format("{},{},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{},{},{:.4f},{:.6f}\n", x.policy,
                     x.capacity_blocks, x.block_hit_ratio(), x.token_hit_ratio(), x.qttft.mean, x.qttft.p50,
                     x.qttft.p90, x.qttft.p99, x.evictions, x.insertions, x.wall_seconds, r.infinite_hit_ratio);
  return s;
}

void write_plots(const SweepResult& r, const SweepOptions& o, const std::string& dir, const std::string& title) {
  std::filesystem::create_directories(dir);
  PlotSpec hit{title + ": block hit ratio", "capacity (blocks)", "block hit ratio", true, true, {}};
  PlotSpec lat{title + ": mean QTTFT", "capacity (blocks)", "mean QTTFT (s)", true, true, {}};
  const size_t P = o.policies.size();
  for (size_t p = 0; p < P; ++p) {
    PlotSeries h{o.policies[p], {}, {}, o.policies[p] == "belady"}, l = h;
    for (size_t c = 0; c < o.capacities.size(); ++c) {
      const ReplayResult& x = r.runs[c * P + p];
      h.x.push_back(static_cast<double>(x.capacity_blocks));
      h.y.push_back(x.block_hit_ratio());
      l.x.push_back(static_cast<double>(x.capacity_blocks));
      l.y.push_back(x.qttft.mean);
    }
    hit.series.push_back(h);
    lat.series.push_back(l);
  }
  PlotSeries inf{"infinite", {}, {}, true};
  for (size_t cap : o.capacities) {
    inf.x.push_back(static_cast<double>(cap));
    inf.y.push_back(r.infinite_hit_ratio);
  }
  hit.series.push_back(inf);
  write_svg(hit, dir + "/hit_ratio.svg");
  write_svg(lat, dir + "/qttft.svg");
  PlotSpec gap{title + ": share of the LRU -> Belady gap closed", "capacity (blocks)", "gap closed", true, false, {}};
  for (size_t p = 0; p < P; ++p) {
    PlotSeries g{o.policies[p], {}, {}, o.policies[p] == "belady" || o.policies[p] == "lru"};
    for (size_t c = 0; c < o.capacities.size(); ++c) {
      const double v = gap_closed(r, o, c, p);
      if (std::isnan(v)) continue;
      g.x.push_back(static_cast<double>(o.capacities[c]));
      g.y.push_back(v);
    }
    if (!g.x.empty()) gap.series.push_back(g);
  }
  if (!gap.series.empty()) write_svg(gap, dir + "/gap_closed.svg");
}

}  // namespace kvwise::sim
