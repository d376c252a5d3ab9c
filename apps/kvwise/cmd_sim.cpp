// kvwise sim: replay a serving trace (or a generated workload) through the prefix cache under each
// eviction policy and capacity; hit ratios and queueing TTFT side by side with Belady and infinity.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/data_dir.h"
#include "base/error.h"
#include "base/progress.h"
#include "base/timer.h"
#include "common.h"
#include "serve/prefix_block_codec.h"
#include "sim/categories.h"
#include "sim/cluster.h"
#include "sim/sweep.h"
#include "sim/synthetic.h"

namespace kvwise::cli {

namespace {

// KV bytes per token (f16) of real model shapes: 2 (K,V) x layers x KV heads x head dim x 2 bytes.
const std::map<std::string, double>& model_shapes() {
  static const std::map<std::string, double> m = {
      {"smollm-135m", 2.0 * 30 * 3 * 64 * 2}, {"llama-1b", 2.0 * 16 * 8 * 64 * 2},
      {"llama2-7b", 2.0 * 32 * 32 * 128 * 2}, {"llama2-13b", 2.0 * 40 * 40 * 128 * 2},
      {"llama3-8b", 2.0 * 32 * 8 * 128 * 2},  {"llama3-70b", 2.0 * 80 * 8 * 128 * 2},
      {"qwen2-7b", 2.0 * 28 * 4 * 128 * 2},   {"qwen2.5-7b", 2.0 * 28 * 4 * 128 * 2},
  };
  return m;
}

// Reads the d0 prefill tokens/s from a `kvwise bench --json` file.
double prefill_from_bench(const std::string& path) {
  std::ifstream in(path);
  KV_CHECK(in.good(), "{}: cannot open", path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    fail("{}: not a kvwise bench --json file: {}", path, e.what());
  }
  for (const auto& r : j.value("results", nlohmann::json::array()))
    if (r.value("depth", -1) == 0 && r.value("test", std::string()).rfind("pp", 0) == 0)
      return r.value("tokens_per_second", 0.0);
  fail("{}: no pp test at depth 0", path);
}

// Prefill tokens/s of a GGUF model measured now: a 512-token prompt (or the context, if shorter),
// best of two runs, as `kvwise bench -p 512 -d 0` would report it.
double measure_prefill(const std::string& path, int threads, double* kv_bytes_per_token) {
  auto model = Model::load(path);
  EngineOptions eo;
  eo.threads = threads > 0 ? threads : default_threads();
  Engine engine(*model, eo);
  const int n = std::min(512, engine.ctx());
  std::vector<int32_t> prompt(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) prompt[static_cast<size_t>(i)] = (i * 7919 + 1) % model->config().n_vocab;
  double best = 0;
  for (int rep = 0; rep < 2; ++rep) {
    const SeqId seq = engine.new_sequence();
    const double t0 = now_seconds();
    engine.prefill(seq, prompt, false);
    best = std::max(best, n / std::max(1e-9, now_seconds() - t0));
    engine.free_sequence(seq);
  }
  *kv_bytes_per_token = static_cast<double>(engine.kv().bytes_per_token_full());
  return best;
}

bool is_gguf(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  return f.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

// Instances that serve the trace's prompt tokens at 80% utilisation with no cache hits at all: the
// provisioning a deployment without a prefix cache would need, so that queueing TTFT measures what
// the cache saves rather than an overloaded queue.
int instances_for_load(const sim::Trace& t, double prefill_tps) {
  if (t.requests.size() < 2) return 1;
  double tokens = 0, first = t.requests.front().time, last = first;
  for (const auto& r : t.requests) {
    tokens += r.input_tokens;
    first = std::min(first, r.time);
    last = std::max(last, r.time);
  }
  const double offered = tokens / std::max(1.0, last - first);
  return std::max(1, static_cast<int>(std::ceil(offered / (0.8 * prefill_tps))));
}

std::vector<prefix::TierSpec> parse_tiers(const std::string& spec) {
  std::vector<prefix::TierSpec> tiers;
  if (spec.empty()) return tiers;
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t end = std::min(spec.find(',', start), spec.size());
    const std::string item = spec.substr(start, end - start);
    prefix::TierSpec t;
    char name[64];
    unsigned long long cap = 0;
    double bw = 0;
    KV_CHECK(std::sscanf(item.c_str(), "%63[^:]:%llu:%lf", name, &cap, &bw) == 3 && cap > 0 && bw > 0,
             "bad tier '{}' (expected NAME:CAPACITY_BLOCKS:BYTES_PER_SECOND, e.g. host:20000:16e9)", item);
    t.name = name;
    t.capacity_blocks = cap;
    t.bandwidth = bw;
    tiers.push_back(t);
    start = end + 1;
  }
  return tiers;
}

}  // namespace

void add_sim(CLI::App& app) {
  struct Opts {
    std::string trace, format = "auto", categories = "auto", tiers, model_shape = "llama3-8b", cost_from, plot, csv,
                       generate, data_dir;
    std::vector<std::string> policies = {"all"};
    std::vector<size_t> capacity = {1000, 2000, 5000, 10000};
    std::vector<double> capacity_bytes;
    double prefill_tps = 0, decode_tps = 0;
    std::vector<int> instances;
    int threads = 0, azure_block_tokens = 512;
    std::vector<std::string> routing;
    std::vector<size_t> shared_tier_blocks = {0};
    double shared_bandwidth = 1.25e9;
    int instance_slots = 1;
    prefix::RoutingOptions routing_options;
    bool hold = false;
    std::string score_range = "0:1", block_dtype = "f16";
    int block_group = 32;
    bool json = false, fail_on_bad = false, holes = false;
    sim::SyntheticOptions syn;
    prefix::WaOptions wa;
    prefix::HazardOptions hazard;
    bool gdsf_position_cost = false;
    double s3fifo_small = 0.1;
    int s3fifo_threshold = 1;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("sim", "replay a serving trace through the prefix cache per eviction policy and capacity");
  cmd->add_option("--trace", o->trace, "trace file (default: a generated workload)");
  cmd->add_option("--format", o->format, "mooncake, bailian, azure or auto")
      ->check(CLI::IsMember({"auto", "mooncake", "bailian", "azure", "synthetic"}));
  auto* policies_opt =
      cmd->add_option("--policies", o->policies,
                      "eviction policies, comma separated; all (the default) = every registered online policy and "
                      "belady (with --routing: lru unless given)")
          ->delimiter(',');
  cmd->add_option("--capacity", o->capacity, "first-tier capacities in blocks, comma separated")
      ->delimiter(',')
      ->check(CLI::Range(1.0, 1e15));
  cmd->add_option("--capacity-bytes", o->capacity_bytes, "first-tier capacities in bytes (uses --model-shape)")
      ->delimiter(',')
      ->check(CLI::Range(1.0, 1e18));
  cmd->add_option("--tiers", o->tiers,
                  "lower tiers NAME:BLOCKS:BYTES_PER_S,... (e.g. host:20000:16e9,disk:200000:2e9)");
  auto* shape_opt = cmd->add_option("--model-shape", o->model_shape,
                                    "KV bytes per token of: smollm-135m, llama-1b, llama2-7b, llama2-13b, "
                                    "llama3-8b, llama3-70b, qwen2-7b, qwen2.5-7b");
  cmd->add_option("--prefill-tps", o->prefill_tps,
                  "prefill tokens/s of one instance (0: --cost-from, else an assumed 10000, said so)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--cost-from", o->cost_from,
                  "prefill tokens/s from a `kvwise bench --json` file, or measured now on a GGUF model (whose KV bytes "
                  "per token then replace --model-shape's unless that is given)");
  cmd->add_option("--decode-tps", o->decode_tps, "decode tokens/s holding an instance (default 0: overlapped)");
  cmd->add_option(
         "--instances", o->instances,
         "serving instances (0, the default: enough for the trace's load at 80% utilisation); with --routing, a "
         "list of cluster sizes, e.g. 1,2,4,8")
      ->delimiter(',')
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--routing", o->routing,
                  "simulate a cluster: instances with their own caches and queues, requests routed by each of these "
                  "(round-robin, least-load, prefix, cost or all; as kvwise route)")
      ->delimiter(',');
  cmd->add_option("--shared-tier-blocks", o->shared_tier_blocks,
                  "cluster: capacity of a shared tier below the instances (Redis, LRU), a list; 0: none")
      ->delimiter(',');
  cmd->add_option("--instance-slots", o->instance_slots,
                  "cluster: sequences one instance serves at once (its batch), sharing its cache and queue; with "
                  "--hold they keep their blocks pinned while they run")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--shared-bandwidth", o->shared_bandwidth, "cluster: bytes/s from the shared tier to an instance")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--overlap-weight", o->routing_options.overlap_weight,
                  "cluster, cost routing: weight of an uncached prefill block")
      ->check(CLI::Range(0.0, 1000.0));
  add_prefix_routing_options(*cmd, o->routing_options);
  cmd->add_option("--score-range", o->score_range,
                  "FROM:UNTIL fractions of the requests: replay up to UNTIL, count only from FROM on (e.g. 0:0.5 to "
                  "tune, 0.5:1 to score what was tuned there)");
  cmd->add_option("--block-dtype", o->block_dtype,
                  "KV precision of a cached block: f16, or int8/int4 (per-token groups with an f16 scale and zero, "
                  "as kvwise serve --prefix-cache-dtype stores them); sizes --capacity-bytes and the block bytes")
      ->check(CLI::IsMember({"f16", "int8", "int4"}));
  cmd->add_option("--block-group", o->block_group, "channels per quantisation group of --block-dtype int8/int4")
      ->check(CLI::IsMember({8, 16, 32, 64, 128}));
  cmd->add_flag("--hold", o->hold,
                "requests pin their blocks until they finish (by the latency model), as a live server does");
  cmd->add_option("--categories", o->categories, "WA category rule: auto, none, length, turn, turn-length, trace");
  cmd->add_option("-t,--threads", o->threads,
                  "parallel replays, and the threads of a --cost-from measurement (0: the usable cores)");
  cmd->add_flag("--fail-on-bad-line", o->fail_on_bad, "stop at a malformed trace line instead of skipping it");
  cmd->add_flag("--holes", o->holes, "count every cached block as a hit, not only the unbroken prefix");
  cmd->add_option("--azure-block-tokens", o->azure_block_tokens, "block size for Azure traces' synthetic prefixes");
  cmd->add_option("--synthetic-requests", o->syn.requests, "requests of the generated workload");
  cmd->add_option("--seed", o->syn.seed, "seed of the generated workload");
  cmd->add_option("--generate", o->generate, "write the generated workload as Bailian JSONL and exit");
  cmd->add_option("--wa-horizon", o->wa.horizon, "WA: reuse-probability window T in seconds [R]");
  cmd->add_option("--wa-window", o->wa.fit_window, "WA: seconds of recent reuse intervals fitted [R]");
  cmd->add_option("--wa-refit", o->wa.refit_interval, "WA: seconds between refits");
  cmd->add_option("--wa-life-quantile", o->wa.life_quantile, "WA: lifespan quantile of reuse intervals [R]");
  cmd->add_option("--wa-min-samples", o->wa.min_samples, "WA: reuse intervals needed for a category's own fit");
  cmd->add_option("--s3fifo-small", o->s3fifo_small, "S3-FIFO: small queue's share of the capacity (default 0.1)")
      ->check(CLI::Range(0.01, 0.9));
  cmd->add_option("--s3fifo-threshold", o->s3fifo_threshold,
                  "S3-FIFO: hits in the small queue that move a block to main (default 1; libCacheSim: 2)")
      ->check(CLI::Range(1, 3));
  cmd->add_flag("!--wa-no-lifespan", o->wa.use_lifespan, "WA ablation: no lifespan cut-off");
  cmd->add_flag("!--wa-no-probability", o->wa.use_probability, "WA ablation: ignore p_w");
  cmd->add_flag("--wa-category-follows-use", o->wa.category_follows_last_use,
                "WA: a block moves to the category of the request that last used it");
  cmd->add_flag("!--wa-ties-by-offset", o->wa.ties_by_age, "WA: equal P evicts the larger offset first, even if newer");
  cmd->add_option("--hazard-horizon", o->hazard.horizon,
                  "hazard: score = P(reuse within this many seconds); 0 (default): adapts to the cache")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--hazard-window", o->hazard.window, "hazard: longest binned gap and key history, seconds")
      ->check(CLI::Range(1.0, 1e7));
  cmd->add_option("--hazard-half-life", o->hazard.half_life, "hazard: seconds over which the learned counts halve")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--hazard-min-gap", o->hazard.min_gap, "hazard: shortest binned gap, seconds")
      ->check(CLI::Range(1e-6, 1e6));
  cmd->add_option("--hazard-bins", o->hazard.bins, "hazard: log-spaced gap bins")->check(CLI::Range(4, 1000));
  cmd->add_option("--hazard-max-uses", o->hazard.max_uses, "hazard: prior-use counts with a class of their own")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--hazard-max-categories", o->hazard.max_categories,
                  "hazard: request categories with classes of their own (0: categories ignored)")
      ->check(CLI::Range(0, 256));
  cmd->add_option("--hazard-horizon-scale", o->hazard.horizon_scale,
                  "hazard: with --hazard-horizon 0, H = this x the mean idle time of evicted blocks")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("!--hazard-no-last-block", o->hazard.last_block_class,
                "hazard ablation: the last block of a prompt is not a class of its own");
  cmd->add_flag("--gdsf-position-cost", o->gdsf_position_cost, "GDSF: cost of a block = its position in the prompt");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->add_option("--csv", o->csv, "also write CSV to this file");
  cmd->add_option("--plot", o->plot, "write hit_ratio.svg, qttft.svg and sim.json into this directory");
  cmd->callback([o, shape_opt, policies_opt] {
    sim::Trace trace;
    const double t_read = now_seconds();
    if (o->trace.empty() || o->format == "synthetic") {
      trace = sim::generate_synthetic(o->syn);
      if (!o->generate.empty()) {
        sim::write_bailian(trace, o->generate);
        std::fprintf(stderr, "wrote %zu requests to %s\n", trace.requests.size(), o->generate.c_str());
        return;
      }
    } else {
      trace = sim::read_trace(o->trace, o->format, o->fail_on_bad ? sim::OnBadLine::Fail : sim::OnBadLine::Skip,
                              o->azure_block_tokens, o->syn.seed);
    }
    KV_CHECK(!trace.requests.empty(), "{}: no requests", o->trace);
    const double read_seconds = now_seconds() - t_read;
    sim::assign_categories(trace, o->categories);
    if (!o->routing.empty() && policies_opt->count() == 0) o->policies = {"lru"};
    o->policies = prefix::expand_policy_names(o->policies);
    for (const auto& p : o->policies) prefix::make_policy(p, {});  // unknown names fail here, clearly
    auto shape = model_shapes().find(o->model_shape);
    KV_CHECK(shape != model_shapes().end(), "unknown model shape '{}'", o->model_shape);
    double kv_per_token = shape->second;
    std::string kv_source = o->model_shape;
    sim::SweepOptions s;
    s.policies = o->policies;
    s.base.hold_until_done = o->hold;
    s.base.latency.decode_tokens_per_second = o->decode_tps;
    bool assumed_cost = false;
    std::string cost_source;
    if (o->prefill_tps > 0) {
      s.base.latency.prefill_tokens_per_second = o->prefill_tps;
      cost_source = "--prefill-tps";
    } else if (!o->cost_from.empty() && is_gguf(o->cost_from)) {
      double measured_kv = 0;
      s.base.latency.prefill_tokens_per_second = measure_prefill(o->cost_from, o->threads, &measured_kv);
      cost_source = "measured now on " + o->cost_from;
      if (shape_opt->count() == 0) kv_per_token = measured_kv, kv_source = o->cost_from;
    } else if (!o->cost_from.empty()) {
      s.base.latency.prefill_tokens_per_second = prefill_from_bench(o->cost_from);
      cost_source = "kvwise bench " + o->cost_from;
    } else {
      assumed_cost = true;
      cost_source = "ASSUMED";
      std::fprintf(stderr,
                   "kvwise sim: warning: the prefill cost is assumed (%.0f tokens/s per instance), not measured; "
                   "latencies are only as real as that: pass --prefill-tps, or --cost-from MODEL.gguf (measured "
                   "now) or a `kvwise bench --json` file\n",
                   s.base.latency.prefill_tokens_per_second);
    }
    {
      double from = 0, until = 1;
      char extra = 0;
      KV_CHECK(std::sscanf(o->score_range.c_str(), "%lf:%lf%c", &from, &until, &extra) == 2 && from >= 0 &&
                   from < until && until <= 1,
               "--score-range {}: expected FROM:UNTIL with 0 <= FROM < UNTIL <= 1, e.g. 0.5:1", o->score_range);
      s.base.score_from = from;
      s.base.score_until = until;
    }
    kv_per_token *= PrefixBlockCodec::f16_ratio(o->block_dtype, o->block_group);
    s.base.latency.kv_bytes_per_token = kv_per_token;
    KV_CHECK(!o->routing.empty() || o->instances.size() <= 1,
             "--instances takes a list only with --routing (a cluster); without it, one number");
    s.base.latency.instances = !o->instances.empty() && o->instances[0] > 0
                                   ? o->instances[0]
                                   : instances_for_load(trace, s.base.latency.prefill_tokens_per_second);
    s.base.lower_tiers = parse_tiers(o->tiers);
    s.base.chain = !o->holes;
    s.base.policy_options.wa = o->wa;
    s.base.policy_options.hazard = o->hazard;
    s.base.policy_options.gdsf_position_cost = o->gdsf_position_cost;
    s.base.policy_options.s3fifo_small_ratio = o->s3fifo_small;
    s.base.policy_options.s3fifo_threshold = o->s3fifo_threshold;
    const double block_bytes = kv_per_token * trace.block_tokens;
    if (!o->capacity_bytes.empty()) {
      s.capacities.clear();
      for (double b : o->capacity_bytes) s.capacities.push_back(static_cast<size_t>(b / block_bytes));
    } else {
      s.capacities = o->capacity;
    }
    for (size_t c : s.capacities) KV_CHECK(c > 0, "capacity must be at least one block");
    s.threads = o->threads > 0 ? o->threads : default_threads();
    if (!o->routing.empty()) {  // a cluster: routing x instances x shared tier
      sim::ClusterSweepOptions c;
      c.routings = prefix::expand_routing_names(o->routing);
      c.instances = o->instances.empty() ? std::vector<int>{1, 2, 4, 8} : o->instances;
      for (int n : c.instances) KV_CHECK(n >= 1 && n <= 64, "--instances {}: a cluster has 1..64 instances", n);
      c.shared_tier_blocks = o->shared_tier_blocks;
      c.policies = o->policies;
      c.capacities = s.capacities;
      c.base.instance = s.base;
      c.base.instance.latency.instances = o->instance_slots;
      c.base.shared_bandwidth = o->shared_bandwidth;
      c.base.routing_options = o->routing_options;
      c.threads = s.threads;
      Progress progress("sim cluster", c.routings.size() * c.instances.size() * c.shared_tier_blocks.size() *
                                           c.policies.size() * c.capacities.size());
      const auto runs = sim::run_cluster_sweep(trace, c, [&](size_t d, size_t) { progress.update(d); });
      progress.finish();
      const std::string json = sim::cluster_to_json(trace, runs, c);
      if (!o->plot.empty()) {
        sim::write_cluster_plots(runs, o->plot, trace.format + " trace");
        std::ofstream f(o->plot + "/sim.json");
        f << json << "\n";
        KV_CHECK(f.good(), "{}/sim.json: cannot write", o->plot);
      }
      if (o->json) {
        std::puts(json.c_str());
        return;
      }
      std::printf(
          "trace %s (%s): %zu requests, %d tokens per block; per instance: prefill %.0f tokens/s (%s), "
          "block = %s; shared tier at %.2g bytes/s\n",
          trace.source.c_str(), trace.format.c_str(), trace.requests.size(), trace.block_tokens,
          s.base.latency.prefill_tokens_per_second, assumed_cost ? "ASSUMED" : cost_source.c_str(),
          human_bytes(block_bytes).c_str(), o->shared_bandwidth);
      std::fputs(sim::format_cluster_tables(runs).c_str(), stdout);
      return;
    }
    Progress progress("sim", s.policies.size() * s.capacities.size());
    const sim::SweepResult r = sim::run_sweep(trace, s, [&](size_t d, size_t) { progress.update(d); });
    progress.finish();
    if (!o->csv.empty()) {
      std::ofstream f(o->csv);
      KV_CHECK(f.good(), "{}: cannot create", o->csv);
      f << sim::to_csv(r);
    }
    auto j = nlohmann::json::parse(sim::to_json(trace, r, s));
    j["read_seconds"] = read_seconds;
    j["prefill_cost_assumed"] = assumed_cost;
    j["prefill_cost_source"] = cost_source;
    j["instances_sized_to_load"] = o->instances.empty();
    j["block_dtype"] = o->block_dtype;
    j["block_group"] = o->block_group;
    if (!o->plot.empty()) {
      sim::write_plots(r, s, o->plot, trace.format + " trace");
      std::ofstream f(o->plot + "/sim.json");
      f << j.dump(2) << "\n";
      KV_CHECK(f.good(), "{}/sim.json: cannot write", o->plot);
    }
    if (o->json) {
      std::puts(j.dump(2).c_str());
      return;
    }
    std::printf("trace %s (%s): %zu requests, %d tokens per block, %zu categories", trace.source.c_str(),
                trace.format.c_str(), trace.requests.size(), trace.block_tokens, trace.category_names.size());
    if (trace.skipped_lines) std::printf(", %zu malformed lines skipped", trace.skipped_lines);
    std::printf("\nlatency model: %d instance(s)%s, prefill %.0f tokens/s (%s), %.0f KV bytes/token (%s), block = %s\n",
                s.base.latency.instances, !o->instances.empty() ? "" : " (sized to the trace's load)",
                s.base.latency.prefill_tokens_per_second,
                assumed_cost ? "ASSUMED: pass --prefill-tps or --cost-from" : cost_source.c_str(), kv_per_token,
                kv_source.c_str(), human_bytes(block_bytes).c_str());
    std::fputs(sim::format_tables(r, s).c_str(), stdout);
    double replay_total = 0;
    for (const auto& x : r.runs) replay_total += x.wall_seconds;
    std::printf("\nread %.3f s; %zu replays, %.3f s each on average\n", read_seconds, r.runs.size(),
                replay_total / static_cast<double>(r.runs.size()));
  });
}

}  // namespace kvwise::cli
