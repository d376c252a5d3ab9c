// Every SIMD kernel computes what the scalar reference computes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "tensor/fp16.h"
#include "tensor/kernels.h"
#include "tensor/quant.h"

namespace kvwise {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}

std::vector<Isa> simd_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Avx2, Isa::Avx512})
    if (isa_supported(i)) out.push_back(i);
  return out;
}

// Every SIMD kernel set, with AVX-512's second route for 1-bit KV (mask registers, for CPUs without
// VBMI/GFNI) next to the one this CPU picks.
std::vector<const Kernels*> simd_kernel_sets() {
  std::vector<const Kernels*> out;
  for (Isa i : simd_isas()) out.push_back(&kernels_for(i));
  if (isa_supported(Isa::Avx512)) out.push_back(&kernels_avx512_masks());
  return out;
}

TEST(Kernels, GemvMatchesScalarForEveryType) {
  const int64_t cols = 512, rows = 37;
  const auto w = random_vec(static_cast<size_t>(cols * rows), 1);
  const auto x = random_vec(static_cast<size_t>(cols), 2);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const size_t rb = row_bytes(t, cols);
    std::vector<uint8_t> q(rb * rows);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, &w[static_cast<size_t>(r * cols)], &q[rb * r], cols);
    std::vector<float> ref(rows), got(rows);
    kernels_scalar().gemv_rows(t, q.data(), rb, x.data(), cols, ref.data(), 0, rows);
    for (Isa isa : simd_isas()) {
      kernels_for(isa).gemv_rows(t, q.data(), rb, x.data(), cols, got.data(), 0, rows);
      for (int64_t r = 0; r < rows; ++r)
        ASSERT_NEAR(got[r], ref[r], 1e-4 * (1 + std::fabs(ref[r])))
            << dtype_name(t) << " " << kernels_for(isa).isa_name;
    }
  }
}

TEST(Kernels, AttentionScoresAndAccumulateMatchScalar) {
  for (int hd : {8, 64, 128, 40}) {
    for (bool f16 : {false, true}) {
      const int n = 29, nq = 3;
      const auto kf = random_vec(static_cast<size_t>(n * hd), 3);
      std::vector<uint16_t> kh(kf.size());
      for (size_t i = 0; i < kf.size(); ++i) kh[i] = fp32_to_fp16(kf[i]);
      const void* K = f16 ? static_cast<const void*>(kh.data()) : kf.data();
      const auto q = random_vec(static_cast<size_t>(nq * hd), 4);
      const auto p = random_vec(static_cast<size_t>(nq * n), 5);
      std::vector<float> s_ref(static_cast<size_t>(nq * n)), s_got(s_ref.size());
      std::vector<float> o_ref(static_cast<size_t>(nq * hd), 0.5f), o_got(o_ref);
      kernels_scalar().kv_scores(f16, K, n, hd, q.data(), nq, 0.125f, s_ref.data(), n);
      kernels_scalar().kv_accum(f16, K, n, hd, p.data(), nq, n, o_ref.data());
      for (Isa isa : simd_isas()) {
        std::fill(o_got.begin(), o_got.end(), 0.5f);
        kernels_for(isa).kv_scores(f16, K, n, hd, q.data(), nq, 0.125f, s_got.data(), n);
        kernels_for(isa).kv_accum(f16, K, n, hd, p.data(), nq, n, o_got.data());
        for (size_t i = 0; i < s_ref.size(); ++i) ASSERT_NEAR(s_got[i], s_ref[i], 1e-5) << hd << f16;
        for (size_t i = 0; i < o_ref.size(); ++i) ASSERT_NEAR(o_got[i], o_ref[i], 1e-4) << hd << f16;
      }
    }
  }
}

