// Attention-Gate (issue 6): the gate's arithmetic, its causal incremental form, the gate policy's
// eviction invariants, bad gate files, and agreement with the Python trainer's reference scores.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>

#include "base/error.h"
#include "compress/gate.h"
#include "compress/pipeline.h"
#include "compress/registry.h"
#include "model/gguf_writer.h"
#include "model/sampler.h"
#include "test_support.h"

namespace kvwise {
namespace {

std::string bundled() {
  return std::string(KVWISE_SOURCE_DIR) + "/models/kvwise-retrieval.gguf";
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A gate of random weights for a model shape (heads == 0: the mlp kind with head_dim hidden units);
// quantiles spread evenly over (0, 1).
std::string write_random_gate(const ModelConfig& c, int heads, int head_dim, uint64_t seed, int dim_override = 0) {
  const std::string path = test::temp_path("gate-" + std::to_string(seed) + ".gguf");
  GgufWriter w;
  const int D = dim_override ? dim_override : c.dim, L = c.n_layers, KV = c.n_kv_heads;
  const int W = heads ? heads * head_dim : head_dim;
  w.set("general.architecture", GgufValue::str("kvwise-gate"));
  w.set("kvwise.gate.kind", GgufValue::str(heads ? "attention" : "mlp"));
  w.set("kvwise.gate.layers", GgufValue::u32(static_cast<uint32_t>(L)));
  w.set("kvwise.gate.dim", GgufValue::u32(static_cast<uint32_t>(D)));
  w.set("kvwise.gate.kv_heads", GgufValue::u32(static_cast<uint32_t>(KV)));
  w.set("kvwise.gate.heads", GgufValue::u32(static_cast<uint32_t>(heads)));
  w.set("kvwise.gate.head_dim", GgufValue::u32(static_cast<uint32_t>(head_dim)));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> n(0.0f, 0.3f);
  const auto rnd = [&](size_t k) {
    std::vector<float> v(k);
    for (float& x : v) x = n(rng);
    return v;
  };
  for (int l = 0; l < L; ++l) {
    const std::string p = "gate." + std::to_string(l) + ".";
    if (heads) {
      w.add_tensor(p + "wq", {D, W}, DType::F32, f32_bytes(rnd(static_cast<size_t>(D * W))));
      w.add_tensor(p + "wk", {D, W}, DType::F32, f32_bytes(rnd(static_cast<size_t>(D * W))));
      w.add_tensor(p + "wv", {D, W}, DType::F32, f32_bytes(rnd(static_cast<size_t>(D * W))));
    } else {
      w.add_tensor(p + "w1", {D, W}, DType::F32, f32_bytes(rnd(static_cast<size_t>(D * W))));
      w.add_tensor(p + "b1", {W}, DType::F32, f32_bytes(rnd(static_cast<size_t>(W))));
    }
    w.add_tensor(p + "wo", {W, KV}, DType::F32, f32_bytes(rnd(static_cast<size_t>(W * KV))));
    w.add_tensor(p + "bo", {KV}, DType::F32, f32_bytes(rnd(static_cast<size_t>(KV))));
  }
  std::vector<float> q;
  for (int i = 0; i < L * KV; ++i)
    for (int j = 0; j <= 100; ++j) q.push_back(0.005f + 0.0099f * static_cast<float>(j));
  w.add_tensor("gate.quantiles", {101, L * KV}, DType::F32, f32_bytes(q));
  w.write(path);
  return path;
}

// Records the gate's scores for every token the engine runs (an observer beside no policy).
class GateRecorder : public SequenceObserver {
 public:
  explicit GateRecorder(std::shared_ptr<const GateModel> g) : state_(std::move(g)) {}
  void after_attention(KvStore&, SeqId, const Attention&) override {}
  void on_hidden(SeqId, int layer, const float* x, int64_t dim, int T) override {
    if (layer >= state_.model().n_layers()) return;
    std::vector<float> s(static_cast<size_t>(T * state_.model().n_kv()));
    state_.step(layer, x, dim, T, s.data());
    auto& dst = scores[static_cast<size_t>(layer)];
    dst.insert(dst.end(), s.begin(), s.end());
  }
  GateState state_;
  std::vector<std::vector<float>> scores = std::vector<std::vector<float>>(64);
};

class GateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = Model::load(bundled());
    EngineOptions o;
    o.threads = 2;
    engine_ = std::make_unique<Engine>(*model_, o);
  }
  std::vector<int32_t> prompt(int n) const {
    const std::string text =
        "The grass is green. The sky is blue. What I learned from writing essays is that you find out what you "
        "think by writing it down, and the process of revising teaches you more than the first draft. ";
    std::string t;
    while (static_cast<int>(model_->tokenizer().encode(t, true).size()) < n) t += text;
    std::vector<int32_t> ids = model_->tokenizer().encode(t, true);
    ids.resize(static_cast<size_t>(n));
    return ids;
  }
  std::unique_ptr<Model> model_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(GateTest, IncrementalScoresEqualOneBatch) {
  const auto gate = GateModel::load(write_random_gate(model_->config(), 2, 8, 1), model_->config());
  const std::vector<int32_t> p = prompt(40);
  EngineOptions one;
  one.threads = 2;
  one.prefill_chunk = 1;  // one token at a time: the gate sees its cache grow row by row
  Engine tokenwise(*model_, one);
  auto a = std::make_shared<GateRecorder>(gate), b = std::make_shared<GateRecorder>(gate);
  SeqId s1 = engine_->new_sequence(), s2 = tokenwise.new_sequence();
  engine_->observe(s1, a);
  tokenwise.observe(s2, b);
  engine_->prefill(s1, p);
  tokenwise.prefill(s2, p);
  for (int l = 0; l < model_->config().n_layers; ++l) {
    const auto& x = a->scores[static_cast<size_t>(l)];
    const auto& y = b->scores[static_cast<size_t>(l)];
    ASSERT_EQ(x.size(), p.size() * static_cast<size_t>(model_->config().n_kv_heads));
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_GT(x[i], 0.0f);
      EXPECT_LT(x[i], 1.0f);
      EXPECT_NEAR(x[i], y[i], 2e-4) << "layer " << l << " entry " << i;
    }
  }
  EXPECT_EQ(a->state_.bytes(), p.size() * model_->config().n_layers * 2 * 2 * 8 * sizeof(float));
}

TEST_F(GateTest, MlpGateScoresEachTokenAloneAndKeepsNoCache) {
  const auto gate = GateModel::load(write_random_gate(model_->config(), 0, 16, 11), model_->config());
  EXPECT_EQ(gate->kind(), GateModel::Kind::Mlp);
  GateState a(gate), b(gate);
  const int D = model_->config().dim, KV = model_->config().n_kv_heads;
  std::vector<float> x(static_cast<size_t>(3 * D));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  std::vector<float> s3(static_cast<size_t>(3 * KV)), s1(static_cast<size_t>(KV));
  a.step(1, x.data(), D, 3, s3.data());
  b.step(1, x.data() + 2 * D, D, 1, s1.data());  // the third token alone: the same score
  for (int h = 0; h < KV; ++h) EXPECT_FLOAT_EQ(s3[static_cast<size_t>(2 * KV + h)], s1[static_cast<size_t>(h)]);
  EXPECT_EQ(a.bytes(), 0u);
}

TEST_F(GateTest, ThresholdsFollowTheCalibratedPercentiles) {
  const auto gate = GateModel::load(write_random_gate(model_->config(), 1, 4, 2), model_->config());
  EXPECT_FLOAT_EQ(gate->threshold(0, 0, -1), 0.5f);
  EXPECT_LT(gate->threshold(0, 0, 0.0), 0.0f);  // nothing falls below
  EXPECT_GT(gate->threshold(0, 0, 1.0), 1.0f);  // everything falls below
  EXPECT_NEAR(gate->threshold(1, 1, 0.5), 0.005f + 0.0099f * 50, 1e-6);
  EXPECT_NEAR(gate->threshold(1, 1, 0.255), 0.005f + 0.0099f * 25.5, 1e-5);
  float prev = -1;
  for (double r = 0.01; r < 1; r += 0.01) {
    EXPECT_GE(gate->threshold(2, 0, r), prev);
    prev = gate->threshold(2, 0, r);
  }
}

TEST_F(GateTest, RateZeroKeepsEveryTokenAndMatchesTheFullCache) {
  const std::string g = write_random_gate(model_->config(), 2, 8, 3);
  const std::vector<int32_t> p = prompt(120);
  SeqId full = engine_->new_sequence(), gated = engine_->new_sequence();
  auto ref = engine_->prefill(full, p);
  auto comp =
      attach_policy(*engine_, gated, make_policy("gate(rate=0,file=" + g + ")", Budget{}), static_cast<int>(p.size()));
  auto got = engine_->prefill(gated, p);
  for (int step = 0; step < 6; ++step) {
    ASSERT_EQ(ref.size(), got.size());
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_FLOAT_EQ(ref[i], got[i]);
    const int32_t next = argmax(ref.data(), static_cast<int>(ref.size()));
    ref = engine_->decode(full, next);
    got = engine_->decode(gated, next);
  }
  EXPECT_EQ(comp->report().gate_evicted, 0);
  EXPECT_GT(comp->report().gate_cache_bytes, 0u);
}

TEST_F(GateTest, EvictsBelowThresholdKeepsProtectedAndHonoursTheCap) {
  const ModelConfig& c = model_->config();
  const std::string g = write_random_gate(c, 2, 8, 4);
  const auto gate = GateModel::load(g, c);
  const std::vector<int32_t> p = prompt(200);
  // Scores of every token, recorded independently of the policy.
  auto rec = std::make_shared<GateRecorder>(gate);
  SeqId r = engine_->new_sequence();
  engine_->observe(r, rec);
  engine_->prefill(r, p);
  engine_->free_sequence(r);
  for (const char* budget : {"", "0.25"}) {
    const auto policy =
        make_policy("gate(rate=0.6,sinks=4,window=16,file=" + g + ")", *budget ? Budget::parse(budget) : Budget{});
    SeqId s = engine_->new_sequence();
    auto comp = attach_policy(*engine_, s, policy, static_cast<int>(p.size()));
    engine_->prefill(s, p);
    const int cap = *budget ? Budget::parse(budget).capacity(static_cast<int>(p.size())) : 1 << 30;
    long evicted = 0;
    for (int l = 0; l < c.n_layers; ++l)
      for (int h = 0; h < c.n_kv_heads; ++h) {
        const float thr = gate->threshold(l, h, 0.6);
        std::set<int32_t> present;
        for (int i = 0; i < engine_->kv().head_len(s, l, h); ++i)
          present.insert(engine_->kv().slot_position(s, l, h, i));
        EXPECT_LE(static_cast<int>(present.size()), std::max(cap, 20)) << "layer " << l << " head " << h;
        evicted += static_cast<long>(p.size()) - static_cast<long>(present.size());
        for (int32_t pos = 0; pos < static_cast<int32_t>(p.size()); ++pos) {
          const float sc = rec->scores[static_cast<size_t>(l)][static_cast<size_t>(pos * c.n_kv_heads + h)];
          const bool protected_ = pos < 4 || pos >= static_cast<int32_t>(p.size()) - 16;
          if (protected_) {
            EXPECT_TRUE(present.count(pos)) << "protected position " << pos << " evicted";
          } else if (sc < thr) {
            EXPECT_FALSE(present.count(pos)) << "flagged position " << pos << " kept";
          } else if (!*budget) {
            EXPECT_TRUE(present.count(pos)) << "kept position " << pos;
          }
        }
      }
    EXPECT_EQ(evicted, comp->report().gate_evicted);
    // Decode: the cap holds and the new tokens' flags apply once they leave the window.
    int32_t next = 5;
    for (int step = 0; step < 24; ++step) next = argmax(engine_->decode(s, next).data(), c.n_vocab);
    for (int l = 0; l < c.n_layers; ++l)
      for (int h = 0; h < c.n_kv_heads; ++h) EXPECT_LE(engine_->kv().head_len(s, l, h), std::max(cap, 20));
    engine_->free_sequence(s);
  }
}

TEST_F(GateTest, BadGateFilesGiveClearErrors) {
  const ModelConfig& c = model_->config();
  try {
    GateModel::load(write_random_gate(c, 2, 8, 5, c.dim + 1), c);
    FAIL() << "a gate for another shape loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the gate was trained for"), std::string::npos) << e.what();
  }
  const std::string junk = test::temp_path("junk.gate.gguf");
  test::write_file(junk, "GGUF but not really");
  EXPECT_THROW(GateModel::load(junk, c), Error);
  SeqId s = engine_->new_sequence();
  try {
    attach_policy(*engine_, s, make_policy("gate(file=/nonexistent.gate.gguf)", Budget{}), 10);
    FAIL() << "a missing gate file attached";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent.gate.gguf"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_policy("gate(rate=1.5)", Budget{}), Error);
}

