// Quantisation primitives for low-precision KV: round-trip error within the bound for every bit width
// (the 1-bit quarter-point variant included), packing, the in-register dot product and axpy equal the
// dequantised ones, constant groups, bad widths, and MiKV's balancer identity q'.k' = q.k.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "base/error.h"
#include "kv/kv_quant.h"
#include "kv/quant_segment.h"
#include "tensor/fp16.h"

namespace kvwise {
namespace {

std::vector<float> random_group(std::mt19937& rng, int g, float spread, float outlier = 0) {
  std::normal_distribution<float> d(0.3f, spread);
  std::vector<float> x(static_cast<size_t>(g));
  for (auto& v : x) v = d(rng);
  if (outlier != 0) x[static_cast<size_t>(g) / 3] = outlier;
  return x;
}

TEST(KvQuant, RoundTripStaysWithinTheBound) {
  std::mt19937 rng(7);
  for (int bits : {1, 2, 4, 8})
    for (int g : {32, 64, 128})
      for (int trial = 0; trial < 50; ++trial) {
        const auto x = random_group(rng, g, trial % 2 ? 0.01f : 3.0f, trial % 5 == 0 ? 40.0f : 0.0f);
        std::vector<uint8_t> codes(packed_bytes(g, bits));
        const QuantParams p = quantize_group(x.data(), g, bits, codes.data());
        std::vector<float> y(x.size());
        dequantize_group(codes.data(), g, bits, p, y.data());
        const float mn = *std::min_element(x.begin(), x.end()), mx = *std::max_element(x.begin(), x.end());
        const float bound = quant_error_bound(mn, mx, bits, p);
        float worst = 0;
        for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(x[i] - y[i]));
        EXPECT_LE(worst, bound) << bits << " bits, g " << g;
        // The bound is tight enough to mean something: about half a step (a quarter range at 1 bit).
        EXPECT_LE(bound, (mx - mn) / (bits == 1 ? 3.5f : static_cast<float>((1 << bits) - 1) * 1.8f) + 0.05f);
      }
}

TEST(KvQuant, DotAndAxpyEqualTheDequantisedGroup) {
  std::mt19937 rng(3);
  for (int bits : {1, 2, 4, 8}) {
    const int g = 64;
    const auto x = random_group(rng, g, 1.0f), q = random_group(rng, g, 1.0f);
    std::vector<uint8_t> codes(packed_bytes(g, bits));
    const QuantParams p = quantize_group(x.data(), g, bits, codes.data());
    std::vector<float> y(static_cast<size_t>(g));
    dequantize_group(codes.data(), g, bits, p, y.data());
    double ref = 0;
    for (int i = 0; i < g; ++i) ref += static_cast<double>(q[static_cast<size_t>(i)]) * y[static_cast<size_t>(i)];
    EXPECT_NEAR(dot_quantized(q.data(), codes.data(), g, bits, p), ref, 1e-3 * (1 + std::fabs(ref)));
    std::vector<float> acc(static_cast<size_t>(g), 1.0f);
    axpy_quantized(0.5f, codes.data(), g, bits, p, acc.data());
    for (int i = 0; i < g; ++i) EXPECT_FLOAT_EQ(acc[static_cast<size_t>(i)], 1.0f + 0.5f * y[static_cast<size_t>(i)]);
  }
}

TEST(KvQuant, PacksCodesAndHandlesConstantGroups) {
  EXPECT_EQ(packed_bytes(64, 2), 16u);
  EXPECT_EQ(packed_bytes(64, 1), 8u);
  EXPECT_EQ(packed_bytes(32, 4), 16u);
  EXPECT_THROW(packed_bytes(64, 3), Error);
  EXPECT_THROW(packed_bytes(3, 2), Error);
  const std::vector<float> flat(32, 2.5f);
  std::vector<uint8_t> codes(packed_bytes(32, 2));
  const QuantParams p = quantize_group(flat.data(), 32, 2, codes.data());
  std::vector<float> y(32);
  dequantize_group(codes.data(), 32, 2, p, y.data());
  for (float v : y) EXPECT_FLOAT_EQ(v, 2.5f);
  // Two-bit codes of 0, 1/3, 2/3, 1 of the range land on 0, 1, 2, 3.
  const std::vector<float> ramp = {0, 1, 2, 3, 3, 2, 1, 0};
  std::vector<uint8_t> c4(packed_bytes(8, 2));
  quantize_group(ramp.data(), 8, 2, c4.data());
  EXPECT_EQ(c4[0], 0b11100100);
  EXPECT_EQ(c4[1], 0b00011011);
}

TEST(KvQuant, BalancerKeepsQueryKeyProductsAndFlattensKeys) {
  std::mt19937 rng(11);
  const int d = 16, T = 40, G = 3;
  std::normal_distribution<float> n(0, 1);
  std::vector<std::vector<float>> q(static_cast<size_t>(T * G), std::vector<float>(d)), k(T, std::vector<float>(d));
  for (auto& r : q)
    for (auto& v : r) v = n(rng);
  for (auto& r : k)
    for (int c = 0; c < d; ++c) r[static_cast<size_t>(c)] = n(rng) * (c == 5 ? 30.0f : 1.0f);  // an outlier channel
  std::vector<float> qmax(d, 0), kmax(d, 0);
  for (const auto& r : q)
    for (int c = 0; c < d; ++c)
      qmax[static_cast<size_t>(c)] = std::max(qmax[static_cast<size_t>(c)], std::fabs(r[static_cast<size_t>(c)]));
  for (const auto& r : k)
    for (int c = 0; c < d; ++c)
      kmax[static_cast<size_t>(c)] = std::max(kmax[static_cast<size_t>(c)], std::fabs(r[static_cast<size_t>(c)]));
  const auto b = key_balancer(qmax, kmax);
  for (const auto& qr : q)
    for (const auto& kr : k) {
      double plain = 0, balanced = 0;
      for (int c = 0; c < d; ++c) {
        const size_t i = static_cast<size_t>(c);
        plain += static_cast<double>(qr[i]) * kr[i];
        balanced += static_cast<double>(qr[i] / b[i]) * (kr[i] * b[i]);
      }
      EXPECT_NEAR(balanced, plain, 1e-4 * (1 + std::fabs(plain)));
    }
  // Balanced key and query maxima meet at their geometric mean.
  for (int c = 0; c < d; ++c) {
    const size_t i = static_cast<size_t>(c);
    EXPECT_NEAR(kmax[i] * b[i], std::sqrt(qmax[i] * kmax[i]), 1e-3f * std::sqrt(qmax[i] * kmax[i]));
  }
  EXPECT_LT(kmax[5] * b[5], kmax[5] / 2) << "the outlier channel shrank";
  EXPECT_THROW(key_balancer(std::vector<float>(3), std::vector<float>(4)), Error);
}

// Reference attention over explicit rows.
std::vector<float> reference_attention(const std::vector<std::vector<float>>& K,
                                       const std::vector<std::vector<float>>& V, const std::vector<float>& q,
                                       float scale, std::vector<float>* probs) {
  const size_t n = K.size(), d = q.size();
  std::vector<double> s(n);
  double mx = -1e300;
  for (size_t t = 0; t < n; ++t) {
    double dot = 0;
    for (size_t c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * K[t][c];
    s[t] = dot * scale;
    mx = std::max(mx, s[t]);
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  std::vector<float> out(d, 0.0f);
  if (probs) probs->assign(n, 0.0f);
  for (size_t t = 0; t < n; ++t) {
    if (probs) (*probs)[t] = static_cast<float>(s[t] / sum);
    for (size_t c = 0; c < d; ++c) out[c] += static_cast<float>(s[t] / sum) * V[t][c];
  }
  return out;
}

struct Rows {
  std::vector<std::vector<float>> K, V;
};
Rows random_rows(std::mt19937& rng, int n, int d) {
  std::normal_distribution<float> nd(0, 1);
  Rows r;
  for (int t = 0; t < n; ++t) {
    std::vector<float> k(static_cast<size_t>(d)), v(static_cast<size_t>(d));
    for (int c = 0; c < d; ++c) {
      k[static_cast<size_t>(c)] = nd(rng) * (c == 3 ? 8.0f : 1.0f);  // an outlier key channel
      v[static_cast<size_t>(c)] = nd(rng);
    }
    r.K.push_back(k);
    r.V.push_back(v);
  }
  return r;
}

// Softmax attention of one query over a segment through its own kernels (scores + accumulate).
std::vector<float> segment_attention(const QuantSegment& s, const std::vector<float>& q, float scale,
                                     std::vector<float>* probs) {
  const int n = s.size(), d = s.head_dim();
  std::vector<float> S(static_cast<size_t>(n)), out(static_cast<size_t>(d), 0.0f);
  s.scores(q.data(), 1, scale, 0, n, S.data(), n);
  const float m = *std::max_element(S.begin(), S.end());
  float z = 0;
  for (float& x : S) z += x = std::exp(x - m);
  for (float& x : S) x /= z;
  s.accumulate(S.data(), 1, n, 0, n, out.data());
  if (probs) *probs = S;
  return out;
}

TEST(QuantSegment, PerChannelKeysKeepTheNewestPartialGroupExact) {
  std::mt19937 rng(5);
  const Rows rows = random_rows(rng, 21, 16);
  QuantSegment h({KvPrecision::Int2, KvPrecision::Int2, true, 8}, 16);
  for (int t = 0; t < 21; ++t)
    h.append(rows.K[static_cast<size_t>(t)].data(), rows.V[static_cast<size_t>(t)].data(), 100 + t);
  EXPECT_EQ(h.size(), 21);
  std::vector<float> k(16), v(16);
  for (int t = 0; t < 21; ++t) {
    EXPECT_EQ(h.position(t), 100 + t);
    h.read(t, k.data(), v.data());
    for (int c = 0; c < 16; ++c) {
      const float x = rows.K[static_cast<size_t>(t)][static_cast<size_t>(c)];
      if (t >= 16) {  // two whole key groups; the 5 newest keys wait as exact F16 rows
        EXPECT_EQ(k[static_cast<size_t>(c)], fp16_to_fp32(fp32_to_fp16(x)));
      }
    }
    if (t < 16) {
      EXPECT_NE(k, rows.K[static_cast<size_t>(t)]);  // 2-bit: really quantised
    }
    EXPECT_NE(v, rows.V[static_cast<size_t>(t)]);  // values per token, at once
  }
  EXPECT_THROW(QuantSegment({KvPrecision::Int2, KvPrecision::Int2, false, 12}, 16), Error);  // not a multiple of 8
  EXPECT_THROW(QuantSegment({KvPrecision::F16, KvPrecision::Int2, true, 8}, 16), Error);     // per-channel f16
  EXPECT_THROW(parse_precision("int3"), Error);
}

TEST(QuantSegment, AttentionEqualsAttentionOverTheDequantisedCopy) {
  std::mt19937 rng(9);
  const int d = 64, n = 200;
  const Rows rows = random_rows(rng, n, d);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> q(static_cast<size_t>(d));
  for (auto& x : q) x = nd(rng);
  const float scale = 1.0f / 8;
  const auto exact = reference_attention(rows.K, rows.V, q, scale, nullptr);
  for (bool per_channel : {false, true}) {
    double prev_err = 1e9;
    for (KvPrecision p : {KvPrecision::Int1, KvPrecision::Int2, KvPrecision::Int4, KvPrecision::Int8, KvPrecision::BF16,
                          KvPrecision::F16}) {
      if (per_channel && (p == KvPrecision::F16 || p == KvPrecision::BF16)) continue;
      QuantSegment h({p, p, per_channel, 32}, d);
      for (int t = 0; t < n; ++t)
        h.append(rows.K[static_cast<size_t>(t)].data(), rows.V[static_cast<size_t>(t)].data(), t);
      Rows deq;
      for (int t = 0; t < n; ++t) {
        std::vector<float> k(static_cast<size_t>(d)), v(static_cast<size_t>(d));
        h.read(t, k.data(), v.data());
        deq.K.push_back(k);
        deq.V.push_back(v);
      }
      std::vector<float> ref_p, got_p;
      const auto ref = reference_attention(deq.K, deq.V, q, scale, &ref_p);
      const auto out = segment_attention(h, q, scale, &got_p);
      for (int c = 0; c < d; ++c)
        EXPECT_NEAR(out[static_cast<size_t>(c)], ref[static_cast<size_t>(c)], 2e-4) << precision_name(p);
      for (int t = 0; t < n; ++t) EXPECT_NEAR(got_p[static_cast<size_t>(t)], ref_p[static_cast<size_t>(t)], 1e-5);
      // And the quantised attention approaches the exact one as bits grow.
      double err = 0;
      for (int c = 0; c < d; ++c)
        err =
            std::max(err, static_cast<double>(std::fabs(out[static_cast<size_t>(c)] - exact[static_cast<size_t>(c)])));
      EXPECT_LT(err, prev_err * 1.05) << precision_name(p) << (per_channel ? " per channel" : " per token");
      prev_err = err;
    }
    EXPECT_LT(prev_err, 0.01) << "8/16-bit KV attention is close to exact";
  }
}

TEST(QuantSegment, BalancedKeysGiveTheSameScoresBeforeQuantisation) {
  // With 16-bit storage the balancer must cancel exactly (up to F16 rounding of the balanced keys):
  // q'.k' = q.k. With 2-bit keys and an outlier channel it must lower the score error.
  std::mt19937 rng(3);
  const int d = 64, n = 96;
  const Rows rows = random_rows(rng, n, d);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> q(static_cast<size_t>(d)), qmax(static_cast<size_t>(d), 0.0f), kmax(qmax);
  for (auto& x : q) x = nd(rng);
  for (int c = 0; c < d; ++c) {
    qmax[static_cast<size_t>(c)] = std::fabs(q[static_cast<size_t>(c)]);
    for (const auto& k : rows.K)
      kmax[static_cast<size_t>(c)] = std::max(kmax[static_cast<size_t>(c)], std::fabs(k[static_cast<size_t>(c)]));
  }
  const std::vector<float> b = key_balancer(qmax, kmax);
  const auto scores = [&](const QuantFormat& f, std::vector<float> bal) {
    QuantSegment s(f, d, std::move(bal));
    for (int t = 0; t < n; ++t)
      s.append(rows.K[static_cast<size_t>(t)].data(), rows.V[static_cast<size_t>(t)].data(), t);
    std::vector<float> S(static_cast<size_t>(n));
    s.scores(q.data(), 1, 1.0f, 0, n, S.data(), n);
    return S;
  };
  std::vector<float> exact(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t)
    for (int c = 0; c < d; ++c)
      exact[static_cast<size_t>(t)] +=
          q[static_cast<size_t>(c)] * rows.K[static_cast<size_t>(t)][static_cast<size_t>(c)];
  const auto f16 = scores({KvPrecision::F16, KvPrecision::F16, false, 32}, b);
  for (int t = 0; t < n; ++t) EXPECT_NEAR(f16[static_cast<size_t>(t)], exact[static_cast<size_t>(t)], 2e-2);
  const auto err = [&](const std::vector<float>& S) {
    double e = 0;
    for (int t = 0; t < n; ++t) e += std::fabs(S[static_cast<size_t>(t)] - exact[static_cast<size_t>(t)]);
    return e;
  };
  const QuantFormat low{KvPrecision::Int2, KvPrecision::Int2, false, 32};
  EXPECT_LT(err(scores(low, b)), err(scores(low, {})));
}

TEST(QuantSegment, MemoryIsWhatTheLayoutSays) {
  std::mt19937 rng(2);
  const int d = 64, n = 320;
  const Rows rows = random_rows(rng, n, d);
  QuantSegment h({KvPrecision::Int2, KvPrecision::Int4, true, 32}, d);
  for (int t = 0; t < n; ++t) h.append(rows.K[static_cast<size_t>(t)].data(), rows.V[static_cast<size_t>(t)].data(), t);
  // 10 key groups x 64 channels x (8 code bytes + 4 for scale and zero); 320 tokens x 2 value groups
  // x (16 + 4); positions.
  const size_t expect = 10 * 64 * 12 + 320 * 2 * 20 + 320 * 4;
  EXPECT_EQ(h.bytes(), expect);
  EXPECT_NEAR(h.bits_per_element(), 8.0 * expect / (2.0 * n * d), 1e-9);
  // 5 more tokens wait as exact F16 keys.
  for (int t = 0; t < 5; ++t) h.append(rows.K[0].data(), rows.V[0].data(), n + t);
  EXPECT_EQ(h.bytes(), expect + 5 * (64 * 2 + 2 * 20 + 4));
}

}  // namespace
}  // namespace kvwise
