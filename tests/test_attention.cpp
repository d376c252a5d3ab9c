// Attention over the paged store equals a dense reference, on both paths, for ragged heads and
// causal chunks; statistic taps report the probabilities the kernel used.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kv/attention.h"

namespace kvwise {
namespace {

constexpr int H = 6, HK = 2, HD = 16, G = H / HK;

struct Fixture {
  KvStore kv{KvLayout{1, H, HK, HD, DType::F32, 8}};
  SeqId s = kv.create_sequence();
  // Dense copies for the reference: per KV head, slots of (pos, k, v).
  std::vector<std::vector<int32_t>> pos{HK};
  std::vector<std::vector<float>> K{HK}, V{HK};
  std::mt19937 rng{5};
  std::normal_distribution<float> d{0.0f, 1.0f};

  void append(int h, int32_t p) {
    std::vector<float> k(HD), v(HD);
    for (auto& x : k) x = d(rng);
    for (auto& x : v) x = d(rng);
    kv.append(s, 0, h, k.data(), v.data(), p);
    pos[h].push_back(p);
    K[h].insert(K[h].end(), k.begin(), k.end());
    V[h].insert(V[h].end(), v.begin(), v.end());
  }
  std::vector<float> random_q(int T) {
    std::vector<float> q(static_cast<size_t>(T * H * HD));
    for (auto& x : q) x = d(rng);
    return q;
  }
  // Dense causal softmax attention.
  std::vector<float> reference(const std::vector<float>& q, const std::vector<int32_t>& qpos) {
    const int T = static_cast<int>(qpos.size());
    std::vector<float> out(static_cast<size_t>(T * H * HD), 0.0f);
    for (int t = 0; t < T; ++t)
      for (int qh = 0; qh < H; ++qh) {
        const int h = qh / G;
        std::vector<double> s;
        for (size_t j = 0; j < pos[h].size(); ++j) {
          if (pos[h][j] > qpos[t]) continue;
          double acc = 0;
          for (int c = 0; c < HD; ++c) acc += q[(t * H + qh) * HD + c] * K[h][j * HD + c];
          s.push_back(acc / std::sqrt(double(HD)));
        }
        double mx = -1e300, sum = 0;
        for (double x : s) mx = std::max(mx, x);
        for (double& x : s) sum += x = std::exp(x - mx);
        for (size_t j = 0; j < s.size(); ++j)
          for (int c = 0; c < HD; ++c) out[(t * H + qh) * HD + c] += static_cast<float>(s[j] / sum * V[h][j * HD + c]);
      }
    return out;
  }
};

void check_paths(Fixture& f, const std::vector<int32_t>& qpos, int threads) {
  ThreadPool pool(threads);
  const int T = static_cast<int>(qpos.size());
  const auto q = f.random_q(T);
  const auto ref = f.reference(q, qpos);
  for (AttentionPath path : {AttentionPath::Direct, AttentionPath::Blas}) {
    std::vector<float> out(ref.size(), 123.0f);
    attend(pool, f.kv, f.s, 0, {q.data(), H * HD, qpos.data(), T, out.data(), H * HD}, path);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 2e-5) << "path " << int(path) << " i " << i;
  }
}

TEST(Attention, MatchesDenseReferenceOnRaggedHeads) {
  Fixture f;
  for (int p = 0; p < 50; ++p) f.append(0, p);
  for (int p = 0; p < 50; p += 3) f.append(1, p);  // the other head kept fewer, scattered slots
  check_paths(f, {49}, 1);
  check_paths(f, {49}, 2);
  check_paths(f, {20, 21, 22, 49}, 2);  // causal: earlier queries see fewer slots
}

TEST(Attention, LongContextSplitsAndMerges) {
  Fixture f;
  for (int p = 0; p < 700; ++p) {
    f.append(0, p);
    f.append(1, p);
  }
  check_paths(f, {699}, 2);
  check_paths(f, {699}, 3);
}

TEST(Attention, EmptyVisibleSetGivesZeros) {
  Fixture f;
  f.append(0, 10);
  f.append(1, 10);
  check_paths(f, {5}, 1);
}

TEST(Attention, TapsSeeTheProbabilities) {
  for (AttentionPath path : {AttentionPath::Direct, AttentionPath::Blas}) {
    Fixture f;
    TapConfig cfg;
    cfg.enabled = true;
    cfg.window = 4;
    cfg.prompt_end = 20;
    cfg.keep_window_rows = true;
    cfg.last_row = true;
    cfg.col_sums = true;
    cfg.window_entropy = true;
    f.kv.set_taps(f.s, cfg);
    for (int p = 0; p < 20; ++p) {
      f.append(0, p);
      f.append(1, p);
    }
    std::vector<int32_t> qpos(20);
    for (int i = 0; i < 20; ++i) qpos[static_cast<size_t>(i)] = i;
    ThreadPool pool(2);
    const auto q = f.random_q(20);
    std::vector<float> out(q.size());
    attend(pool, f.kv, f.s, 0, {q.data(), H * HD, qpos.data(), 20, out.data(), H * HD}, path);
    for (int qh = 0; qh < H; ++qh) {
      const HeadTaps& t = f.kv.taps(f.s, 0, qh);
      double col_total = 0, win_total = 0, last_total = 0;
      for (float x : t.col_sums) col_total += x;
      for (float x : t.window_sum) win_total += x;
      for (float x : t.last_row) last_total += x;
      EXPECT_NEAR(col_total, 20.0, 1e-4);  // each of the 20 queries contributes a distribution
      EXPECT_NEAR(win_total, 4.0, 1e-4);   // the last 4 prompt queries
      EXPECT_NEAR(last_total, 1.0, 1e-5);
      EXPECT_EQ(t.window_cols, 20);
      // Window row 0 is query 16: it sees 17 slots, nothing after.
      double row0 = 0;
      for (int j = 0; j < 20; ++j) row0 += t.window_rows[static_cast<size_t>(j)];
      EXPECT_NEAR(row0, 1.0, 1e-5);
      EXPECT_EQ(t.window_rows[17], 0.0f);
      EXPECT_EQ(t.col_sums[0] >= t.last_row[0], true);
      // CAKE's dispersion: -p log p over the prefix columns (before the window) of the window rows.
      double entropy = 0;
      for (int r = 0; r < 4; ++r)
        for (int j = 0; j < 16; ++j) {
          const double p = t.window_rows[static_cast<size_t>(r * 20 + j)];
          if (p > 0) entropy -= p * std::log(p);
        }
      EXPECT_GT(entropy, 0.0);
      EXPECT_NEAR(t.window_entropy, entropy, 1e-4);
    }
  }
}

TEST(Attention, TapsFollowRetain) {
  Fixture f;
  TapConfig cfg;
  cfg.enabled = true;
  cfg.col_sums = true;
  f.kv.set_taps(f.s, cfg);
  for (int p = 0; p < 10; ++p) {
    f.append(0, p);
    f.append(1, p);
  }
  ThreadPool pool(1);
  std::vector<int32_t> qpos{9};
  const auto q = f.random_q(1);
  std::vector<float> out(q.size());
  attend(pool, f.kv, f.s, 0, {q.data(), H * HD, qpos.data(), 1, out.data(), H * HD});
  const std::vector<float> before = f.kv.taps(f.s, 0, 0).col_sums;
  f.kv.retain(f.s, 0, 0, std::vector<int>{2, 5, 9});
  const auto& after = f.kv.taps(f.s, 0, 0).col_sums;
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[0], before[2]);
  EXPECT_EQ(after[1], before[5]);
  EXPECT_EQ(after[2], before[9]);
  EXPECT_EQ(f.kv.taps(f.s, 0, G).col_sums.size(), 10u);  // query heads of the other KV head untouched
}

}  // namespace
}  // namespace kvwise
