// kvwise eval ruler: the RULER-style suite per policy and compression ratio, under the query-aware
// and/or query-agnostic protocol, with a leaderboard table (kvpress's convention: the compression
// ratio is the fraction of the KV removed), KV bytes actually held, compression time, and plots.
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/data_dir.h"
#include "base/error.h"
#include "base/progress.h"
#include "base/svg_plot.h"
#include "common.h"
#include "eval/ruler.h"
#include "eval_sweep.h"

namespace kvwise::cli {

namespace {

struct Cell {
  std::string protocol, policy, label;  // label: the spec without file paths
  double ratio = 0;                     // compression ratio (fraction removed); 0 for full / budget-free policies
  std::map<std::string, double> task_score;
  double score = 0;           // mean of the task scores
  double kv_share = 0;        // hot KV bytes after prefill / the full cache's, mean over cases
  double compress_ms = 0;     // mean per case
  int cases = 0, errors = 0;  // errors: cases the policy could not run (budget below its protected tokens)
  std::string first_error;
};

}  // namespace

void add_ruler(CLI::App& eval) {
  struct Opts {
    ModelOptions m;
    SweepOptions sweep;
    std::vector<double> ratios = {0.25, 0.5, 0.75, 0.875};
    std::string tasks;
    std::vector<int> lengths = {500};
    int samples = 5;
    uint64_t seed = 1;
    bool query_agnostic = false, both = false;
    std::string haystack;
  };
  auto o = std::make_shared<Opts>();
  o->sweep.policies = "full,random,streamingllm,snapkv,pyramidkv,tova,knorm,keydiff,expected-attention";
  o->sweep.budgets = "";
  CLI::App* cmd = eval.add_subcommand(
      "ruler",
      "RULER-style suite (NIAH variants, variable tracking, word extraction) per policy and compression ratio");
  add_model_options(*cmd, o->m);
  add_sweep_options(*cmd, o->sweep);
  cmd->add_option("--ratios", o->ratios,
                  "compression ratios, comma separated: the fraction of the KV removed (kvpress's convention; "
                  "the budget is 1 - ratio); --budgets replaces them")
      ->delimiter(',');
  cmd->add_option(
      "--tasks", o->tasks, "tasks, comma separated (default: all of " + [] {
        std::string s;
        for (const auto& t : RulerBuilder::tasks()) s += (s.empty() ? "" : ", ") + t;
        return s;
      }() + ")");
  cmd->add_option("--lengths", o->lengths, "context + question lengths in tokens")->delimiter(',');
  cmd->add_option("--samples", o->samples, "cases per task and length")->check(CLI::Range(1, 100000));
  cmd->add_option("--seed", o->seed, "seed of the cases");
  cmd->add_option("--haystack", o->haystack, "directory of .txt files (default: the essays under the data dir)");
  cmd->add_flag("--query-agnostic", o->query_agnostic,
                "compress the context before the question is seen, then prefill the question (kvpress's protocol)");
  cmd->add_flag("--both", o->both, "run the query-aware and the query-agnostic protocol");
  cmd->callback([o] {
    std::vector<std::string> tasks;
    if (o->tasks.empty()) {
      tasks = RulerBuilder::tasks();
    } else {
      std::stringstream ss(o->tasks);
      for (std::string t; std::getline(ss, t, ',');) tasks.push_back(t);
    }
    SweepOptions sweep = o->sweep;
    if (sweep.budgets.empty()) {
      for (double r : o->ratios) {
        KV_CHECK(r > 0 && r < 1, "--ratios: {} is outside (0, 1)", r);
        sweep.budgets += (sweep.budgets.empty() ? "" : ",") + fmt::format("{}", 1.0 - r);
      }
    }
    const auto grid = policy_grid(sweep);
    prepare_plot_dir(sweep.plot_dir);
    RulerOptions ro;
    ro.seed = o->seed;
    ro.haystack_dir = o->haystack.empty() ? resolve_data_dir(o->m.data_dir) + "/data/paul_graham_essays" : o->haystack;
    auto model = Model::load(resolve_model_path(o->m));
    Engine engine(*model, engine_options(o->m));
    RulerBuilder builder(model->tokenizer(), ro);
    std::vector<RulerCase> cases;
    for (const std::string& t : tasks)
      for (int len : o->lengths)
        for (int s = 0; s < o->samples; ++s) {
          cases.push_back(builder.build(t, len, s));
          KV_CHECK(cases.back().total_tokens() <= engine.ctx(),
                   "{} at length {} needs {} tokens with its answers; the context is {}", t, len,
                   cases.back().total_tokens(), engine.ctx());
        }
    const KvLayout& L = engine.kv().layout();
    const auto full_bytes = [&](size_t tokens) {
      return static_cast<double>((tokens + static_cast<size_t>(L.page_tokens) - 1) /
                                 static_cast<size_t>(L.page_tokens)) *
             static_cast<double>(engine.kv().pool().page_bytes()) * L.n_layers * L.n_kv_heads;
    };
    std::vector<std::string> protocols;
    if (o->both || !o->query_agnostic) protocols.push_back("query-aware");
    if (o->both || o->query_agnostic) protocols.push_back("query-agnostic");
    nlohmann::json j;
    j["model"] = model->file().path();
    j["tasks"] = tasks;
    j["lengths"] = o->lengths;
    j["samples"] = o->samples;
    j["seed"] = o->seed;
    std::vector<Cell> cells;
    Progress progress("ruler", protocols.size() * grid.size() * cases.size());
    size_t done = 0;
    for (const std::string& protocol : protocols)
      for (const auto& p : grid) {
        Cell cell;
        cell.protocol = protocol;
        cell.policy = p->spec;
        cell.label = short_label(p->spec);
        cell.ratio = p->reads_budget() && p->budget.tokens == 0 ? 1.0 - p->budget.ratio : 0.0;
        std::map<std::string, std::pair<double, int>> per_task;
        double share = 0, ms = 0;
        for (const RulerCase& c : cases) {
          RulerOutcome r;
          try {
            r = run_ruler_case(engine, c, p, protocol == "query-agnostic");
          } catch (const Error& e) {
            // A policy that cannot run at this length is reported, not counted, and the sweep goes on.
            if (cell.first_error.empty()) cell.first_error = e.what();
            ++cell.errors;
            progress.update(++done);
            continue;
          }
          per_task[c.task].first += r.score;
          ++per_task[c.task].second;
          share += static_cast<double>(r.hot_bytes) /
                   full_bytes(c.context.size() + (protocol == "query-aware" ? c.turns[0].question.size() : 0));
          ms += r.compress_seconds * 1e3;
          ++cell.cases;
          j["results"].push_back({{"protocol", protocol},
                                  {"policy", p->spec},
                                  {"budget", p->budget_label()},
                                  {"task", c.task},
                                  {"length", c.length},
                                  {"score", r.score},
                                  {"output", r.output},
                                  {"hot_bytes", r.hot_bytes}});
          progress.update(++done);
        }
        double sum = 0;
        for (const auto& [t, v] : per_task) sum += cell.task_score[t] = v.first / v.second;
        cell.score = per_task.empty() ? 0.0 : sum / static_cast<double>(per_task.size());
        cell.kv_share = cell.cases ? share / cell.cases : 0.0;
        cell.compress_ms = cell.cases ? ms / cell.cases : 0.0;
        if (!cell.first_error.empty())
          std::fprintf(stderr, "kvwise: %s @ %s (%s): %d of %zu cases could not run: %s\n", p->spec.c_str(),
                       p->budget_label().c_str(), protocol.c_str(), cell.errors, cases.size(),
                       cell.first_error.c_str());
        cells.push_back(cell);
      }
    progress.finish();
    std::string csv = "protocol,policy,compression_ratio,score,kv_share,compress_ms,cases";
    for (const auto& t : tasks) csv += "," + t;
    csv += "\n";
    for (const Cell& c : cells) {
      nlohmann::json ts;
      for (const auto& [t, v] : c.task_score) ts[t] = v;
      j["leaderboard"].push_back({{"protocol", c.protocol},
                                  {"policy", c.policy},
                                  {"compression_ratio", c.ratio},
                                  {"score", c.score},
                                  {"tasks", ts},
                                  {"kv_share", c.kv_share},
                                  {"compress_ms", c.compress_ms},
                                  {"cases", c.cases},
                                  {"errors", c.errors}});
      csv += fmt::format("{},\"{}\",{},{:.4f},{:.4f},{:.3f},{}", c.protocol, c.policy, c.ratio, c.score, c.kv_share,
                         c.compress_ms, c.cases);
      for (const auto& t : tasks) {
        auto it = c.task_score.find(t);
        csv += it == c.task_score.end() ? "," : fmt::format(",{:.4f}", it->second);
      }
      csv += "\n";
    }
    if (!sweep.plot_dir.empty()) {
      for (const std::string& protocol : protocols) {
        PlotSpec spec{"RULER-style average score, " + protocol + " (" + model->config().name + ")",
                      "compression ratio (fraction of the KV removed)",
                      "average score",
                      false,
                      true,
                      {}};
        double full_score = -1;
        for (const Cell& c : cells) {
          if (c.protocol != protocol) continue;
          if (c.ratio == 0) {
            if (c.policy == "full") full_score = c.score;
            continue;
          }
          auto it = std::find_if(spec.series.begin(), spec.series.end(),
                                 [&](const PlotSeries& s) { return s.name == c.label; });
          if (it == spec.series.end()) {
            spec.series.push_back({c.label, {}, {}, c.label.rfind("random", 0) == 0});
            it = spec.series.end() - 1;
          }
          it->x.push_back(c.ratio);
          it->y.push_back(c.score);
        }
        if (full_score >= 0 && !spec.series.empty()) {
          double lo = 1, hi = 0;
          for (const auto& s : spec.series)
            for (double x : s.x) lo = std::min(lo, x), hi = std::max(hi, x);
          spec.series.push_back({"full", {lo, hi}, {full_score, full_score}, true});
        }
        write_svg(spec, sweep.plot_dir + "/ruler_" + protocol + ".svg");
      }
      write_file(sweep.plot_dir + "/ruler.csv", csv);
      write_file(sweep.plot_dir + "/ruler.json", j.dump(2) + "\n");
    }
    if (sweep.json) {
      std::puts(j.dump(2).c_str());
      return;
    }
    // The leaderboard: method x compression ratio, one table per protocol; then per-task scores.
    std::vector<double> ratios;
    for (const Cell& c : cells)
      if (c.ratio > 0 && std::find(ratios.begin(), ratios.end(), c.ratio) == ratios.end()) ratios.push_back(c.ratio);
    std::sort(ratios.begin(), ratios.end());
    std::printf("%s, %zu tasks x %zu lengths x %d samples\n", model->file().path().c_str(), tasks.size(),
                o->lengths.size(), o->samples);
    for (const std::string& protocol : protocols) {
      std::printf("\n%s: average score (KV held, %% of the full cache; compression ms per case)\n\n| policy |",
                  protocol.c_str());
      for (double r : ratios) std::printf(" %g |", r);
      std::printf("\n|---|");
      for (size_t i = 0; i < ratios.size(); ++i) std::printf("---:|");
      std::printf("\n");
      std::vector<std::string> order;
      for (const Cell& c : cells)
        if (c.protocol == protocol && std::find(order.begin(), order.end(), c.label) == order.end())
          order.push_back(c.label);
      for (const std::string& label : order) {
        std::printf("| %s |", label.c_str());
        for (double r : ratios) {
          const Cell* hit = nullptr;
          for (const Cell& c : cells)
            if (c.protocol == protocol && c.label == label && (c.ratio == r || c.ratio == 0)) hit = &c;
          if (hit == nullptr || hit->cases == 0)
            std::printf(" - |");
          else
            std::printf(" %.3f (%.0f%%, %.1f ms) |", hit->score, 100 * hit->kv_share, hit->compress_ms);
        }
        std::printf("\n");
      }
    }
    std::printf("\nper task (score)\n\n| protocol | policy | ratio |");
    for (const auto& t : tasks) std::printf(" %s |", t.c_str());
    std::printf("\n|---|---|---:|");
    for (size_t i = 0; i < tasks.size(); ++i) std::printf("---:|");
    std::printf("\n");
    for (const Cell& c : cells) {
      std::printf("| %s | %s | %g |", c.protocol.c_str(), c.label.c_str(), c.ratio);
      for (const auto& t : tasks) {
        auto it = c.task_score.find(t);
        if (it == c.task_score.end())
          std::printf(" - |");
        else
          std::printf(" %.2f |", it->second);
      }
      std::printf("\n");
    }
  });
}

}  // namespace kvwise::cli
