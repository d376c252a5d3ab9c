#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/progress.h"
#include "base/timer.h"
#include "common.h"
#include "eval/perplexity.h"

namespace kvwise::cli {

void add_perplexity(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    PolicyOptions pol;
    double prompt_share = 0.5;
    std::string file;
    std::string separator = "<|endoftext|>";
    bool json = false;
    bool truncate = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("perplexity", "mean NLL and perplexity of a model on a text file");
  add_model_options(*cmd, o->m);
  add_policy_options(*cmd, o->pol);
  cmd->add_option("--kv-prompt-share", o->prompt_share,
                  "with --kv-policy: share of each window prefilled and compressed; the rest is decoded token by token")
      ->check(CLI::Range(0.001, 1.0));
  cmd->add_option("-f,--file", o->file, "text file")->required();
  cmd->add_option("--separator", o->separator, "a line equal to this separates documents (each starts with BOS)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->add_flag("--truncate", o->truncate, "score only the first context window of each document");
  cmd->callback([o] {
    const auto policy = resolve_policy(o->pol);
    auto model = Model::load(resolve_model_path(o->m));
    Engine engine(*model, engine_options(o->m));
    std::ifstream in(o->file);
    KV_CHECK(in.good(), "{}: cannot open", o->file);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::vector<std::string> docs = split_documents(ss.str(), o->separator);
    KV_CHECK(!docs.empty(), "{}: no text", o->file);
    const double t0 = now_seconds();
    Progress progress("perplexity", docs.size());
    PerplexityResult r =
        perplexity(engine, docs, {o->truncate, policy, o->prompt_share}, [&](size_t done) { progress.update(done); });
    progress.finish();
    const double secs = now_seconds() - t0;
    KV_CHECK(r.tokens > 0, "no window could be scored: {}", r.skip_reason);
    if (r.skipped_windows > 0)
      std::fprintf(stderr,
                   "kvwise perplexity: skipped %lld window(s) of %zu document(s), too short for the budget: %s\n",
                   static_cast<long long>(r.skipped_windows), r.skipped_documents.size(), r.skip_reason.c_str());
    if (o->json) {
      nlohmann::json j = {{"model", model->file().path()},
                          {"file", o->file},
                          {"documents", docs.size()},
                          {"tokens", r.tokens},
                          {"mean_nll", r.mean_nll()},
                          {"perplexity", std::exp(r.mean_nll())},
                          {"seconds", secs},
                          {"tokens_per_second", r.tokens / secs},
                          {"ctx", engine.ctx()},
                          {"truncate", o->truncate},
                          {"kv_policy", policy->spec},
                          {"kv_budget", policy->budget.to_string()},
                          {"kv_prompt_share", o->prompt_share},
                          {"skipped_windows", r.skipped_windows},
                          {"skipped_documents", r.skipped_documents},
                          {"skip_reason", r.skip_reason}};
      std::puts(j.dump(2).c_str());
    } else {
      std::printf("documents %zu  predicted tokens %lld  mean NLL %.4f nats/token  perplexity %.4f  (%.0f tok/s)\n",
                  docs.size(), static_cast<long long>(r.tokens), r.mean_nll(), std::exp(r.mean_nll()),
                  static_cast<double>(r.tokens) / secs);
      if (!policy->full)
        std::printf(
            "KV policy %s at budget %s: first %.0f%% of each window prefilled and compressed, the rest decoded\n",
            policy->spec.c_str(), policy->budget.to_string().c_str(), 100 * o->prompt_share);
    }
  });
}

}  // namespace kvwise::cli