TEST(Kernels, LowBitKvKernelsMatchScalar) {
  // Random codes and F16 params; per-token keys/values and per-channel key groups (32 and 64 tokens) at
  // every width, including tails (n not a multiple of 4, groups of 8 channels, more query rows than one
  // batch or register block) and runs longer than one tile of prepared weights (300 tokens).
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int bits : {1, 2, 4, 8})
    for (int hd : {64, 128, 8})
      for (int group : {8, 32, 64})
        for (int n : {37, 300}) {
          if (group > hd || hd % group) continue;
          const int nq = 18, groups = hd / group;
          std::vector<uint8_t> codes(
              static_cast<size_t>(std::max(n, 64) * hd * bits / 8));  // also a 64-token key group
          for (auto& c : codes) c = static_cast<uint8_t>(byte(rng));
          std::vector<uint16_t> params(static_cast<size_t>(2 * n * std::max(groups, hd)));
          for (auto& p : params) p = fp32_to_fp16(u(rng));
          std::vector<float> q(static_cast<size_t>(nq * hd)), P(static_cast<size_t>(nq * n));
          for (auto& x : q) x = u(rng);
          for (auto& x : P) x = u(rng) > 0.3f ? u(rng) : 0.0f;  // zero weights are skipped: must stay exact
          std::vector<float> s_ref(static_cast<size_t>(nq * n)), s_got(s_ref.size());
          std::vector<float> o_ref(static_cast<size_t>(nq * hd), 0.5f), o_got(o_ref);
          kernels_scalar().qk_tokens(bits, codes.data(), params.data(), n, hd, group, q.data(), nq, 0.25f, s_ref.data(),
                                     n);
          kernels_scalar().qv_accum(bits, codes.data(), params.data(), n, hd, group, P.data(), nq, n, o_ref.data());
          const std::string what = std::to_string(bits) + " bits, hd " + std::to_string(hd) + ", group " +
                                   std::to_string(group) + ", n " + std::to_string(n) + ", ";
          for (const Kernels* ks : simd_kernel_sets()) {
            std::fill(o_got.begin(), o_got.end(), 0.5f);
            ks->qk_tokens(bits, codes.data(), params.data(), n, hd, group, q.data(), nq, 0.25f, s_got.data(), n);
            ks->qv_accum(bits, codes.data(), params.data(), n, hd, group, P.data(), nq, n, o_got.data());
            for (size_t i = 0; i < s_ref.size(); ++i)
              ASSERT_NEAR(s_got[i], s_ref[i], 1e-3 * (1 + std::fabs(s_ref[i]))) << what << ks->isa_name;
            for (size_t i = 0; i < o_ref.size(); ++i)
              ASSERT_NEAR(o_got[i], o_ref[i], 1e-3 * (1 + std::fabs(o_ref[i]))) << what << ks->isa_name;
          }
          for (int g : {32, 64}) {  // tokens of a per-channel key group
            std::vector<float> c_ref(static_cast<size_t>(nq * g)), c_got(c_ref.size());
            kernels_scalar().qk_channels(bits, codes.data(), params.data(), g, hd, q.data(), nq, 0.25f, c_ref.data(),
                                         g);
            for (const Kernels* ks : simd_kernel_sets()) {
              ks->qk_channels(bits, codes.data(), params.data(), g, hd, q.data(), nq, 0.25f, c_got.data(), g);
              for (size_t i = 0; i < c_ref.size(); ++i)
                ASSERT_NEAR(c_got[i], c_ref[i], 1e-3 * (1 + std::fabs(c_ref[i])))
                    << what << "g " << g << ", " << ks->isa_name;
            }
          }
        }
}

TEST(Kernels, HalfToFloatMatchesScalar) {
  const auto x = random_vec(1000, 9);
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = fp32_to_fp16(x[i] * 1000.0f);
  std::vector<float> ref(x.size()), got(x.size());
  kernels_scalar().f16_to_f32(h.data(), ref.data(), 1000);
  for (const Kernels* ks : simd_kernel_sets()) {
    ks->f16_to_f32(h.data(), got.data(), 1000);
    EXPECT_EQ(ref, got);
  }
  // BF16: the top half of the float's bits, so the widened values are exact.
  for (size_t i = 0; i < x.size(); ++i) h[i] = fp32_to_bf16(x[i] * 1000.0f);
  kernels_scalar().bf16_to_f32(h.data(), ref.data(), 1000);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(ref[i], x[i] * 1000.0f, std::fabs(x[i] * 1000.0f) / 128) << i;
  for (const Kernels* ks : simd_kernel_sets()) {
    ks->bf16_to_f32(h.data(), got.data(), 999);  // and a tail
    EXPECT_TRUE(std::equal(ref.begin(), ref.begin() + 999, got.begin())) << ks->isa_name;
  }
}

TEST(Kernels, MaxOfMatchesScalar) {
  for (int64_t n : {0, 1, 15, 16, 33, 1000}) {
    auto x = random_vec(static_cast<size_t>(n), 13 + static_cast<unsigned>(n));
    if (n > 20) x[static_cast<size_t>(n) - 3] = 7.5f;  // the maximum in the scalar tail
    if (n == 33) x[17] = -std::numeric_limits<float>::infinity();
    const float ref = kernels_scalar().max_of(x.data(), n);
    if (n == 0) {
      EXPECT_EQ(ref, -std::numeric_limits<float>::infinity());
    }
    if (n > 20) {
      EXPECT_EQ(ref, 7.5f);
    }
    for (Isa isa : simd_isas()) EXPECT_EQ(kernels_for(isa).max_of(x.data(), n), ref) << n << kernels_for(isa).isa_name;
  }
}

TEST(Kernels, ExpShiftSumIsAccurate) {
  std::vector<float> x;
  for (int i = 0; i < 1003; ++i) x.push_back(-100.0f + 0.2f * static_cast<float>(i));  // exp(-190 .. 10.4)
  for (Isa isa : simd_isas()) {
    std::vector<float> got = x;
    const float sum = kernels_for(isa).exp_shift_sum(got.data(), static_cast<int64_t>(got.size()), 90.0f);
    double ref_sum = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      // Reference on the same float argument: float rounding of x - shift is not the kernel's error.
      const double ref = std::exp(static_cast<double>(x[i] - 90.0f));
      ref_sum += ref;
      if (ref > 1e-37)
        ASSERT_NEAR(got[i] / ref, 1.0, 2e-6) << "x = " << x[i] << " " << kernels_for(isa).isa_name;
      else
        ASSERT_LT(got[i], 1e-30f);
    }
    EXPECT_NEAR(sum / ref_sum, 1.0, 1e-5);
  }
}

}  // namespace
}  // namespace kvwise