// The trained gates carry scores the Python trainer computed for their first tokens; the C++ gate over
// the engine's hidden states must reproduce them.
void expect_trainer_scores(const std::string& model_path, const std::string& gate_path) {
  auto model = Model::load(model_path);
  EngineOptions o;
  o.threads = 2;
  Engine engine(*model, o);
  const auto gate = GateModel::load(gate_path, model->config());
  auto f = GgufFile::open(gate_path);
  const GgufValue* tv = f->find("kvwise.gate.check_tokens");
  ASSERT_NE(tv, nullptr);
  std::vector<int32_t> toks;
  for (const auto& v : tv->as_array()) toks.push_back(static_cast<int32_t>(v.as_int()));
  const GgufTensorInfo* t = f->find_tensor("gate.check_scores");
  ASSERT_NE(t, nullptr);
  const float* want = reinterpret_cast<const float*>(f->tensor_data(*t));
  auto rec = std::make_shared<GateRecorder>(gate);
  SeqId s = engine.new_sequence();
  engine.observe(s, rec);
  engine.prefill(s, toks);
  const int KV = model->config().n_kv_heads, n = static_cast<int>(toks.size());
  for (int l = 0; l < model->config().n_layers; ++l)
    for (int i = 0; i < n * KV; ++i)
      EXPECT_NEAR(rec->scores[static_cast<size_t>(l)][static_cast<size_t>(i)], want[l * n * KV + i], 3e-3)
          << gate_path << " layer " << l << " entry " << i;
}

TEST(GateTrained, BundledGateMatchesTheTrainer) {
  const std::string g = GateModel::default_path(bundled());
  if (access(g.c_str(), R_OK) != 0) GTEST_FAIL() << "the bundled gate " << g << " is missing";
  expect_trainer_scores(bundled(), g);
}

TEST(GateTrained, Stories260KGateMatchesTheTrainer) {
  KVWISE_REQUIRE_DATA();
  expect_trainer_scores(test::stories_gguf(), std::string(KVWISE_SOURCE_DIR) + "/models/stories260K.gate.gguf");
}

}  // namespace
}  // namespace kvwise
