// Micro-benchmarks of what a compression policy adds to a prefill, on one layer shaped like
// smollm-135m (9 query heads, 3 KV heads, head dim 64) at a context of 4096 or 16384 tokens:
//   Attention/<ctx>/<taps>   the last 512-query prefill chunk's attention, without taps (0), with
//                            SnapKV's window taps (1), with CAKE's window + entropy taps (2), with
//                            H2O's cumulative column sums (3);
//   Select/<ctx>/<policy>    scoring from the taps, selection and page release of that layer at a
//                            10 % budget (0 snapkv, 1 adakv, 2 sagekv, 3 h2o).
// Compare each against Attention/<ctx>/0 and multiply by the layer count for a model-level share.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "compress/registry.h"
#include "kv/attention.h"

namespace kvwise {
namespace {

constexpr int kHeads = 9, kKvHeads = 3, kDim = 64, kChunk = 512;

struct Layer {
  KvLayout layout{1, kHeads, kKvHeads, kDim, DType::F16, 32};
  KvStore kv{layout};
  SeqId seq = kv.create_sequence();
  std::vector<float> q;
  std::vector<int32_t> pos;
  std::vector<float> out;

  explicit Layer(int ctx) {
    std::mt19937 rng(1);
    std::normal_distribution<float> N(0, 1);
    std::vector<float> k(kDim), v(kDim);
    for (int i = 0; i < ctx; ++i)
      for (int h = 0; h < kKvHeads; ++h) {
        for (int c = 0; c < kDim; ++c) k[static_cast<size_t>(c)] = N(rng), v[static_cast<size_t>(c)] = N(rng);
        kv.append(seq, 0, h, k.data(), v.data(), i);
      }
    q.resize(static_cast<size_t>(kChunk) * kHeads * kDim);
    for (float& x : q) x = N(rng);
    for (int i = ctx - kChunk; i < ctx; ++i) pos.push_back(i);
    out.resize(q.size());
  }
  void attend_chunk(ThreadPool& pool) {
    attend(pool, kv, seq, 0, {q.data(), kHeads * kDim, pos.data(), kChunk, out.data(), kHeads * kDim});
  }
};

TapConfig taps_for(int kind, int ctx) {
  TapConfig cfg;
  cfg.enabled = kind > 0;
  cfg.prompt_end = ctx;
  if (kind == 1 || kind == 2) cfg.window = 32;
  cfg.window_entropy = kind == 2;
  cfg.col_sums = kind == 3;
  return cfg;
}

void BM_Attention(benchmark::State& state) {
  const int ctx = static_cast<int>(state.range(0)), kind = static_cast<int>(state.range(1));
  Layer layer(ctx);
  ThreadPool pool(2);
  for (auto _ : state) {
    state.PauseTiming();
    layer.kv.set_taps(layer.seq, taps_for(kind, ctx));
    state.ResumeTiming();
    layer.attend_chunk(pool);
    benchmark::DoNotOptimize(layer.out.data());
  }
}

void BM_Select(benchmark::State& state) {
  const int ctx = static_cast<int>(state.range(0));
  const char* specs[] = {"snapkv", "adakv", "sagekv", "h2o"};
  const auto policy = make_policy(specs[state.range(1)], Budget::parse("0.1"));
  ThreadPool pool(2);
  for (auto _ : state) {
    state.PauseTiming();
    Layer layer(ctx);
    KvCompressor comp(policy, layer.layout, 0, ctx, RopeInfo{});
    layer.kv.set_taps(layer.seq, comp.prefill_taps());
    layer.attend_chunk(pool);
    state.ResumeTiming();
    comp.after_attention(layer.kv, layer.seq,
                         {0, layer.q.data(), layer.out.data(), kHeads * kDim, layer.pos.data(), kChunk});
    benchmark::DoNotOptimize(layer.kv.bytes_sequence(layer.seq));
  }
}

BENCHMARK(BM_Attention)->ArgsProduct({{4096, 16384}, {0, 1, 2, 3}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Select)
    ->ArgsProduct({{4096, 16384}, {0, 1, 2, 3}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(5);

}  // namespace
}  // namespace kvwise

BENCHMARK_MAIN();
