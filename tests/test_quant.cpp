// Quantizers: round-trip error bounds per type, and the layout against hand-made blocks.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "base/error.h"
#include "model/quantize_mix.h"
#include "tensor/fp16.h"
#include "tensor/quant.h"
#include "tensor/quant_blocks.h"

namespace kvwise {
namespace {

std::vector<float> random_row(int n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = d(rng);
  return x;
}

// Relative RMS error of quantize -> dequantize.
double roundtrip_error(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_bytes(t, static_cast<int64_t>(x.size())));
  std::vector<float> y(x.size());
  quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
  dequantize_row(t, q.data(), y.data(), static_cast<int64_t>(x.size()));
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += x[i] * x[i];
  }
  return std::sqrt(num / den);
}

TEST(Quant, RoundTripErrorBounds) {
  const auto x = random_row(4096, 7);
  EXPECT_EQ(roundtrip_error(DType::F32, x), 0.0);
  EXPECT_LT(roundtrip_error(DType::F16, x), 1e-3);
  EXPECT_LT(roundtrip_error(DType::BF16, x), 5e-3);
  EXPECT_LT(roundtrip_error(DType::Q8_0, x), 0.01);
  EXPECT_LT(roundtrip_error(DType::Q6_K, x), 0.04);
  EXPECT_LT(roundtrip_error(DType::Q4_0, x), 0.15);
  EXPECT_LT(roundtrip_error(DType::Q4_K, x), 0.15);
  // Fewer bits, more error: the types are ordered as their bit widths say.
  EXPECT_LT(roundtrip_error(DType::Q8_0, x), roundtrip_error(DType::Q6_K, x));
  EXPECT_LT(roundtrip_error(DType::Q6_K, x), roundtrip_error(DType::Q4_K, x));
  // The 5-bit writers (llama.cpp's Q5_K_M base and its Q4_K/Q5_K fallbacks).
  EXPECT_LT(roundtrip_error(DType::Q5_0, x), 0.08);
  EXPECT_LT(roundtrip_error(DType::Q5_1, x), 0.08);
  EXPECT_LT(roundtrip_error(DType::Q5_K, x), 0.08);
  EXPECT_LT(roundtrip_error(DType::Q5_K, x), roundtrip_error(DType::Q4_K, x));
  EXPECT_LT(roundtrip_error(DType::Q5_0, x), roundtrip_error(DType::Q4_0, x));
}

