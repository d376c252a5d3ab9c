// kvwise loadgen: replay a serving trace's arrivals and prefix structure against a live
// OpenAI-compatible server (kvwise serve or llama-server) and report throughput, latency
// percentiles and the cached prompt tokens; optionally write the scaled trace for `kvwise sim`.
#include <httplib.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/data_dir.h"
#include "base/error.h"
#include "base/progress.h"
#include "common.h"
#include "serve/loadgen.h"

namespace kvwise::cli {

namespace {

using json = nlohmann::json;

// Counters of kvwise's /metrics (summed over labels); empty for servers without them.
std::map<std::string, double> scrape(const LoadTarget& t) {
  std::map<std::string, double> m;
  httplib::Client c(t.host, t.port);
  c.set_read_timeout(10, 0);
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return m;
  size_t at = 0;
  while (at < r->body.size()) {
    const size_t end = std::min(r->body.find('\n', at), r->body.size());
    const std::string line = r->body.substr(at, end - at);
    at = end + 1;
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    std::string name = line.substr(0, sp);
    if (const size_t brace = name.find('{'); brace != std::string::npos) name.resize(brace);
    try {
      m[name] += std::stod(line.substr(sp + 1));
    } catch (const std::exception&) {
    }
  }
  return m;
}

// n_ctx and n_vocab from /v1/models (kvwise's "meta"; llama-server reports them there too).
void model_meta(const LoadTarget& t, int* ctx, int* vocab, std::string* id) {
  httplib::Client c(t.host, t.port);
  c.set_read_timeout(10, 0);
  httplib::Headers h;
  if (!t.api_key.empty()) h.emplace("Authorization", "Bearer " + t.api_key);
  auto r = c.Get("/v1/models", h);
  KV_CHECK(r, "cannot reach the server at {}:{} ({})", t.host, t.port, httplib::to_string(r.error()));
  KV_CHECK(r->status == 200, "GET /v1/models answered HTTP {}", r->status);
  try {
    const json j = json::parse(r->body);
    const json& m = j.at("data").at(0);
    *id = m.value("id", "default");
    if (m.contains("meta") && m["meta"].is_object()) {
      if (*ctx <= 0) *ctx = m["meta"].value("n_ctx", 0);
      if (*vocab <= 0) *vocab = m["meta"].value("n_vocab", 0);
    }
  } catch (const json::exception& e) {
    fail("GET /v1/models: unexpected answer: {}", e.what());
  }
}

}  // namespace

void add_loadgen(CLI::App& app) {
  struct Opts {
    std::string trace, format = "auto", data_dir, write_trace, json_out, csv, label;
    LoadScale scale;
    LoadTarget target;
    int ctx = 0;
    bool dry_run = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "loadgen", "replay a trace's arrivals and prefix structure against a live OpenAI-compatible server");
  cmd->add_option("--trace", o->trace,
                  "trace file (default: the Mooncake conversation trace under the data directory)");
  cmd->add_option("--format", o->format, "mooncake, bailian, azure or auto");
  cmd->add_option("--data-dir", o->data_dir, "shared data directory (default: $KVWISE_DATA or ../shared)");
  cmd->add_option("--host", o->target.host, "server address");
  cmd->add_option("--port", o->target.port, "server port")->check(CLI::Range(1, 65535));
  cmd->add_option("--api-key", o->target.api_key, "sent as Authorization: Bearer KEY");
  cmd->add_option("--concurrency", o->target.max_concurrency, "most requests in flight")->check(CLI::Range(1, 4096));
  cmd->add_option("--first", o->scale.first, "first trace request replayed");
  cmd->add_option("--requests", o->scale.count, "requests replayed")->check(CLI::Range(1, 10000000));
  cmd->add_option("--sample", o->scale.sample, "keep one conversation in N (divides the rate, keeps prefixes)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--time-scale", o->scale.time_scale, "replayed time = trace time x this (0.5: twice the rate)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--block-tokens", o->scale.block_tokens, "tokens of one trace block in the synthesized prompts")
      ->check(CLI::Range(1, 65536));
  cmd->add_option("--output-scale", o->scale.output_scale, "output tokens = trace output x this")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-output", o->scale.max_output, "most output tokens per request")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--ctx", o->ctx, "context of the server (default: from /v1/models)");
  cmd->add_option("--vocab", o->scale.vocab, "vocabulary size (default: from /v1/models)");
  cmd->add_option("--seed", o->scale.seed, "seed of the synthesized tokens");
  cmd->add_option("--write-trace", o->write_trace, "write the scaled trace (Bailian JSONL) for kvwise sim");
  cmd->add_option("--json", o->json_out, "write the report as JSON to this file");
  cmd->add_option("--csv", o->csv, "write one row per request to this file");
  cmd->add_flag("--dry-run", o->dry_run, "only write the scaled trace (needs --ctx and --vocab); send nothing");
  cmd->add_option("--label", o->label, "name of this run in the report (e.g. the server's policy)");
  cmd->callback([o] {
    const std::string path = o->trace.empty()
                                 ? resolve_data_dir(o->data_dir) + "/traces/mooncake-fast25/conversation_trace.jsonl"
                                 : o->trace;
    const sim::Trace trace = sim::read_trace(path, o->format == "auto" ? sim::detect_format(path) : o->format);
    int ctx = o->ctx;
    KV_CHECK(!o->dry_run || (!o->write_trace.empty() && ctx > 0 && o->scale.vocab > 0),
             "--dry-run needs --write-trace, --ctx and --vocab");
    if (!o->dry_run) model_meta(o->target, &ctx, &o->scale.vocab, &o->target.model);
    KV_CHECK(ctx > 0, "the server does not report its context; pass --ctx");
    KV_CHECK(o->scale.vocab > 0, "the server does not report its vocabulary size; pass --vocab");
    o->scale.ctx = ctx;
    const std::vector<LoadRequest> reqs = scale_trace(trace, o->scale);
    // What the scaling left out, said rather than silently sent less.
    const size_t considered = std::min(trace.requests.size() - o->scale.first, o->scale.count);
    if (considered < o->scale.count)
      std::fprintf(stderr, "kvwise loadgen: warning: --requests %zu but the trace has only %zu from --first %zu\n",
                   o->scale.count, considered, o->scale.first);
    if (reqs.size() < considered)
      std::fprintf(stderr, "kvwise loadgen: note: %zu of %zu trace requests are sent (%s)\n", reqs.size(), considered,
                   o->scale.sample > 1 ? "--sample keeps one conversation in N; empty requests are skipped"
                                       : "requests without blocks are skipped");
    size_t cut_ctx = 0;
    for (const auto& q : reqs)
      if (static_cast<long>(q.prompt.size()) + q.max_tokens >= ctx &&
          static_cast<double>(q.trace_input) * o->scale.block_tokens / trace.block_tokens > q.prompt.size())
        ++cut_ctx;
    if (cut_ctx > 0)
      std::fprintf(stderr,
                   "kvwise loadgen: warning: %zu prompts were cut to fit the server's context of %d tokens "
                   "(lower --block-tokens to keep their structure)\n",
                   cut_ctx, ctx);
    if (!o->write_trace.empty()) sim::write_bailian(scaled_trace(reqs, o->scale.block_tokens), o->write_trace);
    if (o->dry_run) return;
    long prompt = 0;
    for (const auto& q : reqs) prompt += static_cast<long>(q.prompt.size());
    std::fprintf(stderr, "kvwise loadgen: %zu requests over %.1f s, %.0f prompt tokens on average, server %s:%d\n",
                 reqs.size(), reqs.empty() ? 0.0 : reqs.back().time,
                 reqs.empty() ? 0.0 : static_cast<double>(prompt) / static_cast<double>(reqs.size()),
                 o->target.host.c_str(), o->target.port);
    const auto before = scrape(o->target);
    Progress bar("requests", reqs.size());
    const LoadReport rep = run_load(reqs, o->target, [&](size_t done, size_t) { bar.update(done); });
    bar.finish();
    auto after = scrape(o->target);
    const auto delta = [&](const std::string& name) {
      const auto b = before.find(name);
      return after[name] - (b == before.end() ? 0.0 : b->second);
    };
    json j = {{"label", o->label},
              {"trace", path},
              {"requests", rep.requests},
              {"failed", rep.failed},
              {"seconds", rep.seconds},
              {"prompt_tokens", rep.prompt_tokens},
              {"cached_tokens", rep.cached_tokens},
              {"completion_tokens", rep.completion_tokens},
              {"cached_token_ratio", rep.cached_token_ratio()},
              {"output_tokens_per_second", rep.output_tokens_per_second},
              {"requests_per_second", rep.requests_per_second},
              {"scale",
               {{"first", o->scale.first},
                {"time_scale", o->scale.time_scale},
                {"sample", o->scale.sample},
                {"requests", o->scale.count},
                {"block_tokens", o->scale.block_tokens},
                {"output_scale", o->scale.output_scale},
                {"max_output", o->scale.max_output},
                {"ctx", ctx}}}};
    const auto stats = [](const sim::LatencyStats& s) {
      return json{{"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}};
    };
    j["ttft"] = stats(rep.ttft);
    j["itl"] = stats(rep.itl);
    j["e2e"] = stats(rep.e2e);
    j["lateness"] = stats(rep.lateness);
    if (after.count("kvwise_prefix_lookup_blocks_total")) {
      const double blocks = delta("kvwise_prefix_lookup_blocks_total");
      j["server"] = {{"lookup_blocks", blocks},
                     {"block_hits", delta("kvwise_prefix_hits_total")},
                     {"block_hit_ratio", blocks > 0 ? delta("kvwise_prefix_hits_total") / blocks : 0},
                     {"evictions", delta("kvwise_prefix_evictions_total")},
                     {"compression_seconds", delta("kvwise_compression_seconds_total")}};
    }
    std::vector<std::string> errors;
    for (const auto& r : rep.outcomes)
      if (!r.ok && errors.size() < 5) errors.push_back(r.error);
    j["errors"] = errors;
    std::printf("%-22s %s\n", "run", o->label.empty() ? "-" : o->label.c_str());
    std::printf("%-22s %zu (%zu failed) in %.1f s\n", "requests", rep.requests, rep.failed, rep.seconds);
    std::printf("%-22s %.1f tokens/s, %.2f requests/s\n", "throughput", rep.output_tokens_per_second,
                rep.requests_per_second);
    std::printf("%-22s p50 %.1f ms  p90 %.1f ms  p99 %.1f ms\n", "TTFT", rep.ttft.p50 * 1e3, rep.ttft.p90 * 1e3,
                rep.ttft.p99 * 1e3);
    std::printf("%-22s p50 %.1f ms  p90 %.1f ms  p99 %.1f ms\n", "inter-token latency", rep.itl.p50 * 1e3,
                rep.itl.p90 * 1e3, rep.itl.p99 * 1e3);
    std::printf("%-22s %.1f%% of %ld prompt tokens\n", "cached prompt tokens", 100 * rep.cached_token_ratio(),
                rep.prompt_tokens);
    if (j.contains("server"))
      std::printf("%-22s %.1f%% (%.0f of %.0f blocks)\n", "server block hits",
                  100 * j["server"]["block_hit_ratio"].get<double>(), j["server"]["block_hits"].get<double>(),
                  j["server"]["lookup_blocks"].get<double>());
    for (const auto& e : errors) std::printf("error: %s\n", e.c_str());
    if (!o->json_out.empty()) {
      std::ofstream f(o->json_out);
      f << j.dump(2) << "\n";
      KV_CHECK(f.good(), "{}: write failed", o->json_out);
    }
    if (!o->csv.empty()) {
      std::ofstream f(o->csv);
      f << "index,scheduled,sent,ok,status,prompt_tokens,cached_tokens,completion_tokens,ttft,e2e\n";
      for (size_t i = 0; i < rep.outcomes.size(); ++i) {
        const auto& r = rep.outcomes[i];
        f << i << ',' << reqs[i].time << ',' << r.sent << ',' << r.ok << ',' << r.status << ',' << r.prompt_tokens
          << ',' << r.cached_tokens << ',' << r.completion_tokens << ',' << r.ttft << ',' << r.e2e << '\n';
      }
      KV_CHECK(f.good(), "{}: write failed", o->csv);
    }
    KV_CHECK(rep.failed == 0, "{} of {} requests failed", rep.failed, rep.requests);
  });
}

}  // namespace kvwise::cli
