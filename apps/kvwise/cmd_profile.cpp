// kvwise profile: BaKlaVa's one-time profiling. Measures per-KV-head and per-layer importance on the
// first half of a text, then picks the allocation exponent theta by the teacher-forced NLL of the
// compressed cache on the second half (theta = 0 is the uniform allocation, so the search can only
// match or beat it on the validation text), and writes the budget file the baklava policy reads.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/data_dir.h"
#include "base/error.h"
#include "base/progress.h"
#include "common.h"
#include "compress/baklava.h"
#include "compress/duo_profile.h"
#include "eval/fidelity.h"
#include "eval/niah.h"

namespace kvwise::cli {

void add_profile(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string file, out;
    std::string budget = "0.25";
    std::string selector = "snapkv";
    std::vector<double> thetas = {0.0, 0.5, 1.0, 2.0, 4.0};
    int segment = 0;
    int segments = 4;
    bool json = false;
    std::string method = "baklava";
    int sinks = 4, recent = 32, queries = 64, cases = 8;
    std::string haystack;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("profile", "BaKlaVa: profile per-head KV importance once and write a budget file");
  add_model_options(*cmd, o->m);
  cmd->add_option("-f,--file", o->file, "profiling + validation text (default: the TinyStories sample)");
  cmd->add_option("-o,--output", o->out, "budget file to write")->required();
  cmd->add_option("--budget", o->budget, "budget the allocation is tuned for");
  cmd->add_option("--selector", o->selector, "per-head token selector used with the budgets (snapkv, sagekv, h2o)");
  cmd->add_option("--thetas", o->thetas, "allocation exponents searched")->delimiter(',');
  cmd->add_option("--segment", o->segment, "tokens per profiling segment (default: 3/4 of the context)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--segments", o->segments, "profiling and validation segments")->check(CLI::Range(1, 1000));
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->add_option("--method", o->method,
                  "baklava (head budgets, tuned theta) or duoattention (retrieval vs streaming heads)")
      ->check(CLI::IsMember({"baklava", "duoattention"}));
  cmd->add_option("--sinks", o->sinks, "duoattention: sink tokens of a streaming head")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--recent", o->recent, "duoattention: recent tokens of a streaming head")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--queries", o->queries, "duoattention: last prompt queries measured per case")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--cases", o->cases, "duoattention: needle-retrieval calibration prompts")
      ->check(CLI::Range(1, 10000));
  cmd->add_option("--haystack", o->haystack, "duoattention: essays for the prompts (default: the data dir's)");
  cmd->callback([o] {
    if (o->method == "duoattention") {
      // Calibration on needle retrieval in essays (seeded apart from the evaluations' cases), at 3/4
      // of the context and spread depths: each head's streaming deviation on the question's queries.
      auto model = Model::load(resolve_model_path(o->m));
      Engine engine(*model, engine_options(o->m));
      NiahOptions no;
      no.task = "needle";
      no.seed = 7919;
      no.haystack_dir =
          o->haystack.empty() ? resolve_data_dir(o->m.data_dir) + "/data/paul_graham_essays" : o->haystack;
      NiahBuilder builder(model->tokenizer(), no);
      auto profiler = std::make_shared<DuoProfiler>(model->config(), o->sinks, o->recent, o->queries);
      Progress progress("duo profile", static_cast<size_t>(o->cases));
      for (int i = 0; i < o->cases; ++i) {
        const NiahCase c = builder.build(engine.ctx() * 3 / 4, (i + 0.5) / o->cases, i);
        const SeqId seq = engine.new_sequence();
        engine.observe(seq, profiler);
        profiler->begin_prompt(static_cast<int32_t>(c.prompt.size()));
        engine.prefill(seq, c.prompt);
        engine.free_sequence(seq);
        progress.update(static_cast<size_t>(i + 1));
      }
      progress.finish();
      const DuoProfile prof = profiler->profile(model->file().path());
      prof.save(o->out);
      if (o->json) {
        std::puts(nlohmann::json({{"output", o->out}, {"scores", prof.scores}, {"rows", prof.rows}}).dump(2).c_str());
        return;
      }
      std::printf("streaming deviation per KV head (larger: a retrieval head), %ld queries:\n", prof.rows);
      for (int l = 0; l < prof.n_layers; ++l) {
        std::printf("  layer %d:", l);
        for (double v : prof.scores[static_cast<size_t>(l)]) std::printf(" %.4f", v);
        std::printf("\n");
      }
      std::printf("wrote %s\n", o->out.c_str());
      return;
    }
    const Budget budget = Budget::parse(o->budget);
    KV_CHECK(!o->thetas.empty(), "--thetas is empty");
    for (double t : o->thetas) KV_CHECK(t >= 0 && t <= 100, "theta {} is outside [0, 100]", t);
    const std::string file = o->file.empty() ? default_corpus(o->m) : o->file;
    auto model = Model::load(resolve_model_path(o->m));
    Engine engine(*model, engine_options(o->m));
    const Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> text = tok.encode(read_corpus(file), false);
    const size_t half = text.size() / 2;
    const std::vector<int32_t> profile_text(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(half));
    const std::vector<int32_t> valid_text(text.begin() + static_cast<std::ptrdiff_t>(half), text.end());
    const int32_t bos = tok.bos() >= 0 ? tok.bos() : text.at(0);

    // 1. Importance statistics over the profiling half.
    FidelityOptions fo;
    fo.prefix = o->segment > 0 ? o->segment : engine.ctx() * 3 / 4;
    fo.continuation = std::max(1, std::min(64, engine.ctx() - fo.prefix));
    fo.segments = o->segments;
    auto profiler = std::make_shared<BaklavaProfiler>(model->config());
    for (const auto& seg : fidelity_segments(profile_text, bos, fo)) {
      const SeqId seq = engine.new_sequence();
      engine.observe(seq, profiler);
      engine.prefill(seq, std::span<const int32_t>(seg.data(), static_cast<size_t>(fo.prefix)));
      engine.free_sequence(seq);
    }
    BaklavaProfile prof = profiler->profile(model->file().path(), 0.0);
    prof.save(o->out);

    // 2. Theta search on the validation half.
    FidelityRunner runner(engine, fidelity_segments(valid_text, bos, fo), fo);
    nlohmann::json j;
    double best_nll = 1e300, best_theta = 0;
    Progress progress("profile", o->thetas.size());
    for (size_t i = 0; i < o->thetas.size(); ++i) {
      const double t = o->thetas[i];
      const auto policy = make_policy(fmt::format("baklava({},profile={},theta={})", o->selector, o->out, t), budget);
      const FidelityCell c = runner.run(policy);
      j["search"].push_back({{"theta", t}, {"nll", c.nll}, {"nll_full", c.nll_full}, {"mean_kl", c.mean_kl}});
      if (c.nll < best_nll) best_nll = c.nll, best_theta = t;
      progress.update(i + 1);
    }
    progress.finish();
    prof.set_theta(best_theta);
    prof.save(o->out);
    j["output"] = o->out;
    j["theta"] = best_theta;
    j["budget"] = budget.to_string();
    j["profiled_tokens"] = prof.tokens;
    j["layer_importance"] = prof.layer_importance;
    j["weights"] = prof.weights;
    if (o->json) {
      std::puts(j.dump(2).c_str());
      return;
    }
    std::printf("profiled %d tokens; validation NLL of %s at budget %s per theta:\n", prof.tokens, o->selector.c_str(),
                budget.to_string().c_str());
    for (const auto& r : j["search"])
      std::printf("  theta %-4g  NLL %.4f (full %.4f)  KL %.4f\n", r["theta"].get<double>(), r["nll"].get<double>(),
                  r["nll_full"].get<double>(), r["mean_kl"].get<double>());
    std::printf("wrote %s with theta %g\n", o->out.c_str(), best_theta);
  });
}

}  // namespace kvwise::cli