// llama.cpp's preset mix (llama_tensor_get_type), on the tensors of a 2-layer model of SmolLM's width
// (576: not a multiple of 256) and of a 1024-wide one with a separate output matrix.
TEST(QuantMix, FollowsLlamaCppPresets) {
  const QuantPreset q4km = quant_preset("Q4_K_M");
  const QuantModelInfo tied{2, 2, false}, untied{2, 2, true};
  const auto type = [](const QuantPreset& p, const QuantModelInfo& m, const std::string& name, int64_t cols,
                       int v = 0) { return dtype_name(choose_tensor_type(p, m, name, 2, cols, v).type); };
  // 1024 wide: the tied embedding is the output (Q6_K); attn_v / ffn_down get Q6_K on the last layer
  // (use_more_bits: the first and last eighth, every third between).
  EXPECT_STREQ(type(q4km, tied, "token_embd.weight", 1024), "Q6_K");
  EXPECT_STREQ(type(q4km, untied, "token_embd.weight", 1024), "Q4_K");
  EXPECT_STREQ(type(q4km, untied, "output.weight", 1024), "Q6_K");
  EXPECT_STREQ(type(q4km, tied, "blk.0.attn_v.weight", 1024, 0), "Q4_K");
  EXPECT_STREQ(type(q4km, tied, "blk.1.attn_v.weight", 1024, 1), "Q6_K");
  EXPECT_STREQ(type(q4km, tied, "blk.0.ffn_down.weight", 3072), "Q4_K");
  EXPECT_STREQ(type(q4km, tied, "blk.1.ffn_down.weight", 3072), "Q6_K");
  EXPECT_STREQ(type(q4km, tied, "blk.0.attn_q.weight", 1024), "Q4_K");
  EXPECT_STREQ(type(q4km, tied, "blk.0.attn_qkv.weight", 1024, 0), "Q4_K");  // counted as attn_v
  EXPECT_STREQ(type(q4km, tied, "blk.1.attn_qkv.weight", 1024, 1), "Q6_K");
  // 576 wide: Q4_K falls back to Q5_0, Q6_K to Q8_0, the output to Q8_0.
  EXPECT_STREQ(type(q4km, tied, "token_embd.weight", 576), "Q8_0");
  EXPECT_STREQ(type(q4km, tied, "blk.0.attn_q.weight", 576), "Q5_0");
  EXPECT_STREQ(type(q4km, tied, "blk.1.attn_v.weight", 576, 1), "Q8_0");
  EXPECT_STREQ(type(quant_preset("q5_k_m"), tied, "blk.0.attn_q.weight", 576), "Q5_1");
  // Other presets: the output is Q6_K unless the preset is Q8_0; 1-D tensors stay F32.
  EXPECT_STREQ(type(quant_preset("q4_0"), untied, "output.weight", 1024), "Q6_K");
  EXPECT_STREQ(type(quant_preset("q8_0"), untied, "output.weight", 1024), "Q8_0");
  EXPECT_STREQ(type(quant_preset("q4_0"), untied, "blk.0.ffn_down.weight", 3072), "Q4_0");
  EXPECT_EQ(choose_tensor_type(q4km, tied, "blk.0.attn_norm.weight", 1, 1024, 0).type, DType::F32);
  EXPECT_THROW(quant_preset("q3_k_xl"), Error);
}

TEST(Quant, ZerosStayZero) {
  std::vector<float> x(256, 0.0f), y(256, 1.0f);
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    std::vector<uint8_t> q(row_bytes(t, 256));
    quantize_row(t, x.data(), q.data(), 256);
    dequantize_row(t, q.data(), y.data(), 256);
    for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_name(t);
  }
}

TEST(Quant, Q4_0LayoutMatchesGgml) {
  // Element j in the low nibble of qs[j], element j + 16 in the high nibble; value = (q - 8) * d.
  BlockQ4_0 b{};
  b.d = fp32_to_fp16(0.5f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>((j & 0xF) | ((15 - j) << 4));
  float y[32];
  dequantize_row(DType::Q4_0, &b, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f);
    EXPECT_EQ(y[j + 16], (15 - j - 8) * 0.5f);
  }
}

TEST(Quant, Q8_0LayoutMatchesGgml) {
  BlockQ8_0 b{};
  b.d = fp32_to_fp16(0.25f);
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j - 16);
  float y[32];
  dequantize_row(DType::Q8_0, &b, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], (j - 16) * 0.25f);
}

TEST(Quant, HalfConversionsAreExactWhereRepresentable) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604645e-08f})
    EXPECT_EQ(fp16_to_fp32(fp32_to_fp16(f)), f) << f;
  EXPECT_TRUE(std::isinf(fp16_to_fp32(fp32_to_fp16(1e6f))));
  EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(1.5f)), 1.5f);
  // Round to nearest even at the half-way point.
  EXPECT_EQ(fp16_to_fp32(fp32_to_fp16(1.0f + 1.0f / 2048.0f)), 1.0f);
}

TEST(Quant, RejectsRowsThatAreNotWholeBlocks) {
  std::vector<float> x(40);
  std::vector<uint8_t> q(64);
  EXPECT_THROW(quantize_row(DType::Q8_0, x.data(), q.data(), 40), std::exception);
  EXPECT_THROW(parse_dtype("q3_xs"), std::exception);
}

}  // namespace
}  // namespace kvwise
