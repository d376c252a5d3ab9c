// Continuous batching: batched requests give the same greedy tokens as one-at-a-time generation,
// cancellation frees the sequence at once, a full queue refuses, bad requests are errors, and each
// request may carry its own KV policy.
#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "base/error.h"
#include "compress/registry.h"
#include "model/generate.h"
#include "serve/chat_template.h"
#include "serve/scheduler.h"
#include "test_support.h"

namespace kvwise {
namespace {

class SchedulerOnStories : public test::StoriesEngineTest {
 protected:
  void SetUp() override {
    StoriesEngineTest::SetUp();
    if (!engine_) return;
  }
  std::vector<int32_t> prompt(const std::string& text) { return model_->tokenizer().encode(text, true); }
  static SamplerParams greedy() {
    SamplerParams s;
    s.temperature = 0;
    return s;
  }
};

TEST_F(SchedulerOnStories, BatchedGreedyEqualsSequentialGeneration) {
  const std::vector<std::string> texts = {"Once upon a time",
                                          "Tom had a red ball.",
                                          "The sun was hot and",
                                          "Lily and her mom went to the park. They saw a big dog.",
                                          "One day",
                                          "The little bird could not fly. It was sad because",
                                          "Sam",
                                          "Mia liked to"};
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) {
    Sampler s(greedy());
    expected.push_back(generate(*engine_, prompt(t), 24, s).tokens);
  }
  std::vector<std::promise<Completion>> done(texts.size());
  Scheduler sched(*engine_, {4, 64, 16, 0, nullptr});  // small prefill chunks: prefill and decode interleave
  for (size_t i = 0; i < texts.size(); ++i) {
    ServeRequest r;
    r.prompt = prompt(texts[i]);
    r.max_tokens = 24;
    r.sampling = greedy();
    r.on_done = [&done, i](const Completion& c) { done[i].set_value(c); };
    sched.submit(std::move(r));
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    const Completion c = done[i].get_future().get();
    EXPECT_EQ(c.tokens, expected[i]) << texts[i];
    EXPECT_EQ(c.finish_reason, expected[i].size() == 24 ? "length" : "stop");
    EXPECT_GT(c.ttft_seconds, 0.0);
  }
  sched.wait_idle();
  const SchedulerStats st = sched.stats();
  EXPECT_EQ(st.completed, static_cast<long>(texts.size()));
  EXPECT_EQ(st.kv_bytes, 0u);    // every sequence's pages went back to the pool
  EXPECT_LT(st.steps, 8L * 24);  // the requests really shared steps
}

TEST_F(SchedulerOnStories, CancellationFreesTheSequence) {
  std::promise<Completion> done;
  std::atomic<int> tokens{0};
  uint64_t id = 0;
  std::promise<void> first;
  Scheduler sched(*engine_, {2, 8, 64, 0, nullptr});
  ServeRequest r;
  r.prompt = prompt("Once upon a time");
  r.max_tokens = 400;
  r.sampling = greedy();
  r.on_token = [&](int32_t, const std::string&) {
    if (tokens++ == 0) first.set_value();
  };
  r.on_done = [&](const Completion& c) { done.set_value(c); };
  id = sched.submit(std::move(r));
  first.get_future().get();
  sched.cancel(id);
  const Completion c = done.get_future().get();
  EXPECT_EQ(c.finish_reason, "cancelled");
  EXPECT_LT(c.tokens.size(), 400u);
  sched.wait_idle();
  EXPECT_EQ(sched.stats().kv_bytes, 0u);
  EXPECT_EQ(sched.stats().cancelled, 1);
}

// --max-queue counts requests waiting for a busy batch: 0 still admits whatever a free slot takes.
TEST_F(SchedulerOnStories, MaxQueueZeroAdmitsIntoFreeSlotsOnly) {
  std::promise<Completion> done;
  std::promise<void> started;
  std::atomic<bool> first{true};
  Scheduler sched(*engine_, {1, 0, 64, 0, nullptr});
  ServeRequest r;
  r.prompt = prompt("Once upon a time");
  r.max_tokens = 200;
  r.ignore_eos = true;
  r.sampling = greedy();
  r.on_token = [&](int32_t, const std::string&) {
    if (first.exchange(false)) started.set_value();
  };
  r.on_done = [&done](const Completion& c) { done.set_value(c); };
  ASSERT_NO_THROW(sched.submit(std::move(r)));  // idle: the free slot takes it
  started.get_future().get();
  ServeRequest extra;
  extra.prompt = prompt("Hi");
  EXPECT_THROW(sched.submit(std::move(extra)), QueueFull);  // the only slot is busy and none may wait
  EXPECT_EQ(done.get_future().get().finish_reason, "length");
}

TEST_F(SchedulerOnStories, FullQueueAndBadRequestsAreRefused) {
  std::vector<std::promise<Completion>> done(2);  // outlives the scheduler
  std::promise<void> started;
  std::atomic<bool> first{true};
  Scheduler sched(*engine_, {1, 1, 64, 0, nullptr});
  for (int i = 0; i < 2; ++i) {
    ServeRequest r;
    r.prompt = prompt("Once upon a time");
    r.max_tokens = 200;
    r.sampling = greedy();
    if (i == 0)
      r.on_token = [&](int32_t, const std::string&) {
        if (first.exchange(false)) started.set_value();
      };
    r.on_done = [&done, i](const Completion& c) { done[static_cast<size_t>(i)].set_value(c); };
    sched.submit(std::move(r));
    if (i == 0) started.get_future().get();  // the first runs; the second fills the queue
  }
  ServeRequest extra;
  extra.prompt = prompt("Hi");
  EXPECT_THROW(sched.submit(std::move(extra)), QueueFull);
  EXPECT_EQ(sched.stats().rejected, 1);
  ServeRequest empty;
  EXPECT_THROW(sched.submit(std::move(empty)), Error);
  ServeRequest too_long;
  too_long.prompt = std::vector<int32_t>(600, 5);
  EXPECT_THROW(sched.submit(std::move(too_long)), Error);
  ServeRequest bad_token;
  bad_token.prompt = {1, 99999};
  EXPECT_THROW(sched.submit(std::move(bad_token)), Error);
  ServeRequest bad_policy;
  bad_policy.prompt = prompt("Once upon a time");
  bad_policy.policy = make_policy("snapkv(window=64)", Budget::parse("0.5"));
  EXPECT_THROW(sched.submit(std::move(bad_policy)), Error);
  ServeRequest no_room;  // KVzip's reconstruction pass needs positions after the prompt
  no_room.prompt = std::vector<int32_t>(static_cast<size_t>(engine_->ctx()) - 1, 5);
  no_room.policy = make_policy("kvzip", Budget::parse("0.5"));
  EXPECT_THROW(sched.submit(std::move(no_room)), Error);
  for (auto& d : done) d.get_future().get();
  sched.wait_idle();
}

TEST_F(SchedulerOnStories, StopStringsEndGenerationAndAreHeldBack) {
  Sampler g(greedy());
  const std::string full = generate(*engine_, prompt("Once upon a time"), 30, g).text;
  ASSERT_NE(full.find("Lily"), std::string::npos) << full;
  const auto run = [&](std::vector<std::string> stop) {
    std::promise<Completion> done;
    std::string streamed;
    Scheduler sched(*engine_, {2, 8, 64, 0, nullptr});
    ServeRequest r;
    r.prompt = prompt("Once upon a time");
    r.max_tokens = 30;
    r.sampling = greedy();
    r.stop = std::move(stop);
    r.on_token = [&](int32_t, const std::string& piece) { streamed += piece; };
    r.on_done = [&](const Completion& c) { done.set_value(c); };
    sched.submit(std::move(r));
    Completion c = done.get_future().get();
    EXPECT_EQ(streamed, c.text);  // what was streamed is exactly the final text
    return c;
  };
  const Completion lily = run({"nothing like this", "Lily"});
  EXPECT_EQ(lily.finish_reason, "stop");
  EXPECT_EQ(lily.text, full.substr(0, full.find("Lily")));
  const Completion none = run({"zzz"});
  EXPECT_EQ(none.finish_reason, "length");
  EXPECT_EQ(none.text, full);
  // A stop string that straddles tokens: the start of "little girl" is held back until it matches.
  const Completion girl = run({"little girl"});
  EXPECT_EQ(girl.text, full.substr(0, full.find("little girl")));
}

TEST_F(SchedulerOnStories, EachRequestCarriesItsOwnPolicy) {
  const std::vector<int32_t> p = prompt(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
      "saw a big red ball under a tree. She ran to the ball and kicked it very hard.");
  std::promise<Completion> full, snap;
  Scheduler sched(*engine_, {4, 8, 64, 0, nullptr});
  ServeRequest a, b;
  a.prompt = b.prompt = p;
  a.max_tokens = b.max_tokens = 8;
  a.sampling = b.sampling = greedy();
  b.policy = make_policy("snapkv(window=8)", Budget::parse("0.25"));
  a.on_done = [&](const Completion& c) { full.set_value(c); };
  b.on_done = [&](const Completion& c) { snap.set_value(c); };
  sched.submit(std::move(a));
  sched.submit(std::move(b));
  const Completion cf = full.get_future().get(), cs = snap.get_future().get();
  EXPECT_EQ(cf.tokens.size(), 8u);
  EXPECT_EQ(cs.tokens.size(), 8u);
  EXPECT_LT(cs.kv_bytes_peak, cf.kv_bytes_peak);
}

}  // namespace
}  // namespace kvwise

