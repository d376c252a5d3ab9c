// kvwise demo: what kvwise is for, in under a minute on the bundled model and a trace. Part one
// answers one long passkey prompt under several KV policies (the answer, whether it is right, hot KV
// bytes, decode speed); part two replays a serving trace through the prefix cache under each eviction
// policy next to the offline optimum. A table on the terminal, JSON, plots and an HTML report.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/data_dir.h"
#include "base/error.h"
#include "base/progress.h"
#include "base/svg_plot.h"
#include "base/timer.h"
#include "common.h"
#include "compress/policy_spec.h"
#include "eval/niah.h"
#include "html_report.h"
#include "prefix/eviction_policy.h"
#include "sim/categories.h"
#include "sim/sweep.h"
#include "sim/synthetic.h"

namespace kvwise::cli {

namespace {

using json = nlohmann::json;

struct DemoOptions {
  ModelOptions m;
  std::string out = "kvwise-demo";
  std::vector<std::string> policies = {"full", "streamingllm", "snapkv", "pyramidkv",
                                       "cake", "gate",         "mikv",   "kv-int4"};
  std::string budget = "25%";
  int cases = 6;
  std::string trace;
  std::vector<size_t> capacities = {500, 1000, 2000, 5000, 10000};
  std::vector<std::string> eviction = {"all"};  // every registered online policy and belady
};

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(0, 1);
  return s.size() > 14 ? s.substr(0, 14) + "..." : s;
}

// Part one: the same passkey prompts under each policy.
json passkey_part(const DemoOptions& o, Model& model, Engine& engine) {
  NiahOptions no;
  no.task = "passkey";
  no.answer_tokens = 8;
  no.answer_prefix = " ";  // the answer's space piece in the prompt: prompt-time selectors see the right query
  const int length = std::min(1014, engine.ctx() - no.answer_tokens - 2);
  KV_CHECK(length >= 128, "the model's context ({} tokens) is too short for the passkey demo", engine.ctx());
  NiahBuilder builder(model.tokenizer(), no);
  std::vector<NiahCase> cases;
  for (int i = 0; i < o.cases; ++i)
    cases.push_back(builder.build(length, o.cases == 1 ? 0.5 : static_cast<double>(i) / (o.cases - 1), i));
  const size_t middle = cases.size() / 2;
  std::printf("\n1. Inside a request: %d passkey prompts of %d tokens (key at depths 0..100%%), greedy answer\n",
              o.cases, length);
  std::printf("   model %s; budget %s of the prompt per KV head where a policy evicts\n\n",
              std::filesystem::path(model.file().path()).filename().c_str(), o.budget.c_str());
  const std::string answer_head =
      fmt::format("answer, key {} at {:.0f}%", cases[middle].answer, 100 * cases[middle].depth);
  std::vector<std::vector<std::string>> table;
  json rows = json::array();
  HeatmapSpec hm{"passkey found (1) or not (0), " + std::to_string(length) + "-token prompts",
                 "key depth",
                 "policy",
                 {},
                 {},
                 {},
                 0,
                 1};
  for (const auto& c : cases) hm.x_ticks.push_back(fmt::format("{:.0f}%", c.depth * 100));
  PlotSpec kv_plot{"passkey accuracy vs hot KV", "hot KV bytes (% of the full cache)", "accuracy", false, true, {}};
  size_t full_bytes = 0;
  Progress progress("passkey", o.policies.size() * cases.size());
  size_t done = 0;
  for (const std::string& spec : o.policies) {
    PolicyOptions po{spec, ""};
    const bool budgeted = make_policy(spec, Budget{})->reads_budget();
    if (budgeted) po.budget = o.budget;
    const auto policy = resolve_policy(po);
    int correct = 0;
    size_t bytes = 0;
    double decode_s = 0;
    int steps = 0;
    std::string answer;
    std::vector<double> row;
    for (size_t i = 0; i < cases.size(); ++i) {
      const NiahOutcome r = run_niah_case(engine, cases[i], policy, no.answer_tokens);
      correct += r.correct;
      bytes += r.hot_bytes;
      decode_s += r.decode_seconds;
      steps += r.decode_steps;
      row.push_back(r.correct ? 1 : 0);
      if (i == middle) answer = r.output;
      progress.update(++done);
    }
    bytes /= cases.size();
    if (policy->full) full_bytes = bytes;
    const double share = full_bytes > 0 ? static_cast<double>(bytes) / static_cast<double>(full_bytes) : 1.0;
    const double tps = decode_s > 0 ? steps / decode_s : 0;
    const std::string label = budgeted ? spec + " " + o.budget : spec;
    table.push_back({label, one_line(answer), answer.find(cases[middle].answer) != std::string::npos ? "yes" : "no",
                     fmt::format("{}/{}", correct, cases.size()), human_bytes(static_cast<double>(bytes)),
                     fmt::format("{:.0f}%", 100 * share), fmt::format("{:.0f} t/s", tps)});
    hm.y_ticks.push_back(label);
    hm.values.push_back(row);
    kv_plot.series.push_back({label, {100 * share}, {static_cast<double>(correct) / cases.size()}, false});
    rows.push_back({{"policy", label},
                    {"answer_at_middle_depth", answer},
                    {"middle_key", cases[middle].answer},
                    {"correct", correct},
                    {"cases", cases.size()},
                    {"accuracy", static_cast<double>(correct) / cases.size()},
                    {"hot_kv_bytes", bytes},
                    {"hot_kv_share_of_full", share},
                    {"decode_tokens_per_second", tps}});
  }
  progress.finish();
  std::fputs(markdown_table({"policy", answer_head, "right", "keys found", "hot KV", "of full", "decode"}, table,
                            {false, false, false, true, true, true, true})
                 .c_str(),
             stdout);
  write_heatmap_svg(hm, o.out + "/passkey_by_depth.svg");
  write_svg(kv_plot, o.out + "/passkey_vs_kv.svg");
  std::printf(
      "   eviction keeps %s of the tokens and loses the keys it evicted; low precision (kv-int4, mikv) keeps\n"
      "   every token in fewer bits; the learned gate decides per token as it arrives.\n",
      o.budget.c_str());
  return {{"model", model.file().path()},
          {"prompt_tokens", length},
          {"budget", o.budget},
          {"answer_prefix", no.answer_prefix},
          {"rows", rows}};
}

// Part two: the prefix cache across requests, every eviction policy next to Belady.
json prefix_part(const DemoOptions& o) {
  sim::Trace trace;
  const std::string mooncake = resolve_data_dir(o.m.data_dir) + "/traces/mooncake-fast25/conversation_trace.jsonl";
  std::error_code ec;
  std::string source;
  if (!o.trace.empty()) {
    trace = sim::read_trace(o.trace, "auto");
    source = o.trace;
  } else if (std::filesystem::exists(mooncake, ec)) {
    trace = sim::read_trace(mooncake, "mooncake");
    source = "the Mooncake conversation trace";
  } else {
    trace = sim::generate_synthetic({});
    source = "the generated Bailian-schema workload (no Mooncake trace under the data directory)";
  }
  KV_CHECK(!trace.requests.empty(), "{}: no requests", source);
  sim::assign_categories(trace, "auto");
  sim::SweepOptions s;
  s.policies = o.eviction;
  s.capacities = o.capacities;
  s.threads = o.m.threads > 0 ? o.m.threads : default_threads();
  Progress progress("prefix cache", s.policies.size() * s.capacities.size());
  const sim::SweepResult r = sim::run_sweep(trace, s, [&](size_t d, size_t) { progress.update(d); });
  progress.finish();
  std::printf("\n2. Across requests: %zu requests of %s replayed through the prefix cache\n", trace.requests.size(),
              source.c_str());
  if (source.rfind("the Mooncake", 0) == 0) std::printf("   (%s)\n", mooncake.c_str());
  std::printf(
      "   block hit ratio per eviction policy and capacity (blocks of %d tokens); belady = the offline optimum\n\n",
      trace.block_tokens);
  std::vector<std::string> header = {"policy"};
  for (size_t c : s.capacities) header.push_back(fmt::format("{} blocks", c));
  header.push_back("gap closed");
  std::vector<std::vector<std::string>> table;
  const size_t mid = s.capacities.size() / 2;
  const auto hit = [&](size_t ci, const std::string& p) {
    for (const auto& run : r.runs)
      if (run.capacity_blocks == s.capacities[ci] && run.policy == p) return run.block_hit_ratio();
    return -1.0;
  };
  json rows = json::array();
  for (const std::string& p : s.policies) {
    json row = {{"policy", p}};
    std::vector<std::string> cells = {p};
    for (size_t ci = 0; ci < s.capacities.size(); ++ci) {
      cells.push_back(fmt::format("{:.2f}%", 100 * hit(ci, p)));
      row["hit_ratio_at_" + std::to_string(s.capacities[ci])] = hit(ci, p);
    }
    const double lru = hit(mid, "lru"), opt = hit(mid, "belady");
    const double closed = lru >= 0 && opt > lru ? (hit(mid, p) - lru) / (opt - lru) : 0;
    cells.push_back(fmt::format("{:.0f}%", 100 * closed));
    row["gap_closed_at_" + std::to_string(s.capacities[mid])] = closed;
    rows.push_back(row);
    table.push_back(cells);
  }
  std::vector<std::string> inf = {"infinite"};
  for (size_t ci = 0; ci < s.capacities.size(); ++ci) inf.push_back(fmt::format("{:.2f}%", 100 * r.infinite_hit_ratio));
  table.push_back(inf);
  std::vector<bool> right(header.size(), true);
  right[0] = false;
  std::fputs(markdown_table(header, table, right).c_str(), stdout);
  std::printf("   gap closed: the share of the LRU -> Belady hit-ratio gap a policy closes at %zu blocks\n",
              s.capacities[mid]);
  sim::write_plots(r, s, o.out, "prefix cache, " + trace.format + " trace");
  // The demo's latency model is not calibrated (no --prefill-tps): its queueing plot would mislead.
  std::filesystem::remove(o.out + "/qttft.svg", ec);
  return {{"trace", source},
          {"requests", trace.requests.size()},
          {"block_tokens", trace.block_tokens},
          {"infinite_capacity_hit_ratio", r.infinite_hit_ratio},
          {"rows", rows}};
}

}  // namespace

