// Prefill and decode speed at given context depths, in the manner of llama-bench: ppN is N prompt
// tokens prefilled on top of a context of depth d; tgN is N single-token decode steps at depth d.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "bandwidth.h"
#include "base/error.h"
#include "base/progress.h"
#include "base/timer.h"
#include "common.h"
#include "model/sampler.h"

namespace kvwise::cli {

namespace {

struct BenchRow {
  std::string test;
  int depth;
  int tokens;
  std::vector<double> seconds;
  size_t kv_bytes = 0;                // hot KV bytes of the sequence at the end of the test
  double compress_seconds = 0;        // per repetition, in the policy's selection/eviction code
  double depth_seconds = 0;           // per repetition, prefilling the depth (tg tests; compression included)
  nlohmann::json specache = nullptr;  // SpeCache's report of the last repetition (hit rate, cold tier)
  double tokens_per_second() const {
    double best = 0, sum = 0;
    for (double s : seconds) sum += s;
    best = sum / static_cast<double>(seconds.size());
    return tokens / best;
  }
  double stddev_tps() const {
    if (seconds.size() < 2) return 0;
    std::vector<double> tps;
    for (double s : seconds) tps.push_back(tokens / s);
    double m = 0;
    for (double x : tps) m += x;
    m /= static_cast<double>(tps.size());
    double v = 0;
    for (double x : tps) v += (x - m) * (x - m);
    return std::sqrt(v / static_cast<double>(tps.size() - 1));
  }
};

std::vector<int32_t> random_tokens(std::mt19937& rng, int n, int n_vocab) {
  std::uniform_int_distribution<int32_t> d(3, n_vocab - 1);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = d(rng);
  return t;
}

}  // namespace

void add_bench(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    PolicyOptions pol;
    std::vector<int> prompt = {512};
    int n_gen = 128;
    std::vector<int> depth = {0};
    int reps = 3;
    bool json = false;
    bool bandwidth = false;
    int bandwidth_mib = 512;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("bench", "prefill (pp) and decode (tg) tokens/s at context depths");
  add_model_options(*cmd, o->m);
  add_policy_options(*cmd, o->pol);
  cmd->add_option("-p,--n-prompt", o->prompt, "prompt sizes, comma separated (0 = no prefill test)")->delimiter(',');
  cmd->add_option("-n,--n-gen", o->n_gen, "tokens to decode (0 = skip)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-d,--depth", o->depth, "context depths, comma separated")->delimiter(',');
  cmd->add_option("-r,--repetitions", o->reps, "repetitions per test")->check(CLI::Range(1, 100));
  cmd->add_flag("--json", o->json, "print JSON");
  cmd->add_flag("--bandwidth", o->bandwidth,
                "also measure this machine's memory read and copy bandwidth with the same threads, the bound of "
                "decode's effective weight bandwidth (weight bytes per token x t/s)");
  cmd->add_option("--bandwidth-mib", o->bandwidth_mib, "buffer streamed by --bandwidth (far larger than the caches)")
      ->check(CLI::Range(1, 65536));
  cmd->callback([o] {
    const auto policy = resolve_policy(o->pol);
    auto model = Model::load(resolve_model_path(o->m));
    EngineOptions eo = engine_options(o->m);
    int need = 0;
    for (int d : o->depth)
      for (int p : o->prompt) need = std::max(need, d + std::max(p, o->n_gen));
    if (eo.ctx == 0) eo.ctx = std::max(model->config().ctx_len, need);
    KV_CHECK(need <= eo.ctx, "depth + test size {} exceeds the context {}", need, eo.ctx);
    Engine engine(*model, eo);
    const int n_vocab = model->config().n_vocab;
    std::mt19937 rng(1234);
    std::vector<BenchRow> rows;
    // With a policy, a pp test's prompt is depth + N tokens (compression runs at its end and is timed);
    // a tg test decodes after a depth-token prompt that the policy compressed.
    double depth_seconds = 0;
    const auto at_depth = [&](int depth, int prompt_total) {
      const SeqId seq = engine.new_sequence();
      if (prompt_total > 0) attach_policy(engine, seq, policy, prompt_total);
      const double t0 = now_seconds();
      if (depth > 0) engine.prefill(seq, random_tokens(rng, depth, n_vocab));
      depth_seconds = now_seconds() - t0;
      return seq;
    };
    const auto finish = [&](SeqId seq, BenchRow& row) {
      row.kv_bytes = engine.kv().bytes_sequence(seq);
      if (auto* c = engine.find_observer<KvCompressor>(seq)) {
        row.compress_seconds += (c->report().prefill_seconds + c->report().decode_seconds) / o->reps;
        if (c->report().specache) row.specache = to_json(c->report())["specache"];
      }
      engine.free_sequence(seq);
    };
    const size_t n_pp =
        static_cast<size_t>(std::count_if(o->prompt.begin(), o->prompt.end(), [](int p) { return p > 0; }));
    const size_t runs = o->depth.size() * (n_pp + (o->n_gen > 0 ? 1 : 0)) * static_cast<size_t>(o->reps);
    size_t done = 0;
    Progress progress("bench", runs);
    for (int d : o->depth) {
      KV_CHECK(d >= 0, "depth must be >= 0");
      for (int p : o->prompt) {
        KV_CHECK(p >= 0, "prompt size must not be negative");
        if (p == 0) continue;  // -p 0: decode tests only
        BenchRow row{fmt::format("pp{}", p), d, p, {}};
        for (int r = 0; r < o->reps; ++r) {
          const SeqId seq = at_depth(d, d + p);
          const auto toks = random_tokens(rng, p, n_vocab);
          const double t0 = now_seconds();
          engine.prefill(seq, toks);
          row.seconds.push_back(now_seconds() - t0);
          finish(seq, row);
          progress.update(++done);
        }
        rows.push_back(row);
      }
      if (o->n_gen > 0) {
        BenchRow row{fmt::format("tg{}", o->n_gen), d, o->n_gen, {}};
        for (int r = 0; r < o->reps; ++r) {
          const SeqId seq = at_depth(d, d);
          row.depth_seconds += depth_seconds / o->reps;
          int32_t tok = 5;
          const double t0 = now_seconds();
          for (int i = 0; i < o->n_gen; ++i) tok = argmax(engine.decode(seq, tok).data(), n_vocab);
          row.seconds.push_back(now_seconds() - t0);
          finish(seq, row);
          progress.update(++done);
        }
        rows.push_back(row);
      }
    }
    progress.finish();
    const auto& cfg = model->config();
    const size_t rss = resident_bytes();
    const double per_token = static_cast<double>(model->weights().bytes_per_token);
    Bandwidth bw;
    if (o->bandwidth) bw = measure_bandwidth(eo.threads, static_cast<size_t>(o->bandwidth_mib) << 20);
    const auto weight_gbps = [&](const BenchRow& r) {
      return r.test.rfind("tg", 0) == 0 ? per_token * r.tokens_per_second() / 1e9 : 0.0;
    };
    if (o->json) {
      nlohmann::json j;
      j["model"] = model->file().path();
      j["params"] = model->weights().parameters;
      j["weight_bytes"] = model->weights().mapped_bytes;
      j["threads"] = eo.threads;
      j["kv_type"] = kv_type_of(o->m);
      j["kv_policy"] = policy->spec;
      j["kv_budget"] = policy->budget.to_string();
      j["resident_bytes_end"] = rss;
      j["packed_weight_bytes"] = model->weights().packed_bytes;
      j["weight_bytes_per_token"] = model->weights().bytes_per_token;
      if (o->bandwidth) j["machine_bandwidth"] = {{"read_gbps", bw.read_gbps}, {"copy_gbps", bw.copy_gbps}};
      for (const auto& r : rows)
        j["results"].push_back({{"test", r.test},
                                {"depth", r.depth},
                                {"tokens", r.tokens},
                                {"tokens_per_second", r.tokens_per_second()},
                                {"stddev", r.stddev_tps()},
                                {"kv_bytes", r.kv_bytes},
                                {"compress_seconds", r.compress_seconds},
                                {"depth_prefill_seconds", r.depth_seconds},
                                {"specache", r.specache},
                                {"weight_gbps", weight_gbps(r)},
                                {"seconds", r.seconds}});
      std::puts(j.dump(2).c_str());
      return;
    }
    const std::string kv =
        policy->full ? kv_type_of(o->m) : kv_type_of(o->m) + " " + policy->spec + "@" + policy->budget.to_string();
    std::printf(
        "| model | size | params | threads | kv | test | t/s | hot KV | compression |\n"
        "|---|---:|---:|---:|---|---:|---:|---:|---:|\n");
    for (const auto& r : rows)
      std::printf("| %s %dL | %s | %.1f M | %d | %s | %s @ d%d | %.2f ± %.2f | %s | %.2f ms |\n", cfg.arch.c_str(),
                  cfg.n_layers, human_bytes(static_cast<double>(model->weights().mapped_bytes)).c_str(),
                  static_cast<double>(model->weights().parameters) / 1e6, eo.threads, kv.c_str(), r.test.c_str(),
                  r.depth, r.tokens_per_second(), r.stddev_tps(), human_bytes(static_cast<double>(r.kv_bytes)).c_str(),
                  r.compress_seconds * 1e3);
    std::printf("resident memory at end: %s (weights %s mapped, %s of them repacked)\n",
                human_bytes(static_cast<double>(rss)).c_str(),
                human_bytes(static_cast<double>(model->weights().mapped_bytes)).c_str(),
                human_bytes(static_cast<double>(model->weights().packed_bytes)).c_str());
    for (const auto& r : rows)
      if (weight_gbps(r) > 0)
        std::printf("%s @ d%d reads weights at %.1f GB/s (%s per token)\n", r.test.c_str(), r.depth, weight_gbps(r),
                    human_bytes(per_token).c_str());
    if (o->bandwidth)
      std::printf("machine bandwidth with %d threads: read %.1f GB/s, copy %.1f GB/s\n", eo.threads, bw.read_gbps,
                  bw.copy_gbps);
  });
}

}  // namespace kvwise::cli
