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
    std::string file;
    std::string separator = "<|endoftext|>";
    bool json = false;
    bool truncate = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("perplexity", "mean NLL and perplexity of a model on a text file");
  add_model_options(*cmd, o->m);
  cmd->add_option("-f,--file", o->file, "text file")->required();
  cmd->add_option("--separator", o->separator, "a line equal to this separates documents (each starts with BOS)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->add_flag("--truncate", o->truncate, "score only the first context window of each document");
  cmd->callback([o] {
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
    PerplexityResult r = perplexity(engine, docs, o->truncate, [&](size_t done) { progress.update(done); });
    progress.finish();
    const double secs = now_seconds() - t0;
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
                          {"truncate", o->truncate}};
      std::puts(j.dump(2).c_str());
    } else {
      std::printf("documents %zu  predicted tokens %lld  mean NLL %.4f nats/token  perplexity %.4f  (%.0f tok/s)\n",
                  docs.size(), static_cast<long long>(r.tokens), r.mean_nll(), std::exp(r.mean_nll()),
                  static_cast<double>(r.tokens) / secs);
    }
  });
}

}  // namespace kvwise::cli
