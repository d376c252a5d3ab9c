// Budget arithmetic, score primitives and the policy spec grammar (kv-algorithms §1, §5, §6, §14.4).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "base/error.h"
#include "compress/budget.h"
#include "compress/policy_spec.h"
#include "compress/registry.h"
#include "compress/select.h"
#include "kv/rope.h"

namespace kvwise {
namespace {

TEST(PolicySpec, ParsesNestedSpecsAndPrintsCanonically) {
  const PolicySpec s = parse_policy_spec(" adakv ( pyramidkv(window=8, kernel=7), alpha=0.2 ) ");
  EXPECT_EQ(s.name, "adakv");
  ASSERT_EQ(s.inner.size(), 1u);
  EXPECT_EQ(s.inner[0].name, "pyramidkv");
  EXPECT_EQ(s.inner[0].params.at("kernel"), "7");
  EXPECT_EQ(s.params.at("alpha"), "0.2");
  EXPECT_EQ(s.to_string(), "adakv(pyramidkv(kernel=7,window=8),alpha=0.2)");
  EXPECT_EQ(parse_policy_spec(s.to_string()).to_string(), s.to_string());
  EXPECT_EQ(split_policy_list("snapkv,adakv(snapkv,alpha=0.5), h2o"),
            (std::vector<std::string>{"snapkv", "adakv(snapkv,alpha=0.5)", "h2o"}));
}

TEST(PolicySpec, SyntaxErrorsNameTheColumn) {
  for (const char* bad : {"snapkv(", "snapkv(window=)", "snapkv)", "(x)", "snapkv(window=1,window=2)", "a b"}) {
    try {
      parse_policy_spec(bad);
      ADD_FAILURE() << bad << " parsed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("column"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(split_policy_list("snapkv,(a"), Error);
}

TEST(PolicyRegistry, BadSpecsGiveClearErrors) {
  const Budget b = Budget::parse("0.25");
  const auto message = [&](const std::string& spec) {
    try {
      make_policy(spec, b);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("nosuch").find("unknown KV policy \"nosuch\""), std::string::npos);
  EXPECT_NE(message("nosuch").find("snapkv"), std::string::npos);  // the list of known policies
  EXPECT_NE(message("snapkv(windw=4)").find("unknown parameter 'windw'"), std::string::npos);
  EXPECT_NE(message("snapkv(kernel=4)").find("odd"), std::string::npos);
  EXPECT_NE(message("snapkv(pool=median)").find("not one of"), std::string::npos);
  EXPECT_NE(message("adakv(alpha=2)").find("outside"), std::string::npos);
  EXPECT_NE(message("snapkv(h2o)").find("inner"), std::string::npos);
  EXPECT_NE(message("adakv(streamingllm)").find("adakv composes"), std::string::npos);
  EXPECT_NE(message("baklava").find("profile="), std::string::npos);
  // Every catalogued name builds with its defaults.
  for (const PolicyInfo& p : policy_catalog())
    if (p.name != "baklava" && p.name != "duoattention") {  // they need a profile
      EXPECT_NO_THROW(make_policy(p.name, b)) << p.name;
    }
}

TEST(PolicyRegistry, WindowLongerThanThePromptIsAnError) {
  const auto p = make_policy("snapkv(window=64)", Budget::parse("0.5"));
  EXPECT_THROW(sequence_shape(*p, 40), Error);
  EXPECT_NO_THROW(sequence_shape(*p, 400));
  // The budget must hold the protected tokens.
  EXPECT_THROW(sequence_shape(*make_policy("snapkv", Budget::parse("16")), 400), Error);
  const SequenceShape s = sequence_shape(*make_policy("sagekv(sinks=4,recent=10)", Budget::parse("100")), 400);
  EXPECT_EQ(s.capacity, 100);
  EXPECT_EQ(s.sinks, 4);
  EXPECT_EQ(s.window, 11);
  EXPECT_EQ(s.mean, 85);
  EXPECT_TRUE(s.compress);
}

TEST(Budget, RatiosPercentagesAndTokens) {
  EXPECT_EQ(Budget::parse("0.25").capacity(400), 100);
  EXPECT_EQ(Budget::parse("25%").capacity(400), 100);
  EXPECT_EQ(Budget::parse("1").capacity(400), 400);
  EXPECT_EQ(Budget::parse("256").capacity(400), 256);
  EXPECT_EQ(Budget::parse("256").to_string(), "256");
  EXPECT_EQ(Budget::parse("0.1").to_string(), "0.1");
  for (const char* bad : {"0", "-0.5", "abc", "", "12.5", "0.5x", "nan"})
    EXPECT_THROW(Budget::parse(bad), Error) << bad;
}

TEST(BudgetSplit, ProportionalWithCapsSumsExactly) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 12);
    std::vector<double> w(static_cast<size_t>(n));
    std::vector<int> caps(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      w[static_cast<size_t>(i)] = (rng() % 5 == 0) ? 0.0 : static_cast<double>(rng() % 1000) / 10.0;
      caps[static_cast<size_t>(i)] = static_cast<int>(rng() % 200);
    }
    const long total = static_cast<long>(rng() % 1500);
    const auto out = split_proportional(total, w, caps);
    const long cap_sum = std::accumulate(caps.begin(), caps.end(), 0L);
    EXPECT_EQ(std::accumulate(out.begin(), out.end(), 0L), std::min(total, cap_sum));
    for (int i = 0; i < n; ++i) {
      EXPECT_GE(out[static_cast<size_t>(i)], 0);
      EXPECT_LE(out[static_cast<size_t>(i)], caps[static_cast<size_t>(i)]);
    }
  }
  // Without binding caps the split is proportional up to rounding.
  const auto out = split_proportional(100, std::vector<double>{1, 3}, std::vector<int>{1000, 1000});
  EXPECT_EQ(out, (std::vector<int>{25, 75}));
}

TEST(PyramidKV, MeanIsTheBudgetAndDepthNeverGainsTokens) {
  for (int L : {1, 2, 5, 30, 32})
    for (int mean : {1, 7, 64, 100})
      for (double beta : {1.0, 2.0, 20.0}) {
        const int cand = 150;
        const auto b = pyramid_budgets(L, mean, cand, beta);
        ASSERT_EQ(static_cast<int>(b.size()), L);
        EXPECT_EQ(std::accumulate(b.begin(), b.end(), 0L), static_cast<long>(L) * std::min(mean, cand));
        for (int l = 0; l + 1 < L; ++l) EXPECT_GE(b[static_cast<size_t>(l)], b[static_cast<size_t>(l) + 1]);
        for (int x : b) EXPECT_LE(x, cand);
        if (L > 1 && beta == 20.0 && mean == 64) {
          EXPECT_GT(b.front(), b.back());
        }
      }
}

TEST(AdaKV, FloorAndTotalHold) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    const int H = 1 + static_cast<int>(rng() % 8), n = 20 + static_cast<int>(rng() % 100);
    const int mean = 1 + static_cast<int>(rng() % n);
    const double alpha = static_cast<double>(rng() % 11) / 10.0;
    std::vector<std::vector<float>> s(static_cast<size_t>(H), std::vector<float>(static_cast<size_t>(n)));
    for (int h = 0; h < H; ++h) {
      // Heads of very different concentration.
      const float sharp = static_cast<float>(h + 1) * 3.0f;
      for (float& x : s[static_cast<size_t>(h)]) x = std::pow(std::uniform_real_distribution<float>(0, 1)(rng), sharp);
    }
    const auto b = adakv_split(s, mean, alpha);
    EXPECT_EQ(std::accumulate(b.begin(), b.end(), 0L), static_cast<long>(H) * mean);
    for (int x : b) {
      EXPECT_GE(x, std::min(n, static_cast<int>(alpha * mean)));
      EXPECT_LE(x, n);
    }
    if (alpha == 1.0) {
      for (int x : b) EXPECT_EQ(x, mean);
    }
  }
  // alpha = 0: the budgets are the global top-k winner counts.
  const std::vector<std::vector<float>> s = {{0.9f, 0.8f, 0.7f, 0.6f}, {0.1f, 0.05f, 0.02f, 0.01f}};
  EXPECT_EQ(adakv_split(s, 2, 0.0), (std::vector<int>{4, 0}));
  EXPECT_EQ(adakv_split(s, 2, 0.5), (std::vector<int>{3, 1}));
}

TEST(Select, PoolingMatchesBruteForce) {
  std::mt19937 rng(11);
  for (int n : {1, 2, 5, 17})
    for (int k : {1, 3, 5, 7}) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = std::uniform_real_distribution<float>(0, 1)(rng);
      const auto avg = pool1d(x, Pooling::Avg, k), mx = pool1d(x, Pooling::Max, k);
      for (int j = 0; j < n; ++j) {
        double s = 0;
        float m = -1;
        for (int u = j - k / 2; u <= j + k / 2; ++u)
          if (u >= 0 && u < n) s += x[static_cast<size_t>(u)], m = std::max(m, x[static_cast<size_t>(u)]);
        EXPECT_NEAR(avg[static_cast<size_t>(j)], s / k, 1e-6);  // padding counts in the divisor
        EXPECT_EQ(mx[static_cast<size_t>(j)], m);
      }
    }
  EXPECT_THROW(pool1d(std::vector<float>{1, 2, 3}, Pooling::Avg, 4), Error);
}

