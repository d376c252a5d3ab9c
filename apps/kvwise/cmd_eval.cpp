// kvwise eval fidelity | niah | attention: how much a KV policy changes what the model computes.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "base/data_dir.h"
#include "base/error.h"
#include "base/progress.h"
#include "base/svg_plot.h"
#include "common.h"
#include "compress/policy_spec.h"
#include "eval/attention_error.h"
#include "eval/fidelity.h"
#include "eval/niah.h"
#include "eval_sweep.h"
#include "serve/prefix_fidelity.h"

namespace kvwise::cli {

namespace {

// Line plots of one metric against the budget, a series per policy (ratio budgets only).
void plot_metric(const std::string& path, const std::string& title, const std::string& y_label,
                 const std::vector<std::shared_ptr<const KvPolicy>>& grid, const std::vector<double>& metric) {
  PlotSpec spec{title, "KV budget (share of the prompt)", y_label, true, true, {}};
  for (size_t i = 0; i < grid.size(); ++i) {
    if (!grid[i]->reads_budget() || grid[i]->budget.tokens > 0) continue;
    const std::string label = short_label(grid[i]->spec);
    auto it =
        std::find_if(spec.series.begin(), spec.series.end(), [&](const PlotSeries& s) { return s.name == label; });
    if (it == spec.series.end()) {
      spec.series.push_back({label, {}, {}, grid[i]->name == "random"});
      it = spec.series.end() - 1;
    }
    it->x.push_back(grid[i]->budget.ratio);
    it->y.push_back(metric[i]);
  }
  // Policies that keep every token (uniform quantisation, SpeCache) have no budget: a flat line.
  double lo = 1, hi = 0;
  for (const auto& p : grid)
    if (p->reads_budget() && p->budget.tokens == 0)
      lo = std::min(lo, p->budget.ratio), hi = std::max(hi, p->budget.ratio);
  for (size_t i = 0; i < grid.size() && lo <= hi; ++i)
    if (!grid[i]->full && !grid[i]->reads_budget())
      spec.series.push_back({short_label(grid[i]->spec) + " (all tokens)", {lo, hi}, {metric[i], metric[i]}, false});
  write_svg(spec, path);
}

// What the teacher-forced evaluations ran on, for their JSON.
nlohmann::json segments_json(const Model& model, const std::string& file, const FidelityOptions& f) {
  return {{"model", model.file().path()},
          {"file", file},
          {"prefix", f.prefix},
          {"continuation", f.continuation},
          {"segments", f.segments}};
}

void add_fidelity(CLI::App& eval) {
  struct Opts {
    ModelOptions m;
    SweepOptions sweep;
    std::string file;
    FidelityOptions f;
    bool query_agnostic = false;
    int question = 32;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = eval.add_subcommand("fidelity", "KL divergence, top-1 agreement and NLL of compressed vs full KV");
  add_model_options(*cmd, o->m);
  add_sweep_options(*cmd, o->sweep);
  cmd->add_option("-f,--file", o->file, "text (default: the TinyStories sample under the data directory)");
  cmd->add_option("--prefix", o->f.prefix, "prompt tokens prefilled and compressed (BOS included)")
      ->check(CLI::Range(2, 1 << 24));
  cmd->add_option("--continuation", o->f.continuation, "teacher-forced tokens after the prefix")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--segments", o->f.segments, "text segments averaged")->check(CLI::Range(1, 10000));
  cmd->add_flag("--query-agnostic", o->query_agnostic,
                "compress the prefix without its last --question tokens, then prefill them into the compressed cache");
  cmd->add_option("--question", o->question, "tokens of the prefix that stand for the question (--query-agnostic)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->callback([o] {
    if (o->query_agnostic) o->f.question = o->question;
    const auto grid = policy_grid(o->sweep);
    prepare_plot_dir(o->sweep.plot_dir);
    const std::string file = o->file.empty() ? default_corpus(o->m) : o->file;
    auto model = Model::load(resolve_model_path(o->m));
    Engine engine(*model, engine_options(o->m));
    const Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> text = tok.encode(read_corpus(file), false);
    FidelityRunner runner(engine, fidelity_segments(text, tok.bos() >= 0 ? tok.bos() : text[0], o->f), o->f);
    std::vector<FidelityCell> cells;
    Progress progress("fidelity", grid.size());
    for (const auto& p : grid) {
      cells.push_back(runner.run(p));
      progress.update(cells.size());
    }
    progress.finish();
    nlohmann::json j = segments_json(*model, file, o->f);
    j["threads"] = engine.options().threads;
    j["protocol"] = o->query_agnostic ? "query-agnostic" : "query-aware";
    j["question"] = o->f.question;
    std::string csv =
        "policy,budget,mean_kl,top1_agreement,nll,nll_full,nll_delta,hot_bytes,hot_bytes_end,full_bytes,compress_"
        "seconds\n";
    for (const FidelityCell& c : cells) {
      j["results"].push_back({{"policy", c.policy},
                              {"budget", c.budget},
                              {"mean_kl", c.mean_kl},
                              {"top1_agreement", c.top1_agreement},
                              {"nll", c.nll},
                              {"nll_full", c.nll_full},
                              {"nll_delta", c.nll_delta()},
                              {"hot_bytes", c.hot_bytes},
                              {"hot_bytes_end", c.hot_bytes_end},
                              {"full_bytes", c.full_bytes},
                              {"bits_per_value", 16.0 * c.hot_bytes / std::max(1.0, c.full_bytes)},
                              {"compress_seconds", c.compress_seconds},
                              {"tokens", c.tokens}});
      csv += fmt::format("{},{},{:.6g},{:.4f},{:.5f},{:.5f},{:.5f},{:.0f},{:.0f},{:.0f},{:.6f}\n", '"' + c.policy + '"',
                         c.budget, c.mean_kl, c.top1_agreement, c.nll, c.nll_full, c.nll_delta(), c.hot_bytes,
                         c.hot_bytes_end, c.full_bytes, c.compress_seconds);
    }
    if (!o->sweep.plot_dir.empty()) {
      const std::string& d = o->sweep.plot_dir;
      std::vector<double> kl, top1;
      for (const auto& c : cells) kl.push_back(c.mean_kl), top1.push_back(c.top1_agreement);
      plot_metric(d + "/fidelity_kl.svg", "Mean KL(full || policy) per token", "nats", grid, kl);
      plot_metric(d + "/fidelity_top1.svg", "Top-1 agreement with the full cache", "share of tokens", grid, top1);
      write_file(d + "/fidelity.csv", csv);
      write_file(d + "/fidelity.json", j.dump(2) + "\n");
    }
    if (o->sweep.json) {
      std::puts(j.dump(2).c_str());
      return;
    }
    std::printf("%s: %d segments x (%d prefix + %d teacher-forced tokens), %s, full-cache NLL %.4f\n\n",
                model->file().path().c_str(), o->f.segments, o->f.prefix, o->f.continuation,
                o->query_agnostic
                    ? fmt::format("query-agnostic (the last {} prefix tokens after compression)", o->f.question).c_str()
                    : "query-aware",
                cells.empty() ? 0.0 : cells[0].nll_full);
    // Memory as effective bits per KV value: the hot bytes against the full F16 cache's, which is 16.
    std::printf(
        "| policy | budget | mean KL | top-1 agree | ΔNLL | hot KV after prefill | bits/value | compression |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const FidelityCell& c : cells)
      std::printf("| %s | %s | %.4f | %.3f | %+.4f | %s (%.0f%%) | %.1f | %.2f ms |\n", c.policy.c_str(),
                  c.budget.c_str(), c.mean_kl, c.top1_agreement, c.nll_delta(), human_bytes(c.hot_bytes).c_str(),
                  100.0 * c.hot_bytes / std::max(1.0, c.full_bytes), 16.0 * c.hot_bytes / std::max(1.0, c.full_bytes),
                  c.compress_seconds * 1e3);
  });
}

void add_niah(CLI::App& eval) {
  struct Opts {
    ModelOptions m;
    SweepOptions sweep;
    NiahOptions n;
    std::vector<int> lengths = {256, 384, 496};
    std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};
    bool query_agnostic = false;
  };
  auto o = std::make_shared<Opts>();
  o->sweep.policies = "full,streamingllm,h2o,snapkv,adakv,cake,sagekv";
  o->sweep.budgets = "0.25";
  CLI::App* cmd = eval.add_subcommand("niah", "needle-in-a-haystack / passkey retrieval accuracy per policy");
  add_model_options(*cmd, o->m);
  add_sweep_options(*cmd, o->sweep);
  cmd->add_option("--task", o->n.task, "needle (Paul Graham essays) or passkey (synthetic filler)")
      ->check(CLI::IsMember({"needle", "passkey"}));
  cmd->add_option("--haystack", o->n.haystack_dir, "directory of .txt files (default: the essays under the data dir)");
  cmd->add_option("--lengths", o->lengths, "prompt lengths in tokens")->delimiter(',');
  cmd->add_option("--depths", o->depths, "needle depths in [0, 1]")->delimiter(',');
  cmd->add_option("--answer-tokens", o->n.answer_tokens, "greedy tokens generated for the answer")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--seed", o->n.seed, "seed of the hidden numbers");
  cmd->add_option("--answer-prefix", o->n.answer_prefix,
                  "text appended after the question (\" \": the prompt ends with the answer's leading space)");
  cmd->add_flag("--query-agnostic", o->query_agnostic,
                "compress the context before the question is seen, then prefill the question (kvpress's protocol)");
  cmd->callback([o] {
    const auto grid = policy_grid(o->sweep);
    prepare_plot_dir(o->sweep.plot_dir);
    for (double d : o->depths) KV_CHECK(d >= 0 && d <= 1, "depth {} is outside [0, 1]", d);
    if (o->n.haystack_dir.empty()) o->n.haystack_dir = resolve_data_dir(o->m.data_dir) + "/data/paul_graham_essays";
    auto model = Model::load(resolve_model_path(o->m));
    Engine engine(*model, engine_options(o->m));
    for (int len : o->lengths)
      KV_CHECK(len + o->n.answer_tokens <= engine.ctx(), "length {} + {} answer tokens exceeds the context {}", len,
               o->n.answer_tokens, engine.ctx());
    NiahBuilder builder(model->tokenizer(), o->n);
    std::vector<NiahCase> cases;
    for (size_t d = 0; d < o->depths.size(); ++d)
      for (size_t l = 0; l < o->lengths.size(); ++l)
        cases.push_back(builder.build(o->lengths[l], o->depths[d], static_cast<int>(d * o->lengths.size() + l)));
    nlohmann::json j;
    j["model"] = model->file().path();
    j["task"] = o->n.task;
    j["answer_prefix"] = o->n.answer_prefix;
    j["protocol"] = o->query_agnostic ? "query-agnostic" : "query-aware";
    Progress progress("niah", grid.size() * cases.size());
    size_t done = 0;
    struct Summary {
      std::string name;
      double accuracy;
      int cases;
      double bits;  // mean effective bits per KV value after prefill (the full F16 cache = 16)
    };
    // What the full F16 cache of a case holds: whole pages of every (layer, KV head).
    const auto full_bytes = [&](int tokens) {
      const KvLayout& L = engine.kv().layout();
      return static_cast<double>((tokens + L.page_tokens - 1) / L.page_tokens) *
             static_cast<double>(engine.kv().pool().page_bytes()) * L.n_layers * L.n_kv_heads;
    };
    std::vector<Summary> summary;
    for (const auto& p : grid) {
      HeatmapSpec hm{fmt::format("{} {} @ {}", o->n.task, p->spec, p->budget_label()),
                     "prompt tokens",
                     "needle depth",
                     {},
                     {},
                     {},
                     0,
                     1};
      for (int len : o->lengths) hm.x_ticks.push_back(std::to_string(len));
      for (double d : o->depths) hm.y_ticks.push_back(fmt::format("{:.0f}%", d * 100));
      hm.values.assign(o->depths.size(), std::vector<double>(o->lengths.size(), 0.0));
      int correct = 0, ran = 0;
      double bits_sum = 0;
      std::string first_error;
      for (size_t i = 0; i < cases.size(); ++i) {
        NiahOutcome r;
        try {
          r = run_niah_case(engine, cases[i], p, o->n.answer_tokens, {}, o->query_agnostic);
        } catch (const Error& e) {
          // A policy that cannot run at this length (budget below its protected tokens) is reported,
          // not counted, and the sweep goes on.
          if (first_error.empty()) first_error = e.what();
          hm.values[i / o->lengths.size()][i % o->lengths.size()] = std::numeric_limits<double>::quiet_NaN();
          j["results"].push_back({{"policy", p->spec},
                                  {"budget", p->budget_label()},
                                  {"length", cases[i].length},
                                  {"depth", cases[i].depth},
                                  {"error", e.what()}});
          progress.update(++done);
          continue;
        }
        ++ran;
        correct += r.correct;
        bits_sum += 16.0 * static_cast<double>(r.hot_bytes) / full_bytes(cases[i].length);
        hm.values[i / o->lengths.size()][i % o->lengths.size()] = r.correct ? 1.0 : 0.0;
        j["results"].push_back({{"policy", p->spec},
                                {"budget", p->budget_label()},
                                {"length", cases[i].length},
                                {"depth", cases[i].depth},
                                {"answer", cases[i].answer},
                                {"output", r.output},
                                {"correct", r.correct},
                                {"hot_bytes", r.hot_bytes}});
        progress.update(++done);
      }
      const double acc = ran > 0 ? static_cast<double>(correct) / static_cast<double>(ran) : 0.0;
      const std::string name = p->spec + " @ " + (p->budget_label());
      summary.push_back({name, acc, ran, ran > 0 ? bits_sum / ran : 0.0});
      if (!first_error.empty())
        std::fprintf(stderr, "kvwise: %s: %zu of %zu cases could not run: %s\n", name.c_str(),
                     cases.size() - static_cast<size_t>(ran), cases.size(), first_error.c_str());
      if (!o->sweep.plot_dir.empty()) {
        std::string name = p->spec + "_" + (p->budget_label());
        for (char& c : name)
          if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_') c = '_';
        write_heatmap_svg(hm, o->sweep.plot_dir + "/niah_" + name + ".svg");
      }
    }
    progress.finish();
    for (const auto& s : summary)
      j["accuracy"][s.name] = {{"accuracy", s.accuracy}, {"cases", s.cases}, {"bits_per_value", s.bits}};
    if (!o->sweep.plot_dir.empty()) write_file(o->sweep.plot_dir + "/niah.json", j.dump(2) + "\n");
    if (o->sweep.json) {
      std::puts(j.dump(2).c_str());
      return;
    }
    std::printf(
        "%s, %s task, %s, %zu cases per policy (lengths x depths)\n\n| policy @ budget | accuracy | cases run | KV "
        "bits/value |\n|---|---:|---:|---:|\n",
        model->file().path().c_str(), o->n.task.c_str(), o->query_agnostic ? "query-agnostic" : "query-aware",
        cases.size());
    for (const auto& s : summary)
      std::printf("| %s | %.2f | %d | %.1f |\n", s.name.c_str(), s.accuracy, s.cases, s.bits);
  });
}

void add_attention(CLI::App& eval) {
  struct Opts {
    ModelOptions m;
    SweepOptions sweep;
    std::string source = "random";
    std::string file;
    int layer = 0, prompt = 1024, future = 32, heads = 8, kv_heads = 2, head_dim = 64, needles = 4;
    uint64_t seed = 1;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = eval.add_subcommand("attention", "attention-output error and retained attention mass per policy");
  add_model_options(*cmd, o->m);
  add_sweep_options(*cmd, o->sweep);
  cmd->add_option("--source", o->source, "random (planted needles) or model (recorded Q/K/V of a real model)")
      ->check(CLI::IsMember({"random", "model"}));
  cmd->add_option("-f,--file", o->file, "text for --source model (default: the TinyStories sample)");
  cmd->add_option("--layer", o->layer, "layer to record (--source model)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--prompt", o->prompt, "prompt tokens")->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--future", o->future, "queries after the prompt")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--heads", o->heads, "query heads (random)")->check(CLI::Range(1, 256));
  cmd->add_option("--kv-heads", o->kv_heads, "KV heads (random)")->check(CLI::Range(1, 256));
  cmd->add_option("--head-dim", o->head_dim, "head dimension (random)")->check(CLI::Range(1, 1024));
  cmd->add_option("--needles", o->needles, "needle keys per query head (random)")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--seed", o->seed, "seed (random)");
  cmd->callback([o] {
    const auto grid = policy_grid(o->sweep);
    prepare_plot_dir(o->sweep.plot_dir);
    AttentionSample sample;
    std::unique_ptr<Model> model;
    ThreadPool pool(engine_options(o->m).threads);
    std::string source = "random";
    if (o->source == "model") {
      model = Model::load(resolve_model_path(o->m));
      Engine engine(*model, engine_options(o->m));
      const std::string file = o->file.empty() ? default_corpus(o->m) : o->file;
      std::vector<int32_t> toks = model->tokenizer().encode(read_corpus(file), true);
      const size_t need = static_cast<size_t>(o->prompt + o->future);
      KV_CHECK(toks.size() >= need, "{} has {} tokens, fewer than prompt + future = {}", file, toks.size(), need);
      KV_CHECK(static_cast<int>(need) <= engine.ctx(), "prompt + future = {} exceeds the context {}", need,
               engine.ctx());
      toks.resize(need);
      sample = recorded_attention(engine, toks, o->prompt, o->layer);
      source = fmt::format("{} layer {}", model->file().path(), o->layer);
    } else {
      KV_CHECK(o->heads % o->kv_heads == 0, "--heads must be a multiple of --kv-heads");
      sample = synthetic_attention(o->prompt, o->future, o->heads, o->kv_heads, o->head_dim, o->needles, o->seed);
      source = fmt::format("random {}x{} heads, d={}, {} needles/head, seed {}", o->heads, o->kv_heads, o->head_dim,
                           o->needles, o->seed);
    }
    nlohmann::json j;
    j["source"] = source;
    j["prompt"] = o->prompt;
    j["future"] = o->future;
    std::vector<AttentionErrorCell> cells;
    Progress progress("attention", grid.size());
    for (const auto& p : grid) {
      cells.push_back(attention_error(pool, sample, p));
      j["results"].push_back({{"policy", p->spec},
                              {"budget", p->budget_label()},
                              {"relative_error", cells.back().relative_error},
                              {"retained_mass", cells.back().retained_mass},
                              {"kept_fraction", cells.back().kept_fraction}});
      progress.update(cells.size());
    }
    progress.finish();
    if (!o->sweep.plot_dir.empty()) {
      std::vector<double> err, mass;
      for (const auto& c : cells) err.push_back(c.relative_error), mass.push_back(c.retained_mass);
      plot_metric(o->sweep.plot_dir + "/attention_error.svg", "Attention output relative error", "||o_c - o|| / ||o||",
                  grid, err);
      plot_metric(o->sweep.plot_dir + "/attention_mass.svg", "Retained attention mass", "mass", grid, mass);
      write_file(o->sweep.plot_dir + "/attention.json", j.dump(2) + "\n");
    }
    if (o->sweep.json) {
      std::puts(j.dump(2).c_str());
      return;
    }
    std::printf("%s, %d prompt tokens, %d future queries\n\n", source.c_str(), o->prompt, o->future);
    std::printf("| policy | budget | relative error | retained mass | kept |\n|---|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < grid.size(); ++i)
      std::printf("| %s | %s | %.4f | %.4f | %.3f |\n", grid[i]->spec.c_str(), grid[i]->budget_label().c_str(),
                  cells[i].relative_error, cells[i].retained_mass, cells[i].kept_fraction);
  });
}

}  // namespace

// kvwise eval prefix-cache: the cost of attending to prefix-cache blocks stored in int8/int4.
void add_prefix_cache(CLI::App& eval) {
  struct Opts {
    ModelOptions m;
    std::string file, plot;
    std::vector<std::string> dtypes = {"f16", "int8", "int4"};
    int group = 32, block_tokens = 32;
    FidelityOptions f;
    bool json = false;
    NiahOptions n;
    std::vector<int> lengths;  // passkey prompts (none: no passkey run)
    std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};
  };
  auto o = std::make_shared<Opts>();
  o->f.prefix = 256;
  o->f.segments = 8;
  CLI::App* cmd = eval.add_subcommand(
      "prefix-cache", "KL, top-1 agreement and NLL after a cached prefix stored as f16, int8 or int4 blocks");
  add_model_options(*cmd, o->m);
  cmd->add_option("-f,--file", o->file, "text (default: the TinyStories sample under the data directory)");
  cmd->add_option("--dtypes", o->dtypes, "block dtypes, comma separated")
      ->delimiter(',')
      ->check(CLI::IsMember({"f16", "int8", "int4"}));
  cmd->add_option("--group", o->group, "channels per quantisation group")->check(CLI::IsMember({8, 16, 32, 64, 128}));
  cmd->add_option("--block-tokens", o->block_tokens, "tokens per prefix-cache block")->check(CLI::Range(1, 4096));
  cmd->add_option("--prefix", o->f.prefix, "tokens of each segment served from the cache (whole blocks, BOS included)")
      ->check(CLI::Range(2, 1 << 24));
  cmd->add_option("--continuation", o->f.continuation, "tokens computed after the cached prefix")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--segments", o->f.segments, "text segments averaged")->check(CLI::Range(1, 10000));
  cmd->add_option("--passkey-lengths", o->lengths,
                  "also passkey retrieval with the haystack served from the cache, prompts of these lengths")
      ->delimiter(',');
  cmd->add_option("--passkey-depths", o->depths, "passkey depths in [0, 1]")->delimiter(',');
  cmd->add_option("--answer-tokens", o->n.answer_tokens, "greedy tokens generated for a passkey answer")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--answer-prefix", o->n.answer_prefix, "text after the passkey question (see eval niah)");
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->add_option("--plot", o->plot, "directory for prefix_cache_fidelity.{json,csv}");
  cmd->callback([o] {
    prepare_plot_dir(o->plot);
    const std::string file = o->file.empty() ? default_corpus(o->m) : o->file;
    auto model = Model::load(resolve_model_path(o->m));
    Engine engine(*model, engine_options(o->m));
    const Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> text = tok.encode(read_corpus(file), false);
    const auto segments = fidelity_segments(text, tok.bos() >= 0 ? tok.bos() : text[0], o->f);
    nlohmann::json j = segments_json(*model, file, o->f);
    j["block_tokens"] = o->block_tokens;
    const auto cache_options = [&](const std::string& dtype) {  // the measurements raise the capacity to fit
      LivePrefixOptions lo;
      lo.block_tokens = o->block_tokens;
      lo.memory_blocks = 1;
      lo.dtype = dtype;
      lo.group = o->group;
      return lo;
    };
    std::string csv = "dtype,group,block_bytes,blocks_per_f16_bytes,mean_kl,max_kl,top1_agreement,nll,nll_full\n";
    std::vector<PrefixFidelityCell> cells;
    Progress progress("prefix-cache", o->dtypes.size());
    for (const std::string& d : o->dtypes) {
      cells.push_back(measure_prefix_fidelity(engine, segments, o->f.prefix, cache_options(d)));
      progress.update(cells.size());
      const PrefixFidelityCell& c = cells.back();
      const double more = static_cast<double>(c.block_bytes_raw) / static_cast<double>(c.block_bytes);
      j["results"].push_back({{"dtype", c.dtype},
                              {"group", c.group},
                              {"block_bytes", c.block_bytes},
                              {"block_bytes_store", c.block_bytes_raw},
                              {"blocks_in_the_same_bytes", more},
                              {"cached_tokens", c.cached_tokens},
                              {"tokens", c.tokens},
                              {"mean_kl", c.mean_kl},
                              {"max_kl", c.max_kl},
                              {"top1_agreement", c.top1_agreement},
                              {"nll", c.nll},
                              {"nll_full", c.nll_full}});
      csv += fmt::format("{},{},{},{:.4f},{:.6g},{:.6g},{:.4f},{:.5f},{:.5f}\n", c.dtype, c.group, c.block_bytes, more,
                         c.mean_kl, c.max_kl, c.top1_agreement, c.nll, c.nll_full);
    }
    progress.finish();
    std::vector<PrefixPasskeyCell> passkey;
    if (!o->lengths.empty()) {
      o->n.task = "passkey";
      const NiahBuilder builder(tok, o->n);
      std::vector<NiahCase> cases;
      for (int len : o->lengths)
        for (double d : o->depths) cases.push_back(builder.build(len, d, static_cast<int>(cases.size())));
      for (const std::string& d : o->dtypes) {
        passkey.push_back(measure_prefix_passkey(engine, cases, o->n.answer_tokens, cache_options(d)));
        const auto& p = passkey.back();
        j["passkey"].push_back({{"dtype", p.dtype},
                                {"cases", p.cases},
                                {"correct", p.correct},
                                {"correct_without_cache", p.correct_full},
                                {"mean_cached_tokens", p.cached_tokens}});
      }
      j["passkey_lengths"] = o->lengths;
      j["passkey_depths"] = o->depths;
    }
    if (!o->plot.empty()) {
      write_file(o->plot + "/prefix_cache_fidelity.csv", csv);
      write_file(o->plot + "/prefix_cache_fidelity.json", j.dump(2) + "\n");
    }
    if (o->json) {
      std::puts(j.dump(2).c_str());
      return;
    }
    std::printf("%s: %d segments x (%d cached + %d computed tokens), blocks of %d tokens\n\n",
                model->file().path().c_str(), o->f.segments, cells.empty() ? 0 : cells[0].cached_tokens,
                o->f.continuation, o->block_tokens);
    std::printf("| block dtype | block bytes | blocks in the same bytes | mean KL | max KL | top-1 agree | ΔNLL |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& c : cells)
      std::printf("| %s | %s | %.2fx | %.2e | %.2e | %.3f | %+.4f |\n", c.dtype.c_str(),
                  human_bytes(static_cast<double>(c.block_bytes)).c_str(),
                  static_cast<double>(c.block_bytes_raw) / static_cast<double>(c.block_bytes), c.mean_kl, c.max_kl,
                  c.top1_agreement, c.nll - c.nll_full);
    if (!passkey.empty()) {
      std::printf(
          "\n| block dtype | passkey correct, haystack from the cache | without a cache | mean cached tokens |\n");
      std::printf("|---|---:|---:|---:|\n");
      for (const auto& p : passkey)
        std::printf("| %s | %d / %d | %d / %d | %.0f |\n", p.dtype.c_str(), p.correct, p.cases, p.correct_full, p.cases,
                    p.cached_tokens);
    }
  });
}

void add_eval(CLI::App& app) {
  CLI::App* eval = app.add_subcommand("eval", "fidelity of KV compression policies against the full cache");
  eval->require_subcommand(1);
  add_fidelity(*eval);
  add_niah(*eval);
  add_ruler(*eval);
  add_attention(*eval);
  add_prefix_cache(*eval);
}

}  // namespace kvwise::cli