namespace kvwise {
namespace {

TEST(ChatTemplate, DetectsTheCommonFamiliesAndRendersThem) {
  EXPECT_EQ(detect_chat_format("{% for m in messages %}<|im_start|>{{ m.role }}..."), ChatFormat::ChatML);
  EXPECT_EQ(detect_chat_format("<|start_header_id|>{{ role }}<|end_header_id|>"), ChatFormat::Llama3);
  EXPECT_EQ(detect_chat_format("[INST] {{ content }} [/INST]"), ChatFormat::Llama2);
  EXPECT_EQ(detect_chat_format(""), ChatFormat::Plain);
  const std::vector<ChatMessage> m = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(render_chat(ChatFormat::ChatML, m),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(ChatFormat::Llama3, m),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>"
            "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(ChatFormat::Llama2, m), "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
  EXPECT_EQ(render_chat(ChatFormat::Plain, m), "system: Be brief.\nuser: Hi\nassistant:");
  EXPECT_THROW(render_chat(ChatFormat::Plain, {}), Error);
  EXPECT_THROW(render_chat(ChatFormat::Plain, {{"robot", "x"}}), Error);
}

}  // namespace
}  // namespace kvwise

namespace kvwise {
namespace {

// The hot-KV gauge (and --max-kv-bytes admission) counts what the store holds: with kv-int4 most of a
// sequence lives in low-precision segments, which a count of pages alone misses.
TEST_F(SchedulerOnStories, KvBytesCountLowPrecisionSegments) {
  Scheduler sched(*engine_, {4, 64, 512, 0, nullptr});
  std::string text;
  for (int i = 0; i < 20; ++i) text += "Lily and her mom went to the park. They saw a big dog. ";
  ServeRequest r;
  r.prompt = prompt(text);
  r.max_tokens = 12;
  r.ignore_eos = true;
  r.sampling = greedy();
  r.policy = make_policy("kv-int4", Budget{});
  size_t store_bytes = 0, page_bytes = 0;
  std::promise<void> at_token, read_done;
  auto read_done_future = read_done.get_future();
  int n = 0;
  r.on_token = [&](int32_t token, const std::string&) {
    if (token < 0) return;
    ++n;
    if (n == 6) {  // stats() now reflects this step's forward pass, until the next one
      store_bytes = engine_->kv().bytes_total();
      page_bytes = engine_->kv().pool().bytes_in_use();
      at_token.set_value();
      read_done_future.wait();
    }
  };
  std::promise<Completion> done;
  r.on_done = [&](const Completion& c) { done.set_value(c); };
  sched.submit(std::move(r));
  at_token.get_future().wait();
  const SchedulerStats s = sched.stats();
  read_done.set_value();
  done.get_future().wait();
  EXPECT_GT(store_bytes, page_bytes + page_bytes / 2) << "kv-int4 keeps most tokens in segments";
  EXPECT_EQ(s.kv_bytes, store_bytes);
}

}  // namespace
}  // namespace kvwise