TEST(Select, TopKIsSortedAndTiesGoToRecentTokens) {
  const std::vector<float> x = {5, 1, 5, 3, 5, 0};
  EXPECT_EQ(top_k_indices(x, 2), (std::vector<int>{2, 4}));
  EXPECT_EQ(top_k_indices(x, 4), (std::vector<int>{0, 2, 3, 4}));
  EXPECT_EQ(top_k_indices(x, 0), (std::vector<int>{}));
  EXPECT_EQ(top_k_indices(x, 10).size(), 6u);
  const std::vector<std::vector<float>> rows = {{1, 4}, {3, 2}};
  EXPECT_EQ(reduce_group(rows, GroupReduce::Mean), (std::vector<float>{2, 3}));
  EXPECT_EQ(reduce_group(rows, GroupReduce::Max), (std::vector<float>{3, 4}));
  EXPECT_EQ(reduce_group(rows, GroupReduce::Sum), (std::vector<float>{4, 6}));
}

TEST(Select, TopKMatchesASortOnLargeFlatRows) {
  // Rows of 16K nearly equal probabilities (one exponent: the selection's second histogram level), with
  // repeated values (ties), +infinity entries (tokens SpeCache must keep) and spread-out rows.
  std::mt19937 rng(21);
  for (int trial = 0; trial < 6; ++trial) {
    const int n = 16384;
    std::uniform_real_distribution<float> flat(6.0e-5f, 6.1e-5f), wide(-3.0f, 3.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = trial % 2 ? std::exp(wide(rng)) : flat(rng);
    for (int i = 0; i < 200; ++i) x[rng() % n] = x[rng() % n];  // ties
    if (trial >= 4)
      for (int i = n - 10; i < n; ++i) x[static_cast<size_t>(i)] = std::numeric_limits<float>::infinity();
    for (int k : {1, 64, 300}) {
      std::vector<int> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int a, int b) {
        const float xa = x[static_cast<size_t>(a)], xb = x[static_cast<size_t>(b)];
        return xa != xb ? xa > xb : a > b;  // larger score first, then the later token
      });
      std::vector<int> want(order.begin(), order.begin() + k);
      std::sort(want.begin(), want.end());
      EXPECT_EQ(top_k_indices(x, k), want) << "trial " << trial << ", k " << k;
    }
  }
}

