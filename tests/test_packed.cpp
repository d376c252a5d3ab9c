// Packed 8-row weight groups: the layout keeps every value, the integer products equal the float
// definition up to activation rounding, and every SIMD kernel equals the scalar reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/thread_pool.h"
#include "tensor/fp16.h"
#include "tensor/kernels.h"
#include "tensor/matmul.h"
#include "tensor/packed.h"
#include "tensor/quant.h"
#include "tensor/quant_blocks.h"

namespace kvwise {
namespace {

constexpr DType kPackedTypes[] = {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<float> random_vec(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}

// A quantized matrix: kvwise's quantizer where it has one, else (Q5_K) random codes, scales and mins.
std::vector<uint8_t> random_matrix(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  const size_t rb = row_bytes(t, cols);
  std::vector<uint8_t> m(rb * static_cast<size_t>(rows));
  if (t == DType::Q5_K) {
    std::mt19937 rng(seed);
    for (auto& b : m) b = static_cast<uint8_t>(rng());
    for (size_t off = 0; off < m.size(); off += sizeof(BlockQ5_K)) {
      auto* blk = reinterpret_cast<BlockQ5_K*>(&m[off]);
      blk->d = fp32_to_fp16(0.002f + 0.001f * static_cast<float>(rng() % 8));
      blk->dmin = fp32_to_fp16(0.001f * static_cast<float>(rng() % 8));
    }
    return m;
  }
  const auto w = random_vec(static_cast<size_t>(rows * cols), seed);
  for (int64_t r = 0; r < rows; ++r) quantize_row(t, &w[static_cast<size_t>(r * cols)], &m[rb * r], cols);
  return m;
}

std::vector<uint8_t> packed_of(DType t, const std::vector<uint8_t>& m, int64_t rows, int64_t cols) {
  std::vector<uint8_t> p(static_cast<size_t>(rows / kPackRows) * packed_group_bytes(t, cols));
  pack_rows(t, m.data(), row_bytes(t, cols), rows, cols, p.data());
  return p;
}

std::vector<const Kernels*> simd_sets() {
  std::vector<const Kernels*> out;
  for (Isa i : {Isa::Avx2, Isa::Avx512})
    if (isa_supported(i)) out.push_back(&kernels_for(i));
  return out;
}

TEST(Packed, LayoutKeepsEveryValue) {
  const int64_t rows = 24, cols = 512;
  for (DType t : kPackedTypes) {
    ASSERT_TRUE(packable(t, rows, cols)) << dtype_name(t);
    const auto m = random_matrix(t, rows, cols, 3);
    const auto p = packed_of(t, m, rows, cols);
    std::vector<float> unpacked(static_cast<size_t>(8 * cols)), ref(static_cast<size_t>(cols));
    for (int64_t g = 0; g < rows / 8; ++g) {
      unpack_group(t, p.data() + static_cast<size_t>(g) * packed_group_bytes(t, cols), cols, unpacked.data());
      for (int r = 0; r < 8; ++r) {
        dequantize_row(t, m.data() + static_cast<size_t>(g * 8 + r) * row_bytes(t, cols), ref.data(), cols);
        for (int64_t c = 0; c < cols; ++c)
          ASSERT_EQ(unpacked[static_cast<size_t>(r * cols + c)], ref[static_cast<size_t>(c)])
              << dtype_name(t) << " row " << g * 8 + r << " col " << c;
      }
    }
  }
}

TEST(Packed, RefusesShapesThatDoNotFit) {
  EXPECT_FALSE(packable(DType::Q4_0, 12, 64));   // rows not a multiple of 8
  EXPECT_FALSE(packable(DType::Q4_K, 16, 576));  // columns not a multiple of 256
  EXPECT_FALSE(packable(DType::F16, 16, 512));   // no packed layout
  EXPECT_TRUE(packable(DType::Q8_0, 16, 576));
}

TEST(Packed, ActivationQuantizersAgree) {
  const int64_t n = 1024;
  auto x = random_vec(static_cast<size_t>(n), 5);
  x[7] = 0.0f;
  std::fill(x.begin() + 256, x.begin() + 288, 0.0f);  // an all-zero block has scale 0
  for (int block : {32, 256}) {
    std::vector<int8_t> q0(n), q1(n);
    std::vector<float> d0(n / block), d1(n / block);
    std::vector<int16_t> s0(n / 16), s1(n / 16);
    quantize_row_q8_reference(x.data(), n, block, q0.data(), d0.data(), s0.data());
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(q0[i] * d0[i / block], x[i], d0[i / block] * 0.5f + 1e-7f) << "rounding bound at " << i;
    for (const Kernels* k : simd_sets()) {
      k->quantize_row_q8(x.data(), n, block, q1.data(), d1.data(), s1.data());
      EXPECT_EQ(q0, q1) << k->isa_name << " block " << block;
      EXPECT_EQ(d0, d1) << k->isa_name;
      EXPECT_EQ(s0, s1) << k->isa_name;
    }
  }
}

TEST(Packed, IntegerProductEqualsFloatDefinition) {
  const int64_t rows = 16, cols = 768;
  const auto x = random_vec(static_cast<size_t>(cols), 9);
  for (DType t : kPackedTypes) {
    const int64_t c = t == DType::Q4_0 || t == DType::Q8_0 ? cols : 512;
    const auto m = random_matrix(t, rows, c, 11);
    const auto p = packed_of(t, m, rows, c);
    QuantizedRows xq;
    xq.resize(1, c, activation_block(t));
    xq.quantize_row(0, x.data(), quantize_row_q8_reference);
    std::vector<float> y(rows);
    gemv_packed_reference(t, p.data(), c, xq.row(0), y.data(), 0, rows / 8);
    std::vector<float> w(static_cast<size_t>(c));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t, m.data() + static_cast<size_t>(r) * row_bytes(t, c), w.data(), c);
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < c; ++i) {
        exact += static_cast<double>(w[i]) * x[i];
        mag += std::fabs(static_cast<double>(w[i]) * x[i]);
      }
      // Activation rounding: at most half a step of 1/127 of a block's largest |x| per element.
      EXPECT_NEAR(y[r], exact, 0.02 * mag + 1e-4) << dtype_name(t) << " row " << r;
    }
  }
}

