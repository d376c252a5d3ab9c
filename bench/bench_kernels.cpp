// Micro-benchmarks of the hot kernels per instruction set: GEMV rows per weight type (bytes/s is
// the figure to watch: decode is memory-bound) and attention scores/accumulation over KV pages.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "tensor/fp16.h"
#include "tensor/kernels.h"
#include "tensor/packed.h"
#include "tensor/quant.h"

namespace kvwise {
namespace {

std::vector<float> random_vec(size_t n) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void BM_Gemv(benchmark::State& state, Isa isa, DType type) {
  if (!isa_supported(isa)) {
    state.SkipWithError("instruction set not supported");
    return;
  }
  const int64_t cols = 2048, rows = 2048;
  const size_t rb = row_bytes(type, cols);
  std::vector<uint8_t> w(rb * rows);
  const auto src = random_vec(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, src.data(), &w[rb * r], cols);
  const auto x = random_vec(static_cast<size_t>(cols));
  std::vector<float> y(static_cast<size_t>(rows));
  const Kernels& k = kernels_for(isa);
  for (auto _ : state) {
    k.gemv_rows(type, w.data(), rb, x.data(), cols, y.data(), 0, rows);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

// Packed integer kernels (tensor/packed.h) on one thread: nx activation rows (1 = decode, 32 = a
// prefill tile) against a rows x 2048 matrix: 4,096 rows stay in the caches, 65,536 rows (72-136 MiB)
// stream from DRAM, which is the decode case.
void BM_Packed(benchmark::State& state, DType type, int nx, int64_t rows) {
  const int64_t cols = 2048;
  const size_t rb = row_bytes(type, cols);
  std::vector<uint8_t> w(rb * static_cast<size_t>(rows));
  std::mt19937 rng(3);
  if (type == DType::Q5_K) {  // no quantizer for Q5_K: random codes, small scales
    for (auto& b : w) b = static_cast<uint8_t>(rng());
    for (size_t o = 0; o < w.size(); o += 176) {
      const uint16_t d = fp32_to_fp16(0.01f);
      std::memcpy(&w[o], &d, 2);
      std::memcpy(&w[o + 2], &d, 2);
    }
  } else {
    const auto src = random_vec(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) quantize_row(type, src.data(), &w[rb * static_cast<size_t>(r)], cols);
  }
  std::vector<uint8_t> packed(static_cast<size_t>(rows / kPackRows) * packed_group_bytes(type, cols));
  pack_rows(type, w.data(), rb, rows, cols, packed.data());
  w.clear();
  w.shrink_to_fit();
  const auto x = random_vec(static_cast<size_t>(cols * nx));
  QuantizedRows q;
  q.resize(nx, cols, activation_block(type));
  const Kernels& k = kernels();
  for (int i = 0; i < nx; ++i) q.quantize_row(i, x.data() + i * cols, k.quantize_row_q8);
  std::vector<QuantizedRow> xr;
  for (int i = 0; i < nx; ++i) xr.push_back(q.row(i));
  std::vector<float> y(static_cast<size_t>(rows * nx));
  for (auto _ : state) {
    k.gemm_packed(type, packed.data(), cols, xr.data(), nx, y.data(), rows, 0, rows / kPackRows);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(packed.size()));
  state.counters["GMAC/s"] =
      benchmark::Counter(static_cast<double>(rows * cols * nx) * 1e-9 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

void BM_KvScores(benchmark::State& state, Isa isa) {
  if (!isa_supported(isa)) {
    state.SkipWithError("instruction set not supported");
    return;
  }
  const int n = 4096, hd = 64, nq = 3;
  const auto kf = random_vec(static_cast<size_t>(n * hd));
  std::vector<uint16_t> kh(kf.size());
  for (size_t i = 0; i < kf.size(); ++i) kh[i] = fp32_to_fp16(kf[i]);
  const auto q = random_vec(static_cast<size_t>(nq * hd));
  std::vector<float> s(static_cast<size_t>(nq * n)), out(static_cast<size_t>(nq * hd));
  const Kernels& k = kernels_for(isa);
  for (auto _ : state) {
    k.kv_scores(true, kh.data(), n, hd, q.data(), nq, 0.125f, s.data(), n);
    k.kv_accum(true, kh.data(), n, hd, s.data(), nq, n, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * static_cast<int64_t>(kh.size() * 2));
}

}  // namespace
}  // namespace kvwise

using kvwise::BM_Gemv;
using kvwise::BM_KvScores;
using kvwise::BM_Packed;
using kvwise::DType;
using kvwise::Isa;
BENCHMARK_CAPTURE(BM_Gemv, scalar_f16, Isa::Scalar, DType::F16);
BENCHMARK_CAPTURE(BM_Gemv, avx2_f16, Isa::Avx2, DType::F16);
BENCHMARK_CAPTURE(BM_Gemv, avx512_f16, Isa::Avx512, DType::F16);
BENCHMARK_CAPTURE(BM_Gemv, avx2_q8_0, Isa::Avx2, DType::Q8_0);
BENCHMARK_CAPTURE(BM_Gemv, avx512_q8_0, Isa::Avx512, DType::Q8_0);
BENCHMARK_CAPTURE(BM_Gemv, avx2_q4_0, Isa::Avx2, DType::Q4_0);
BENCHMARK_CAPTURE(BM_Gemv, avx512_q4_0, Isa::Avx512, DType::Q4_0);
BENCHMARK_CAPTURE(BM_Gemv, avx512_q4_k, Isa::Avx512, DType::Q4_K);
BENCHMARK_CAPTURE(BM_Gemv, avx512_q6_k, Isa::Avx512, DType::Q6_K);
BENCHMARK_CAPTURE(BM_Gemv, avx512_f32, Isa::Avx512, DType::F32);
BENCHMARK_CAPTURE(BM_Packed, q4_0_decode_dram, DType::Q4_0, 1, 65536);
BENCHMARK_CAPTURE(BM_Packed, q8_0_decode_dram, DType::Q8_0, 1, 65536);
BENCHMARK_CAPTURE(BM_Packed, q4_k_decode_dram, DType::Q4_K, 1, 65536);
BENCHMARK_CAPTURE(BM_Packed, q5_k_decode_dram, DType::Q5_K, 1, 65536);
BENCHMARK_CAPTURE(BM_Packed, q6_k_decode_dram, DType::Q6_K, 1, 65536);
BENCHMARK_CAPTURE(BM_Packed, q4_0_prefill32, DType::Q4_0, 32, 4096);
BENCHMARK_CAPTURE(BM_Packed, q8_0_prefill32, DType::Q8_0, 32, 4096);
BENCHMARK_CAPTURE(BM_Packed, q4_k_prefill32, DType::Q4_K, 32, 4096);
BENCHMARK_CAPTURE(BM_Packed, q5_k_prefill32, DType::Q5_K, 32, 4096);
BENCHMARK_CAPTURE(BM_Packed, q6_k_prefill32, DType::Q6_K, 32, 4096);
BENCHMARK_CAPTURE(BM_KvScores, scalar, Isa::Scalar);
BENCHMARK_CAPTURE(BM_KvScores, avx2, Isa::Avx2);
BENCHMARK_CAPTURE(BM_KvScores, avx512, Isa::Avx512);
BENCHMARK_MAIN();
