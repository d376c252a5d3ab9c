// Decode attention over the 30 layers of a 16K-token SmolLM-135M-shaped cache (3 KV heads, 9 query heads,
// head_dim 64: 377 MiB at F16, so it streams from memory as real decoding does), 2 threads: F16 pages against the same
// tokens demoted to low-precision segments, with one query row (plain decode) and two (SpeCache's real + speculative
// token). Tokens/s of the attention alone; docs/results/low-precision.md has the end-to-end decode numbers.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "kv/attention.h"

namespace kvwise {
namespace {

constexpr int kTokens = 16384, kLayers = 30, kHeads = 9, kKvHeads = 3, kHeadDim = 64;

void BM_DecodeAttention(benchmark::State& state, const char* name, QuantFormat fmt, bool demote, int T) {
  KvStore kv({kLayers, kHeads, kKvHeads, kHeadDim, DType::F16, 32});
  ThreadPool pool(2);
  const SeqId seq = kv.create_sequence();
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> k(kHeadDim), v(kHeadDim);
  std::vector<int> keep;
  for (int t = kTokens - 64; t < kTokens; ++t) keep.push_back(t);  // a 64-token exact residual
  for (int l = 0; l < kLayers; ++l)
    for (int h = 0; h < kKvHeads; ++h) {
      for (int t = 0; t < kTokens; ++t) {
        for (int c = 0; c < kHeadDim; ++c) k[static_cast<size_t>(c)] = nd(rng), v[static_cast<size_t>(c)] = nd(rng);
        kv.append(seq, l, h, k.data(), v.data(), t);
      }
      if (demote) kv.demote(seq, l, h, keep, fmt);
    }
  std::vector<float> q(static_cast<size_t>(T * kHeads * kHeadDim)), out(q.size());
  for (auto& x : q) x = nd(rng);
  std::vector<int32_t> pos(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) pos[static_cast<size_t>(t)] = kTokens - 1 + t;
  for (auto _ : state) {
    for (int l = 0; l < kLayers; ++l)
      attend(pool, kv, seq, l, {q.data(), kHeads * kHeadDim, pos.data(), T, out.data(), kHeads * kHeadDim},
             AttentionPath::Direct);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());  // tokens (all layers)
  state.counters["kv_bytes"] = static_cast<double>(kv.bytes_sequence(seq));
  state.SetLabel(name);
}

const QuantFormat kInt4{KvPrecision::Int4, KvPrecision::Int4, false, 32};
const QuantFormat kInt8{KvPrecision::Int8, KvPrecision::Int8, false, 32};
const QuantFormat kInt1Ch{KvPrecision::Int1, KvPrecision::Int1, true, 64};
const QuantFormat kInt2Ch{KvPrecision::Int2, KvPrecision::Int2, true, 64};
BENCHMARK_CAPTURE(BM_DecodeAttention, f16_pages_T1, "f16", kInt4, false, 1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeAttention, int8_T1, "kv-int8", kInt8, true, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeAttention, int4_T1, "kv-int4", kInt4, true, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeAttention, f16_pages_T2, "f16", kInt4, false, 2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeAttention, int1ch_T2, "specache int1", kInt1Ch, true, 2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeAttention, int2ch_T2, "specache int2", kInt2Ch, true, 2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace kvwise

BENCHMARK_MAIN();
