// The compression pipeline over a real paged KV store: protected tokens survive, budgets hold, pages
// are really freed, CAKE's cascade equals its one-shot allocation and bounds peak memory, H2O evicts
// its lowest cumulative score, new tokens keep absolute positions, a budget that holds everything
// changes nothing, and on real text the scoring policies beat random (kv-algorithms §14.4).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "base/error.h"
#include "compress/baklava.h"
#include "compress/registry.h"
#include "eval/fidelity.h"
#include "eval/perplexity.h"
#include "kv/attention.h"
#include "model/generate.h"
#include "test_support.h"

namespace kvwise {
namespace {

// A multi-layer store with random K/V, prefilled layer by layer the way the engine does it: each
// layer's prompt attention runs (recording taps), then the compressor sees that layer.
struct SyntheticRun {
  KvLayout layout{4, 4, 2, 16, DType::F32, 8};
  KvStore kv{layout};
  ThreadPool pool{2};
  SeqId seq = kv.create_sequence();
  std::shared_ptr<KvCompressor> comp;
  std::mt19937 rng{42};
  int n = 0;
  std::vector<size_t> nonprotected_after_layer;  // CAKE peak check: after each layer's compression

  std::vector<float> random_rows(int rows, int width, float scale = 1.0f) {
    std::vector<float> x(static_cast<size_t>(rows) * static_cast<size_t>(width));
    std::normal_distribution<float> N(0, scale);
    for (float& v : x) v = N(rng);
    return x;
  }

  void step(const std::vector<float>& q, const std::vector<int32_t>& pos, int layer) {
    const int64_t qs = int64_t{layout.n_heads} * layout.head_dim;
    std::vector<float> out(q.size());
    AttentionQuery aq{q.data(), qs, pos.data(), static_cast<int>(pos.size()), out.data(), qs};
    attend(pool, kv, seq, layer, aq);
    comp->after_attention(kv, seq, {layer, q.data(), out.data(), qs, pos.data(), static_cast<int>(pos.size())});
  }

  void prefill(const std::string& spec, const std::string& budget, int prompt) {
    n = prompt;
    comp = std::make_shared<KvCompressor>(make_policy(spec, Budget::parse(budget)), layout, 0, n, RopeInfo{});
    kv.set_taps(seq, comp->prefill_taps());
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = i;
    for (int l = 0; l < layout.n_layers; ++l) {
      const auto k = random_rows(n, layout.n_kv_heads * layout.head_dim);
      const auto v = random_rows(n, layout.n_kv_heads * layout.head_dim);
      for (int i = 0; i < n; ++i)
        for (int h = 0; h < layout.n_kv_heads; ++h) {
          const size_t off = static_cast<size_t>(i * layout.n_kv_heads + h) * static_cast<size_t>(layout.head_dim);
          kv.append(seq, l, h, k.data() + off, v.data() + off, i);
        }
      step(random_rows(n, layout.n_heads * layout.head_dim, 0.7f), pos, l);
      size_t held = 0;
      for (int m = 0; m <= l; ++m)
        for (int h = 0; h < layout.n_kv_heads; ++h)
          held += static_cast<size_t>(kv.head_len(seq, m, h) - comp->shape().window - comp->shape().sinks);
      nonprotected_after_layer.push_back(held);
    }
    kv.set_next_position(seq, n);
    comp->after_forward(kv, seq);
  }

  // One decode step: append a token at the next position to every head, attend, let the policy act.
  void decode() {
    const int32_t p = kv.next_position(seq);
    const std::vector<int32_t> pos{p};
    for (int l = 0; l < layout.n_layers; ++l) {
      const auto k = random_rows(1, layout.n_kv_heads * layout.head_dim);
      const auto v = random_rows(1, layout.n_kv_heads * layout.head_dim);
      for (int h = 0; h < layout.n_kv_heads; ++h)
        kv.append(seq, l, h, k.data() + h * layout.head_dim, v.data() + h * layout.head_dim, p);
      step(random_rows(1, layout.n_heads * layout.head_dim, 0.7f), pos, l);
    }
    kv.set_next_position(seq, p + 1);
    comp->after_forward(kv, seq);
  }