void add_demo(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  CLI::App* cmd =
      app.add_subcommand("demo",
                         "what kvwise is for, in a minute: KV policies on one long prompt, eviction policies "
                         "on a serving trace; a table, plots and an HTML report");
  add_model_options(*cmd, o->m);
  cmd->add_option("--out", o->out, "directory for demo.json, the plots and report.html");
  cmd->add_option("--policies", o->policies, "KV policies of part one, comma separated")->delimiter(',');
  cmd->add_option("--budget", o->budget, "budget of the evicting policies (a share of the prompt, or tokens)");
  cmd->add_option("--cases", o->cases, "passkey prompts per policy (key depths spread over the prompt)")
      ->check(CLI::Range(1, 100));
  cmd->add_option("--trace", o->trace, "trace of part two (default: the Mooncake conversation trace, else generated)");
  cmd->add_option("--capacity", o->capacities, "prefix-cache capacities in blocks, comma separated")
      ->delimiter(',')
      ->check(CLI::Range(1.0, 1e12));
  cmd->add_option("--eviction", o->eviction,
                  "eviction policies of part two, comma separated (all: every registered policy)")
      ->delimiter(',');
  cmd->callback([o] {
    const double t0 = now_seconds();
    Budget::parse(o->budget);
    o->eviction = prefix::expand_policy_names(o->eviction);
    for (const auto& p : o->eviction) prefix::make_policy(p, {});
    std::filesystem::create_directories(o->out);
    auto model = Model::load(resolve_model_path(o->m));
    Engine engine(*model, engine_options(o->m));
    std::printf(
        "kvwise demo: an inference engine whose KV cache is managed by policy, inside one request and "
        "across requests\n");
    json j = {{"kind", "kvwise-demo"}, {"threads", engine.options().threads}};
    j["passkey"] = passkey_part(*o, *model, engine);
    j["prefix_cache"] = prefix_part(*o);
    j["seconds"] = now_seconds() - t0;
    const std::string path = o->out + "/demo.json";
    std::ofstream(path) << j.dump(2) << "\n";
    const std::string report = write_html_report(o->out, "kvwise demo");
    std::printf("\nresults: %s; plots and the report: %s (%.0f s)\n", path.c_str(), report.c_str(), now_seconds() - t0);
  });
}

}  // namespace kvwise::cli
