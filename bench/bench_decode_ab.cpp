// Decode speed of several KV policies measured in one process, interleaved step by step: every policy's
// sequence is prefilled with the same random prompt, then each decode step runs once per sequence in
// turn, so all of them see the same machine state (this VM's speed drifts by 10-20 % between runs).
// usage: bench_decode_ab MODEL DEPTH STEPS THREADS POLICY...   (the first policy is the baseline)
// Prints JSON: per policy tokens/s, the ratio to the baseline, hot KV bytes and SpeCache's report.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/timer.h"
#include "compress/registry.h"
#include "model/model.h"
#include "model/sampler.h"

using namespace kvwise;

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s MODEL DEPTH STEPS THREADS POLICY...\n", argv[0]);
    return 2;
  }
  try {
    auto model = Model::load(argv[1]);
    const int depth = std::stoi(argv[2]), steps = std::stoi(argv[3]);
    EngineOptions eo;
    eo.threads = std::stoi(argv[4]);
    eo.ctx = std::max(model->config().ctx_len, depth + steps + 2);
    Engine engine(*model, eo);
    const int V = model->config().n_vocab;
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> tok(3, V - 1);
    std::vector<int32_t> prompt(static_cast<size_t>(depth));
    for (auto& t : prompt) t = tok(rng);
    struct Run {
      std::string spec;
      SeqId seq;
      std::shared_ptr<KvCompressor> comp;
      int32_t next;
      double seconds = 0, prefill_seconds = 0;
    };
    std::vector<Run> runs;
    for (int i = 5; i < argc; ++i) {
      Run r{argv[i], engine.new_sequence(), nullptr, 0};
      auto policy = make_policy(r.spec, Budget::parse("1"));
      r.comp = attach_policy(engine, r.seq, policy, depth);
      const double t0 = now_seconds();
      const auto lg = engine.prefill(r.seq, prompt);
      r.prefill_seconds = now_seconds() - t0;
      r.next = argmax(lg.data(), V);
      std::fprintf(stderr, "prefilled %s in %.1f s\n", r.spec.c_str(), r.prefill_seconds);
      runs.push_back(std::move(r));
    }
    for (int s = 0; s < steps; ++s)
      for (Run& r : runs) {
        const double t0 = now_seconds();
        const auto lg = engine.decode(r.seq, r.next);
        r.seconds += now_seconds() - t0;
        r.next = argmax(lg.data(), V);
      }
    nlohmann::json j;
    j["model"] = argv[1];
    j["depth"] = depth;
    j["steps"] = steps;
    j["threads"] = eo.threads;
    for (const Run& r : runs) {
      nlohmann::json o{{"policy", r.spec},
                       {"tokens_per_second", steps / r.seconds},
                       {"slowdown_vs_baseline", r.seconds / runs[0].seconds},
                       {"kv_bytes", engine.kv().bytes_sequence(r.seq)},
                       {"prefill_seconds", r.prefill_seconds}};
      if (r.comp && r.comp->report().specache) {
        const SpeCacheStats& sc = r.comp->report().spec;
        o["specache"] = {{"prefetch_hit_rate", sc.hit_rate()},
                         {"steps", sc.steps},
                         {"guesses", sc.guesses},
                         {"guess_hits", sc.guess_hits},
                         {"cold_bytes", sc.cold_bytes},
                         {"cold_bytes_read", sc.cold_bytes_read},
                         {"inline_reads", sc.inline_reads},
                         {"prefetch", sc.thread_prefetch ? "thread" : "sync"}};
      }
      j["results"].push_back(o);
    }
    std::puts(j.dump(2).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode_ab: %s\n", e.what());
    return 1;
  }
}
