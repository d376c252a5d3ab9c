// The load generator: scaled prompts keep the trace's prefix structure (equal block ids give equal
// token blocks, different ids different ones), fit the context, and replaying the Mooncake trace
// against the real server reports the cached tokens the server's own metrics count; the scaled trace
// it writes is what `kvwise sim` replays.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "serve/loadgen.h"
#include "sim/replay.h"
#include "test_support.h"

namespace kvwise {
namespace {

sim::Trace tiny_trace() {
  sim::Trace t;
  t.block_tokens = 512;
  const auto add = [&](double time, uint32_t in, uint32_t out, std::vector<prefix::BlockKey> blocks) {
    sim::TraceRequest r;
    r.time = time;
    r.input_tokens = in;
    r.output_tokens = out;
    r.blocks = std::move(blocks);
    t.requests.push_back(r);
  };
  add(10.0, 1200, 300, {1, 2, 3});
  add(12.0, 1536, 32, {1, 2, 4});
  std::vector<prefix::BlockKey> many;
  for (prefix::BlockKey i = 0; i < 100; ++i) many.push_back(100 + i);
  add(13.0, 50000, 3000, many);
  return t;
}

TEST(Loadgen, ScaledPromptsKeepThePrefixStructure) {
  LoadScale s;
  s.block_tokens = 8;
  s.vocab = 1000;
  s.ctx = 200;
  s.time_scale = 0.5;
  s.output_scale = 0.1;
  s.max_output = 16;
  const auto q = scale_trace(tiny_trace(), s);
  ASSERT_EQ(q.size(), 3u);
  EXPECT_DOUBLE_EQ(q[0].time, 0.0);
  EXPECT_DOUBLE_EQ(q[1].time, 1.0);
  EXPECT_EQ(q[0].prompt.size(), 19u);  // ceil(1200 * 8 / 512)
  EXPECT_EQ(q[0].blocks, (std::vector<prefix::BlockKey>{1, 2}));
  EXPECT_EQ(q[0].max_tokens, 16);  // 30, capped
  EXPECT_EQ(q[1].max_tokens, 3);
  EXPECT_EQ(q[1].prompt.size(), 24u);
  // Blocks 1 and 2 are the same 16 tokens in both prompts; block 3 and 4 differ.
  EXPECT_TRUE(std::equal(q[0].prompt.begin(), q[0].prompt.begin() + 16, q[1].prompt.begin()));
  EXPECT_FALSE(std::equal(q[0].prompt.begin() + 16, q[0].prompt.begin() + 19, q[1].prompt.begin() + 16));
  // The long request is cut to the context, whole blocks first.
  EXPECT_LE(static_cast<int>(q[2].prompt.size()) + q[2].max_tokens, 200);
  EXPECT_EQ(q[2].blocks.size(), q[2].prompt.size() / 8);
  for (const auto& r : q)
    for (int32_t t : r.prompt) EXPECT_TRUE(t >= s.token_lo && t < s.vocab);
  const sim::Trace st = scaled_trace(q, 8);
  EXPECT_EQ(st.requests[1].blocks, q[1].blocks);
  s.vocab = 0;
  EXPECT_THROW(scale_trace(tiny_trace(), s), Error);
}

TEST(Loadgen, ReplaysMooncakeAgainstTheServerAndMatchesItsMetrics) {
  KVWISE_REQUIRE_DATA();
  test::ServerProcess server =
      test::start_server("-m '" + test::stories_gguf() + "' --data-dir '" + test::data_dir() +
                         "' -t 2 --prefix-cache-blocks 400 --block-tokens 16 --max-queue 1024");
  ASSERT_GT(server.port, 0);
  const std::string json_path = test::temp_path("loadgen.json"), trace_path = test::temp_path("scaled.jsonl");
  const auto r =
      test::run_kvwise("loadgen --data-dir '" + test::data_dir() + "' --port " + std::to_string(server.port) +
                       " --requests 120 --time-scale 0.05 --max-output 8 --json '" + json_path + "' --write-trace '" +
                       trace_path + "' --label lru");
  EXPECT_EQ(test::stop_server(server), 0);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("TTFT"), std::string::npos);
  const auto j = nlohmann::json::parse(test::read_file(json_path));
  EXPECT_EQ(j["requests"], 120);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_GT(j["completion_tokens"].get<long>(), 120);
  EXPECT_GT(j["ttft"]["p50"].get<double>(), 0);
  // Cached tokens come in whole 16-token blocks; the server's block hits cover at least them.
  const long cached = j["cached_tokens"].get<long>();
  EXPECT_EQ(cached % 16, 0);
  EXPECT_GE(j["server"]["block_hits"].get<double>(), static_cast<double>(cached / 16));
  EXPECT_GT(j["server"]["block_hits"].get<double>(), 0);
  // The scaled trace replays in the simulator with the same number of blocks the server looked up.
  const sim::Trace scaled = sim::read_trace(trace_path, "bailian");
  ASSERT_EQ(scaled.requests.size(), 120u);
  sim::ReplayOptions ro;
  ro.capacity_blocks = 400;
  const auto res = sim::replay(scaled, ro);
  EXPECT_EQ(static_cast<double>(res.blocks), j["server"]["lookup_blocks"].get<double>());
}

}  // namespace
}  // namespace kvwise
