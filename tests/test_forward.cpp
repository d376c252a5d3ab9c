// The forward pass on the real stories260K model, and the engine's invariants: chunking, batching,
// decode-after-prefill and llama2.c import all give the same logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "eval/perplexity.h"
#include "model/convert.h"
#include "model/generate.h"
#include "test_support.h"

namespace kvwise {
namespace {

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class Stories : public ::testing::Test {
 protected:
  void SetUp() override {
    KVWISE_REQUIRE_DATA();
    model_ = Model::load(test::stories_gguf());
  }
  std::unique_ptr<Model> model_;
};

TEST_F(Stories, GreedyFromBosTellsTheKnownStory) {
  for (DType kv : {DType::F16, DType::F32}) {
    EngineOptions o;
    o.threads = 2;
    o.kv_type = kv;
    Engine e(*model_, o);
    SamplerParams sp;
    sp.temperature = 0;
    Sampler s(sp);
    const GenerateResult r = generate(e, {model_->tokenizer().bos()}, 40, s);
    EXPECT_EQ(
        r.text.rfind("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.", 0),
        0u)
        << r.text;
    EXPECT_EQ(e.kv().bytes_total(), 0u) << "the sequence's pages are returned";
  }
}

TEST_F(Stories, MeanNllOnTinyStoriesValidation) {
  std::ifstream in(test::data_dir() + "/data/tinystories_valid_sample/tinystories_valid_first_stories.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  const auto docs = split_documents(ss.str(), "<|endoftext|>");
  ASSERT_EQ(docs.size(), 21u);
  EngineOptions o;
  o.threads = 2;
  o.kv_type = DType::F32;
  Engine e(*model_, o);
  const PerplexityResult r = perplexity(e, docs, PerplexityOptions{true, nullptr, 0.5});
  EXPECT_EQ(r.tokens, 6989);
  EXPECT_NEAR(r.mean_nll(), 1.197, 0.005);
}

TEST_F(Stories, ChunkedPrefillBatchingAndDecodeAgree) {
  const auto ids =
      model_->tokenizer().encode("Once upon a time, there was a big dog. The dog liked to run and jump.", true);
  EngineOptions o;
  o.threads = 2;
  o.kv_type = DType::F32;
  Engine whole(*model_, o);
  const SeqId s0 = whole.new_sequence();
  const auto ref = whole.prefill(s0, ids, true);

  o.prefill_chunk = 5;  // several chunks, exercising both attention paths across chunk borders
  Engine chunked(*model_, o);
  EXPECT_LT(max_abs_diff(chunked.prefill(chunked.new_sequence(), ids, true), ref), 1e-4);

  // Decoding token by token reproduces each prefill row.
  Engine stepper(*model_, o);
  const SeqId s = stepper.new_sequence();
  const size_t V = static_cast<size_t>(model_->config().n_vocab);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto lg = stepper.decode(s, ids[i]);
    const std::vector<float> want(ref.begin() + static_cast<std::ptrdiff_t>(i * V),
                                  ref.begin() + static_cast<std::ptrdiff_t>((i + 1) * V));
    ASSERT_LT(max_abs_diff(lg, want), 1e-4) << "token " << i;
  }

  // Two sequences in one batch give what each gives alone.
  Engine batched(*model_, o);
  const SeqId a = batched.new_sequence(), b = batched.new_sequence();
  const std::vector<int32_t> other = model_->tokenizer().encode("The sun was hot.", true);
  const std::vector<BatchEntry> batch{{a, ids, false}, {b, other, false}};
  const auto both = batched.forward(batch);
  Engine alone(*model_, o);
  const auto lone = alone.prefill(alone.new_sequence(), other);
  EXPECT_LT(max_abs_diff(std::vector<float>(both.begin(), both.begin() + static_cast<std::ptrdiff_t>(V)),
                         std::vector<float>(ref.end() - static_cast<std::ptrdiff_t>(V), ref.end())),
            1e-4);
  EXPECT_LT(max_abs_diff(std::vector<float>(both.begin() + static_cast<std::ptrdiff_t>(V), both.end()), lone), 1e-4);
  EXPECT_EQ(batched.kv().next_position(b), static_cast<int32_t>(other.size()));
}

TEST_F(Stories, ContextLimitIsAnErrorNotACrash) {
  EngineOptions o;
  o.ctx = 8;
  Engine e(*model_, o);
  const SeqId s = e.new_sequence();
  const std::vector<int32_t> long_prompt(9, 5);
  EXPECT_THROW(e.prefill(s, long_prompt), Error);
  EXPECT_EQ(e.kv().next_position(s), 0) << "a rejected batch leaves the sequence untouched";
  EXPECT_THROW(e.decode(s, 1 << 20), Error);  // token outside the vocabulary
}

TEST_F(Stories, Llama2cImportMatchesTheShippedGguf) {
  const std::string out = test::temp_path("stories-import.gguf");
  convert_llama2c(test::data_dir() + "/models/stories260K/stories260K.bin",
                  test::data_dir() + "/models/stories260K/tok512.bin", out);
  auto imported = Model::load(out);
  const auto ids = model_->tokenizer().encode("Lily and Ben went to the park.", true);
  EXPECT_EQ(imported->tokenizer().encode("Lily and Ben went to the park.", true), ids);
  EngineOptions o;
  o.kv_type = DType::F32;
  Engine e1(*model_, o), e2(*imported, o);
  EXPECT_EQ(max_abs_diff(e1.prefill(e1.new_sequence(), ids, true), e2.prefill(e2.new_sequence(), ids, true)), 0.0f);
}

TEST_F(Stories, QuantizedModelsStayClose) {
  const auto ids = model_->tokenizer().encode("The little cat sat on the mat and", true);
  EngineOptions o;
  o.kv_type = DType::F32;
  Engine ref_engine(*model_, o);
  const auto ref = ref_engine.prefill(ref_engine.new_sequence(), ids);
  for (const std::string type : {"f16", "bf16", "q8_0", "q4_0"}) {
    const std::string out = test::temp_path("stories-" + type + ".gguf");
    quantize_model(test::stories_gguf(), out, type);
    auto m = Model::load(out);
    Engine e(*m, o);
    const auto got = e.prefill(e.new_sequence(), ids);
    // Relative to the spread of the logits; a 260K-parameter model is very sensitive to 4-bit weights.
    const float spread = *std::max_element(ref.begin(), ref.end()) - *std::min_element(ref.begin(), ref.end());
    const float tol = type == "q4_0" ? 0.2f : type == "q8_0" ? 0.02f : type == "bf16" ? 0.01f : 0.002f;
    EXPECT_LT(max_abs_diff(got, ref) / spread, tol) << type;
    if (type != "q4_0") {
      EXPECT_EQ(argmax(got.data(), m->config().n_vocab), argmax(ref.data(), model_->config().n_vocab)) << type;
    }
  }
}

}  // namespace
}  // namespace kvwise