  std::set<int32_t> positions(int layer, int head) const {
    std::set<int32_t> s;
    for (int i = 0; i < kv.head_len(seq, layer, head); ++i) s.insert(kv.slot_position(seq, layer, head, i));
    return s;
  }
};

// §14.4.1: window, sinks and the last token survive; each head holds its planned tokens; pages of
// dropped tokens go back to the pool.
TEST(CompressPipeline, ProtectedTokensSurviveAndPagesAreFreed) {
  for (const char* spec : {"snapkv", "pyramidkv", "adakv", "cake", "sagekv", "h2o", "streamingllm", "random",
                           "adakv(pyramidkv)", "adakv(cake)", "snapkv(order=pool_first,gqa=max)"}) {
    SyntheticRun r;
    const size_t before = r.kv.bytes_total();
    (void)before;
    r.prefill(spec, "0.25", 200);
    const SequenceShape& s = r.comp->shape();
    ASSERT_TRUE(s.compress) << spec;
    EXPECT_EQ(s.capacity, 50) << spec;
    long total = 0;
    size_t expect_bytes = 0;
    for (int l = 0; l < r.layout.n_layers; ++l)
      for (int h = 0; h < r.layout.n_kv_heads; ++h) {
        const auto pos = r.positions(l, h);
        const int len = r.kv.head_len(r.seq, l, h);
        total += len;
        for (int i = 0; i < s.sinks; ++i) EXPECT_TRUE(pos.count(i)) << spec << " sink " << i;
        for (int i = r.n - s.window; i < r.n; ++i) EXPECT_TRUE(pos.count(i)) << spec << " window " << i;
        EXPECT_TRUE(pos.count(r.n - 1)) << spec;
        EXPECT_EQ(len, r.comp->plan(l, h).cap) << spec;
        EXPECT_EQ(r.comp->report().head_tokens[static_cast<size_t>(l)][static_cast<size_t>(h)], len) << spec;
        EXPECT_EQ(r.comp->report().head_bytes[static_cast<size_t>(l)][static_cast<size_t>(h)],
                  static_cast<size_t>((len + 7) / 8) * r.kv.pool().page_bytes())
            << spec;
        expect_bytes += static_cast<size_t>((len + 7) / 8) * r.kv.pool().page_bytes();
      }
    // The mean per head is the budget (Ada-KV may move tokens between heads, not add them).
    EXPECT_EQ(total, 50L * r.layout.n_layers * r.layout.n_kv_heads) << spec;
    EXPECT_EQ(r.kv.bytes_sequence(r.seq), expect_bytes) << spec;
    EXPECT_EQ(r.kv.pool().pages_in_use() * r.kv.pool().page_bytes(), expect_bytes) << spec;
    EXPECT_EQ(r.comp->report().bytes_after, expect_bytes) << spec;
    EXPECT_LT(r.comp->report().bytes_after, r.comp->report().bytes_before) << spec;
  }
}

TEST(CompressPipeline, AdaKvFloorHoldsPerHead) {
  SyntheticRun r;
  r.prefill("adakv(alpha=0.5)", "0.25", 200);
  const SequenceShape& s = r.comp->shape();
  for (int l = 0; l < r.layout.n_layers; ++l) {
    int sum = 0;
    for (int h = 0; h < r.layout.n_kv_heads; ++h) {
      const int selected = r.kv.head_len(r.seq, l, h) - s.window - s.sinks;
      EXPECT_GE(selected, static_cast<int>(0.5 * s.mean));
      sum += selected;
    }
    EXPECT_EQ(sum, s.mean * r.layout.n_kv_heads);
  }
}

// §14.4.4: the cascade keeps the same tokens as the one-shot allocation, and while prefilling the
// non-protected tokens held by layers 0..m never exceed the total budget.
TEST(CompressPipeline, CakeCascadeEqualsOneShotAndBoundsPeakMemory) {
  for (const char* budget : {"0.25", "0.5", "40"}) {
    SyntheticRun a, b;
    a.prefill("cake(cascade=1,window=16)", budget, 240);
    b.prefill("cake(cascade=0,window=16)", budget, 240);
    const SequenceShape& s = a.comp->shape();
    const size_t total = static_cast<size_t>(s.mean) * static_cast<size_t>(a.layout.n_layers * a.layout.n_kv_heads);
    for (int l = 0; l < a.layout.n_layers; ++l) {
      EXPECT_EQ(a.comp->report().layer_budget[static_cast<size_t>(l)],
                b.comp->report().layer_budget[static_cast<size_t>(l)]);
      for (int h = 0; h < a.layout.n_kv_heads; ++h)
        EXPECT_EQ(a.positions(l, h), b.positions(l, h)) << budget << " layer " << l;
      EXPECT_LE(a.nonprotected_after_layer[static_cast<size_t>(l)], total) << budget << " after layer " << l;
    }
    // Without the cascade all layers stay full until the last one.
    EXPECT_GT(b.nonprotected_after_layer[2], total);
    // Layer budgets differ (adaptive) but sum to the total.
    long sum = 0;
    for (int x : a.comp->report().layer_budget) sum += x;
    EXPECT_EQ(static_cast<size_t>(sum) * static_cast<size_t>(a.layout.n_kv_heads), total);
  }
}

// H2O: one decode step evicts exactly the non-recent slot with the lowest cumulative attention.
TEST(CompressPipeline, H2oEvictsTheLowestCumulativeScore) {
  SyntheticRun r;
  r.prefill("h2o(recent=0.25)", "40", 120);
  const SequenceShape& s = r.comp->shape();
  for (int step = 0; step < 6; ++step) {
    // Expected survivors from the taps before the step: the step's own attention is added first.
    r.decode();
    for (int l = 0; l < r.layout.n_layers; ++l)
      for (int h = 0; h < r.layout.n_kv_heads; ++h) {
        EXPECT_EQ(r.kv.head_len(r.seq, l, h), s.capacity);
        // Every kept non-recent slot scores at least as high as any evicted one: check via the taps
        // that remain (kept slots only) against the minimum: the recent window is the last slots.
        const auto pos = r.positions(l, h);
        const int32_t last = r.kv.next_position(r.seq) - 1;
        for (int32_t p = last - s.window + 1; p <= last; ++p) EXPECT_TRUE(pos.count(p));
      }
  }
  // Brute-force check of one eviction: recompute the group-mean cumulative scores, then step.
  const int l = 1, h = 1;
  std::vector<float> acc(static_cast<size_t>(r.kv.head_len(r.seq, l, h)), 0.0f);
  const int G = r.layout.n_heads / r.layout.n_kv_heads;
  for (int g = 0; g < G; ++g) {
    const auto& cs = r.kv.taps(r.seq, l, h * G + g).col_sums;
    for (size_t j = 0; j < acc.size() && j < cs.size(); ++j) acc[j] += cs[j] / G;
  }
  std::vector<int32_t> before;
  for (int i = 0; i < r.kv.head_len(r.seq, l, h); ++i) before.push_back(r.kv.slot_position(r.seq, l, h, i));
  r.decode();
  const auto after = r.positions(l, h);
  int32_t evicted = -1;
  for (int32_t p : before)
    if (!after.count(p)) {
      EXPECT_EQ(evicted, -1) << "more than one token evicted in one step";
      evicted = p;
    }
  ASSERT_GE(evicted, 0);
  // The evicted token is a candidate (not in the recent window) and its score, which only grew by
  // this step's probability, was among the lowest before the step.
  const int cand = static_cast<int>(before.size()) - s.window + 1;  // the window slid by one
  const int evicted_slot = static_cast<int>(std::find(before.begin(), before.end(), evicted) - before.begin());
  EXPECT_LT(evicted_slot, cand);
  int lower = 0;
  for (int j = 0; j < cand; ++j) lower += acc[static_cast<size_t>(j)] < acc[static_cast<size_t>(evicted_slot)];
  EXPECT_LE(lower, 1) << "evicted slot " << evicted_slot << " had " << lower << " lower-scoring candidates";
}

TEST(CompressPipeline, FifoPoliciesStayAtTheirCapacity) {
  for (const char* spec : {"sagekv(recent=8)", "streamingllm", "random", "cake(window=8)"}) {
    SyntheticRun r;
    r.prefill(spec, "48", 160);
    for (int step = 0; step < 20; ++step) r.decode();
    for (int l = 0; l < r.layout.n_layers; ++l)
      for (int h = 0; h < r.layout.n_kv_heads; ++h) {
        EXPECT_EQ(r.kv.head_len(r.seq, l, h), r.comp->plan(l, h).cap) << spec;
        const auto pos = r.positions(l, h);
        EXPECT_TRUE(pos.count(r.kv.next_position(r.seq) - 1)) << spec;  // the newest token
        if (std::string(spec) != "random" && std::string(spec) != "cake(window=8)") {
          for (int i = 0; i < 4; ++i) EXPECT_TRUE(pos.count(i)) << spec << " sink " << i;
        }
      }
    EXPECT_EQ(r.comp->report().decode_evicted, 20L * r.layout.n_layers * r.layout.n_kv_heads) << spec;
  }
}

TEST(CompressPipeline, GrowPoliciesKeepEveryNewToken) {
  SyntheticRun r;
  r.prefill("snapkv(window=8)", "48", 160);
  for (int step = 0; step < 10; ++step) r.decode();
  EXPECT_EQ(r.kv.head_len(r.seq, 0, 0), 58);
  SyntheticRun e;
  e.prefill("snapkv(window=8,decode_every=5)", "48", 160);
  for (int step = 0; step < 10; ++step) e.decode();
  EXPECT_EQ(e.kv.head_len(e.seq, 0, 0), 48);
}

class CompressOnStories : public ::testing::Test {
 protected:
  void SetUp() override {
    KVWISE_REQUIRE_DATA();
    model_ = Model::load(test::stories_gguf());
    const std::string text =
        test::read_file(test::data_dir() + "/data/tinystories_valid_sample/tinystories_valid_first_stories.txt");
    std::string clean;  // the documents without their separator lines
    for (const std::string& doc : split_documents(text, "<|endoftext|>")) clean += doc + "\n";
    text_ = model_->tokenizer().encode(clean, false);
  }
  EngineOptions options() const {
    EngineOptions o;
    o.threads = 2;
    return o;
  }
  std::unique_ptr<Model> model_;
  std::vector<int32_t> text_;
};

// §14.4.5: generated tokens get positions n + t however many slots compression kept.
TEST_F(CompressOnStories, NewTokensKeepAbsolutePositions) {
  Engine e(*model_, options());
  const std::vector<int32_t> prompt(text_.begin(), text_.begin() + 200);
  for (const char* spec : {"snapkv", "h2o", "sagekv", "cake(window=16)", "streamingllm"}) {
    const auto policy = make_policy(spec, Budget::parse("0.25"));
    const SeqId seq = e.new_sequence();
    attach_policy(e, seq, policy, 200);
    e.prefill(seq, prompt);
    for (int t = 0; t < 30; ++t) e.decode(seq, text_[static_cast<size_t>(200 + t)]);
    EXPECT_EQ(e.kv().next_position(seq), 230) << spec;
    for (int l = 0; l < model_->config().n_layers; ++l)
      for (int h = 0; h < model_->config().n_kv_heads; ++h) {
        const int len = e.kv().head_len(seq, l, h);
        EXPECT_LT(len, 230) << spec;
        EXPECT_EQ(e.kv().slot_position(seq, l, h, len - 1), 229) << spec;
      }
    e.free_sequence(seq);
  }
  EXPECT_EQ(e.kv().pool().pages_in_use(), 0u);
}

// StreamingLLM with re-rotation: the cache holds cache-relative positions 0..len-1 and keeps going
// past the model's context.
TEST_F(CompressOnStories, StreamingRerotationRunsPastTheContext) {
  Engine e(*model_, options());
  const int ctx = e.ctx();
  const std::vector<int32_t> prompt(text_.begin(), text_.begin() + 100);
  const SeqId seq = e.new_sequence();
  attach_policy(e, seq, make_policy("streamingllm(rerotate=1)", Budget::parse("64")), 100);
  e.prefill(seq, prompt);
  for (int t = 0; t < ctx; ++t) e.decode(seq, text_[static_cast<size_t>(100 + t) % text_.size()]);
  EXPECT_EQ(e.kv().next_position(seq), 64);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(e.kv().slot_position(seq, 2, 1, i), i);
}

// §14.4: a budget that holds the whole sequence gives exactly the full cache's logits, every policy.
TEST_F(CompressOnStories, BudgetHoldingEverythingChangesNothing) {
  Engine e(*model_, options());
  const std::vector<int32_t> prompt(text_.begin(), text_.begin() + 150);
  const auto run = [&](std::shared_ptr<const KvPolicy> policy) {
    const SeqId seq = e.new_sequence();
    attach_policy(e, seq, policy, 150);
    std::vector<float> all = e.prefill(seq, prompt);
    for (int t = 0; t < 20; ++t) {
      const auto l = e.decode(seq, text_[static_cast<size_t>(150 + t)]);
      all.insert(all.end(), l.begin(), l.end());
    }
    e.free_sequence(seq);
    return all;
  };
  const auto full = run(make_policy("full", Budget{}));
  for (const PolicyInfo& p : policy_catalog()) {
    // baklava needs a profile; the low-precision policies keep every token but change its precision
    // (their identities are in test_low_precision).
    if (p.name == "baklava" || p.name == "duoattention" || p.budget == BudgetUse::Ignored) continue;
    // The gate's target rate follows the budget (1 - 170/150 < 0: evict nothing); its weights for
    // stories260K ship in models/.
    const std::string spec =
        p.name == "gate" ? "gate(file=" + std::string(KVWISE_SOURCE_DIR) + "/models/stories260K.gate.gguf)" : p.name;
    for (const char* budget : {"170", "1000"}) EXPECT_EQ(run(make_policy(spec, Budget::parse(budget))), full) << p.name;
  }
  // Prompt-only identity at a ratio of 1 for the policies that grow during decode.
  for (const char* spec : {"snapkv", "pyramidkv", "adakv", "sagekv(decode=grow)"})
    EXPECT_EQ(run(make_policy(spec, Budget::parse("1"))), full) << spec;
}

// On real text at a quarter of the cache, the scoring policies stay closer to the full cache than
// the random baseline (which, like them, keeps the window and stays within budget while decoding).
TEST_F(CompressOnStories, ScoringPoliciesBeatRandomAtAQuarter) {
  Engine e(*model_, options());
  FidelityOptions fo;
  fo.prefix = 384;
  fo.continuation = 64;
  fo.segments = 8;
  FidelityRunner runner(e, fidelity_segments(text_, model_->tokenizer().bos(), fo), fo);
  const Budget quarter = Budget::parse("0.25");
  const double random_kl = runner.run(make_policy("random", quarter)).mean_kl;
  EXPECT_GT(random_kl, 0.0);
  for (const char* spec : {"snapkv", "adakv", "cake", "sagekv"}) {
    const FidelityCell c = runner.run(make_policy(spec, quarter));
    EXPECT_LT(c.mean_kl, random_kl) << spec;
    EXPECT_LE(c.hot_bytes, 0.30 * c.full_bytes) << spec;
  }
  EXPECT_EQ(runner.run(make_policy("full", Budget{})).mean_kl, 0.0);
}

TEST_F(CompressOnStories, BaklavaProfileDrivesHeadBudgets) {
  Engine e(*model_, options());
  auto profiler = std::make_shared<BaklavaProfiler>(model_->config());
  const SeqId seq = e.new_sequence();
  e.observe(seq, profiler);
  e.prefill(seq, std::vector<int32_t>(text_.begin(), text_.begin() + 300));
  e.free_sequence(seq);
  BaklavaProfile p = profiler->profile("stories", 2.0);
  const std::string path = test::temp_path("baklava.json");
  p.save(path);
  const BaklavaProfile q = BaklavaProfile::load(path);
  EXPECT_EQ(q.weights, p.weights);
  double mean = 0, spread = 0;
  for (const auto& row : q.weights)
    for (double w : row) mean += w / (q.n_layers * q.n_kv_heads);
  EXPECT_NEAR(mean, 1.0, 1e-9);
  for (const auto& row : q.weights)
    for (double w : row) spread = std::max(spread, std::fabs(w - 1.0));
  EXPECT_GT(spread, 0.01);  // theta 2 on real importances is not uniform
  p.set_theta(0);
  for (const auto& row : p.weights)
    for (double w : row) EXPECT_DOUBLE_EQ(w, 1.0);
  // The policy keeps per-head counts that follow the weights and sum to the budget.
  const auto policy = make_policy("baklava(profile=" + path + ")", Budget::parse("0.25"));
  const SeqId s2 = e.new_sequence();
  attach_policy(e, s2, policy, 300);
  e.prefill(s2, std::vector<int32_t>(text_.begin(), text_.begin() + 300));
  long total = 0;
  for (int l = 0; l < q.n_layers; ++l)
    for (int h = 0; h < q.n_kv_heads; ++h) total += e.kv().head_len(s2, l, h);
  EXPECT_EQ(total, 75L * q.n_layers * q.n_kv_heads);
  e.free_sequence(s2);
  test::write_file(path, "{\"format\": \"something else\"}");
  EXPECT_THROW(make_policy("baklava(profile=" + path + ")", Budget::parse("0.25")), Error);
}

}  // namespace
}  // namespace kvwise