TEST(Packed, SimdKernelsEqualScalarForEveryRowCount) {
  const int64_t rows = 32;
  // 2,560 columns: the K-quant prefill path tiles 2,048 columns at a time, so a second, partial tile.
  for (const auto& [t, cols] : {std::pair{DType::Q4_0, int64_t{512}}, std::pair{DType::Q8_0, int64_t{512}},
                                std::pair{DType::Q4_K, int64_t{512}}, std::pair{DType::Q5_K, int64_t{512}},
                                std::pair{DType::Q6_K, int64_t{512}}, std::pair{DType::Q4_K, int64_t{2560}},
                                std::pair{DType::Q5_K, int64_t{2560}}, std::pair{DType::Q6_K, int64_t{2560}}}) {
    const auto m = random_matrix(t, rows, cols, 21);
    const auto p = packed_of(t, m, rows, cols);
    for (int nx : {1, 2, 3, 4, 5, 9, 13}) {
      const auto x = random_vec(static_cast<size_t>(nx * cols), 22 + nx);
      QuantizedRows xq;
      xq.resize(nx, cols, activation_block(t));
      for (int i = 0; i < nx; ++i) xq.quantize_row(i, x.data() + i * cols, quantize_row_q8_reference);
      std::vector<QuantizedRow> xr;
      for (int i = 0; i < nx; ++i) xr.push_back(xq.row(i));
      const int64_t g0 = 1, g1 = 4, ldy = 40;  // a sub-range of groups into a wider output
      std::vector<float> ref(static_cast<size_t>(nx * ldy), -1.0f), got(ref);
      kernels_scalar().gemm_packed(t, p.data(), cols, xr.data(), nx, ref.data(), ldy, g0, g1);
      for (const Kernels* k : simd_sets()) {
        std::fill(got.begin(), got.end(), -1.0f);
        k->gemm_packed(t, p.data(), cols, xr.data(), nx, got.data(), ldy, g0, g1);
        for (int i = 0; i < nx; ++i)
          for (int64_t j = 0; j < ldy; ++j) {
            const float r = ref[static_cast<size_t>(i * ldy + j)], v = got[static_cast<size_t>(i * ldy + j)];
            ASSERT_NEAR(v, r, 1e-4 * (1 + std::fabs(r)))
                << dtype_name(t) << " " << k->isa_name << " nx " << nx << " x " << i << " out " << j;
          }
      }
    }
  }
}

// The matmul entry point gives the same product for packed and unpacked weights, for decode-sized and
// prefill-sized inputs and for the fused matmul_many.
TEST(Packed, MatmulWithPackedWeightsMatchesUnpacked) {
  ThreadPool pool(2);
  const int64_t rows = 64, cols = 512;
  for (DType t : kPackedTypes) {
    const auto m = random_matrix(t, rows, cols, 31);
    const auto p = packed_of(t, m, rows, cols);
    WeightView plain{t, m.data(), rows, cols, row_bytes(t, cols)};
    WeightView packed = plain;
    packed.packed = p.data();
    for (int64_t n : {1, 3, 8, 21}) {
      const auto x = random_vec(static_cast<size_t>(n * cols), 40 + static_cast<uint32_t>(n), 0.5f);
      std::vector<float> a(static_cast<size_t>(n * rows)), b(a.size()), c(a.size()), d(a.size());
      matmul(pool, plain, x.data(), n, a.data());
      matmul(pool, packed, x.data(), n, b.data());
      matmul_many(pool, {{&packed, c.data()}, {&plain, d.data()}}, x.data(), n);
      double scale = 0;
      for (float v : a) scale = std::max(scale, static_cast<double>(std::fabs(v)));
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_NEAR(b[i], a[i], 0.03 * scale) << dtype_name(t) << " m " << n << " at " << i;
        ASSERT_FLOAT_EQ(c[i], b[i]) << "matmul_many differs from matmul, " << dtype_name(t);
        ASSERT_FLOAT_EQ(d[i], a[i]);
      }
    }
  }
}

}  // namespace
}  // namespace kvwise
