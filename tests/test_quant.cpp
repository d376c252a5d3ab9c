// Quantizers: round-trip error bounds per type, and the layout against hand-made blocks.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

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