// §14.4.6: rotating a key stored at p_old by (p_new - p_old) equals rotating it freshly at p_new.
TEST(Rope, ReRotationEqualsFreshRotation) {
  const int hd = 64;
  std::vector<float> inv(hd / 2);
  for (int i = 0; i < hd / 2; ++i) inv[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * i / hd);
  std::mt19937 rng(5);
  for (RopeType type : {RopeType::Normal, RopeType::Neox})
    for (auto [p_old, p_new] : {std::pair{500, 4}, std::pair{37, 36}, std::pair{9000, 1000}}) {
      std::vector<float> raw(hd);
      for (float& v : raw) v = std::normal_distribution<float>(0, 1)(rng);
      std::vector<float> moved = raw, fresh = raw;
      apply_rope(moved.data(), 1, hd, hd, type, inv.data(), static_cast<float>(p_old));
      apply_rope(moved.data(), 1, hd, hd, type, inv.data(), static_cast<float>(p_new - p_old));
      apply_rope(fresh.data(), 1, hd, hd, type, inv.data(), static_cast<float>(p_new));
      for (int c = 0; c < hd; ++c) EXPECT_NEAR(moved[static_cast<size_t>(c)], fresh[static_cast<size_t>(c)], 2e-3);
    }
}

}  // namespace
}  // namespace kvwise
