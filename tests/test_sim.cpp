// Trace readers (real files and malformed lines), categories, the synthetic generator, hand-computed
// replay numbers, and a replay of the real Mooncake conversation trace.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "sim/categories.h"
#include "sim/cluster.h"
#include "sim/sweep.h"
#include "sim/synthetic.h"
#include "test_support.h"

namespace kvwise::sim {
namespace {

std::string mooncake_path() {
  return test::data_dir() + "/traces/mooncake-fast25/conversation_trace.jsonl";
}

TEST(Readers, MalformedLinesAreReportedAndSkippedOrFatal) {
  const std::string path = test::temp_path("bad.jsonl");
  test::write_file(path,
                   "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 5, \"hash_ids\": [1, 2]}\n"
                   "{\"timestamp\": 10, \"input_length\": 1000, \"output_length\": 5, \"hash_ids\": [1, 2\n"
                   "not json at all\n"
                   "{\"timestamp\": 20, \"input_length\": \"many\", \"output_length\": 5, \"hash_ids\": [1]}\n"
                   "{\"timestamp\": 30, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [1, -4]}\n"
                   "\n"
                   "{\"timestamp\": 40, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [1, 3]}\n"
                   "{\"timestamp\": 50, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [1, 3]}\n"
                   "{\"timestamp\": 60, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [1, 3]}\n");
  const Trace t = read_trace(path, "mooncake", OnBadLine::Skip);  // 4 bad of 8: not most
  EXPECT_EQ(t.requests.size(), 4u);
  EXPECT_EQ(t.skipped_lines, 4u);
  EXPECT_DOUBLE_EQ(t.requests[1].time, 0.040);  // milliseconds -> seconds
  try {
    read_trace(path, "mooncake", OnBadLine::Fail);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(":2:"), std::string::npos) << "names the line: " << e.what();
  }
  EXPECT_THROW(read_trace(test::temp_path("missing.jsonl"), "mooncake"), Error);
  EXPECT_THROW(read_trace(path, "parquet"), Error);
}

TEST(Readers, AzureCsvAndBailianRoundTrip) {
  const std::string csv = test::temp_path("az.csv");
  test::write_file(csv,
                   "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.5,1374,44\n"
                   "2023-11-16 18:15:48.0,20,109\nbroken line\n2023-11-16 18:15:49.0,-3,1\n");
  const Trace a = read_trace(csv, "auto");
  EXPECT_EQ(a.format, "azure");
  ASSERT_EQ(a.requests.size(), 2u);
  EXPECT_EQ(a.skipped_lines, 2u);
  EXPECT_NEAR(a.requests[1].time, 1.5, 1e-6);
  EXPECT_EQ(a.requests[0].blocks.size(), 3u);  // ceil(1374 / 512)

  SyntheticOptions so;
  so.requests = 300;
  const Trace g = generate_synthetic(so);
  const std::string jl = test::temp_path("syn.jsonl");
  write_bailian(g, jl);
  const Trace b = read_trace(jl, "auto");
  EXPECT_EQ(b.format, "bailian");
  ASSERT_EQ(b.requests.size(), g.requests.size());
  for (size_t i = 0; i < g.requests.size(); ++i) {
    EXPECT_EQ(b.requests[i].blocks, g.requests[i].blocks);
    EXPECT_EQ(b.requests[i].type, g.requests[i].type);
    EXPECT_EQ(b.requests[i].turn, g.requests[i].turn);
    EXPECT_NEAR(b.requests[i].time, g.requests[i].time, 1e-3);
  }
}

TEST(Synthetic, HasTheStructureItPromises) {
  SyntheticOptions so;
  so.requests = 3000;
  Trace t = generate_synthetic(so);
  ASSERT_EQ(t.requests.size(), 3000u);
  int follow_ups = 0;
  for (const auto& r : t.requests) follow_ups += r.turn > 1;
  EXPECT_GT(follow_ups, 500);  // multi-turn chains exist
  const double inf = infinite_capacity_hit_ratio(t);
  EXPECT_GT(inf, 0.3);
  EXPECT_LT(inf, 0.95);
  assign_categories(t, "auto");
  EXPECT_GE(t.category_names.size(), 8u);  // type x turn
  EXPECT_EQ(generate_synthetic(so).requests[17].blocks, t.requests[17].blocks) << "seeded";
}

TEST(Categories, InferenceRules) {
  Trace t;
  t.block_tokens = 512;
  t.requests.resize(3);
  t.requests[0].input_tokens = 1000;
  t.requests[0].blocks = {1, 2};
  t.requests[1].input_tokens = 3000;
  t.requests[1].blocks = {1, 2, 3, 4, 5, 6};
  t.requests[2].input_tokens = 600;
  t.requests[2].blocks = {1, 9};
  assign_categories(t, "turn-length");
  EXPECT_EQ(t.category_names[t.requests[0].category], "first/<2K");
  EXPECT_EQ(t.category_names[t.requests[1].category], "follow-up/2K-8K");
  EXPECT_EQ(t.category_names[t.requests[2].category], "first/<2K");
  EXPECT_THROW(assign_categories(t, "trace"), Error);
  EXPECT_THROW(assign_categories(t, "zodiac"), Error);
}

TEST(Replay, GoldenNumbersOfAHandWorkedTrace) {
  // 100-token blocks, capacity 3 blocks, LRU, one instance at 100 prefill tokens/s.
  Trace t;
  t.block_tokens = 100;
  const auto req = [](double time, uint32_t tokens, std::vector<prefix::BlockKey> blocks) {
    TraceRequest r;
    r.time = time;
    r.input_tokens = tokens;
    r.output_tokens = 1;
    r.blocks = std::move(blocks);
    return r;
  };
  t.requests = {req(0.0, 300, {1, 2, 3}), req(1.0, 250, {1, 2, 4}), req(10.0, 300, {1, 5, 6})};
  ReplayOptions o;
  o.policy = "lru";
  o.capacity_blocks = 3;
  o.latency.prefill_tokens_per_second = 100;
  const ReplayResult r = replay(t, o);
  // r0: 0 hits, prefill 300 tokens = 3 s (busy until 3). r1 arrives at 1, starts at 3: hits 1,2
  // (200 tokens); block 4 (50 tokens) evicts 3 (the tail, released first); prefill 0.5 s;
  // TTFT 2.5 s. r2 at 10: hits 1 (100 tokens), inserts 5 and 6 evicting 4 and 2; prefill 2 s.
  EXPECT_EQ(r.blocks, 9u);
  EXPECT_EQ(r.block_hits, 3u);
  EXPECT_DOUBLE_EQ(r.token_hits, 300.0);
  EXPECT_DOUBLE_EQ(r.tokens, 850.0);
  EXPECT_EQ(r.evictions, 3u);
  EXPECT_NEAR(r.qttft.mean, (3.0 + 2.5 + 2.0) / 3, 1e-9);
  EXPECT_NEAR(r.qttft.p99, 3.0, 1e-9);
  EXPECT_NEAR(infinite_capacity_hit_ratio(t), 3.0 / 9, 1e-12);
}

// A request of 100-token blocks (one output token).
TraceRequest req(double time, std::vector<prefix::BlockKey> blocks) {
  TraceRequest r;
  r.time = time;
  r.input_tokens = static_cast<uint32_t>(blocks.size()) * 100;
  r.output_tokens = 1;
  r.blocks = std::move(blocks);
  return r;
}

// Scoring a range: the earlier requests warm the cache and are not counted.
TEST(Replay, ScoreRangeCountsOnlyTheScoredRequests) {
  Trace t;
  t.block_tokens = 100;
  t.requests = {req(0.0, {1, 2, 3}), req(1.0, {1, 2, 4}), req(2.0, {1, 5}), req(3.0, {9})};
  ReplayOptions o;
  o.capacity_blocks = 10;
  o.latency.prefill_tokens_per_second = 1e6;
  const ReplayResult all = replay(t, o);
  EXPECT_EQ(all.blocks, 9u);
  EXPECT_EQ(all.block_hits, 3u);
  o.score_from = 0.25;   // r0 only warms the cache
  o.score_until = 0.75;  // r3 is not replayed
  const ReplayResult part = replay(t, o);
  EXPECT_EQ(part.requests, 2u);
  EXPECT_EQ(part.blocks, 5u);
  EXPECT_EQ(part.block_hits, 3u);  // 1, 2 of r1 and 1 of r2
  EXPECT_EQ(part.replayed_blocks, 8u);
  EXPECT_DOUBLE_EQ(part.tokens, 500.0);
  EXPECT_NEAR(infinite_capacity_hit_ratio(t, true, 0.25, 0.75), 3.0 / 5, 1e-12);
  o.score_from = 0.8;
  o.score_until = 0.5;
  EXPECT_THROW(replay(t, o), Error);
}

TEST(Sweep, GapClosedIsRelativeToLruAndBelady) {
  Trace t;
  t.block_tokens = 16;
  for (int i = 0; i < 200; ++i) {
    TraceRequest r;
    r.time = i;
    r.input_tokens = 32;
    r.blocks = {static_cast<prefix::BlockKey>(i % 7), static_cast<prefix::BlockKey>(100 + i % 13)};
    t.requests.push_back(r);
  }
  SweepOptions s;
  s.policies = {"fifo", "lru", "belady"};
  s.capacities = {4};
  s.base.latency.prefill_tokens_per_second = 1e6;
  const SweepResult r = run_sweep(t, s);
  const double lru = r.runs[1].block_hit_ratio(), opt = r.runs[2].block_hit_ratio();
  ASSERT_GT(opt, lru);
  EXPECT_NEAR(gap_closed(r, s, 0, 0), (r.runs[0].block_hit_ratio() - lru) / (opt - lru), 1e-12);
  EXPECT_EQ(gap_closed(r, s, 0, 1), 0.0);
  EXPECT_EQ(gap_closed(r, s, 0, 2), 1.0);
  s.policies = {"fifo", "lru"};
  EXPECT_TRUE(std::isnan(gap_closed(run_sweep(t, s), s, 0, 0)));  // no belady in the sweep
}

TEST(Replay, HoldingBlocksUntilDonePinsThemLikeALiveServer) {
  // Two instances, capacity 3 blocks: r1 starts while r0 (3 s of prefill) still runs.
  Trace t;
  t.block_tokens = 100;
  t.requests = {req(0.0, {1, 2, 3}), req(1.0, {7, 8}), req(5.0, {1, 2, 3})};
  ReplayOptions o;
  o.capacity_blocks = 3;
  o.latency.instances = 2;
  o.latency.prefill_tokens_per_second = 100;
  const ReplayResult released = replay(t, o);
  EXPECT_EQ(released.bypassed, 0u);    // r0's blocks were free to evict at r1's start
  EXPECT_EQ(released.block_hits, 1u);  // r2 finds only block 1 (7 and 8 evicted 3 and 2)
  o.hold_until_done = true;
  const ReplayResult held = replay(t, o);
  EXPECT_EQ(held.bypassed, 2u);    // r1's blocks found everything pinned by r0
  EXPECT_EQ(held.block_hits, 3u);  // so r0's prefix survived for r2
}

TEST(Replay, MooncakeConversationTrace) {
  KVWISE_REQUIRE_DATA();
  Trace t = read_trace(mooncake_path(), "auto");
  ASSERT_EQ(t.requests.size(), 12031u);
  EXPECT_EQ(t.skipped_lines, 0u);
  size_t blocks = 0;
  for (const auto& r : t.requests) blocks += r.blocks.size();
  EXPECT_EQ(blocks, 288500u);
  EXPECT_NEAR(infinite_capacity_hit_ratio(t), 0.366, 0.001);  // as PROVENANCE.md states
  assign_categories(t, "auto");
  SweepOptions s;
  s.policies = prefix::policy_names();
  s.capacities = {1000, 5000};
  s.threads = 2;
  const SweepResult r = run_sweep(t, s);
  for (size_t c = 0; c < s.capacities.size(); ++c) {
    double belady = 0;
    for (size_t p = 0; p < s.policies.size(); ++p)
      if (s.policies[p] == "belady") belady = r.runs[c * s.policies.size() + p].block_hit_ratio();
    for (size_t p = 0; p < s.policies.size(); ++p) {
      const ReplayResult& x = r.runs[c * s.policies.size() + p];
      EXPECT_LE(x.block_hit_ratio(), belady + 1e-12) << x.policy << " at " << x.capacity_blocks;
      EXPECT_GT(x.block_hit_ratio(), 0.02) << x.policy;
      EXPECT_EQ(x.blocks, 288500u);
    }
    EXPECT_LE(belady, r.infinite_hit_ratio);
  }
}

}  // namespace
}  // namespace kvwise::sim

namespace kvwise::sim {
namespace {

ClusterOptions cluster_options(int instances, const std::string& routing, size_t capacity, size_t shared = 0) {
  ClusterOptions c;
  c.instances = instances;
  c.routing = routing;
  c.instance.policy = "lru";
  c.instance.capacity_blocks = capacity;
  c.instance.latency.prefill_tokens_per_second = 20000;
  c.shared_tier_blocks = shared;
  return c;
}

TEST(Cluster, OneInstanceIsTheSingleCacheReplay) {
  SyntheticOptions so;
  so.requests = 1500;
  const Trace t = generate_synthetic(so);
  ReplayOptions r;
  r.policy = "lru";
  r.capacity_blocks = 400;
  r.latency.prefill_tokens_per_second = 20000;
  const ReplayResult single = replay(t, r);
  for (const std::string& routing : prefix::routing_policy_names()) {
    const ClusterResult c = replay_cluster(t, cluster_options(1, routing, 400));
    EXPECT_EQ(c.blocks, single.blocks) << routing;
    EXPECT_EQ(c.local_hits, single.block_hits) << routing;
    EXPECT_EQ(c.shared_hits, 0u);
    EXPECT_NEAR(c.qttft.p90, single.qttft.p90, 1e-9) << "one queue, one cache: the same latencies";
  }
}

TEST(Cluster, AnUnboundedSharedTierReachesTheInfiniteCacheAndPrefixRoutingKeepsLocality) {
  SyntheticOptions so;
  so.requests = 2000;
  const Trace t = generate_synthetic(so);
  const double infinite = infinite_capacity_hit_ratio(t);
  for (const std::string& routing : prefix::routing_policy_names()) {
    const ClusterResult c = replay_cluster(t, cluster_options(4, routing, 200, 1 << 20));
    // Every block an instance computes is written to the shared tier, so a block seen anywhere before
    // is found locally or there: the whole trace hits as one infinite cache.
    EXPECT_NEAR(c.hit_ratio(), infinite, 1e-12) << routing;
    uint64_t routed = 0;
    for (auto n : c.requests_per_instance) routed += n;
    EXPECT_EQ(routed, c.requests);
    EXPECT_GE(c.load_imbalance(), 1.0);
  }
  const ClusterResult rr = replay_cluster(t, cluster_options(4, "round-robin", 200));
  const ClusterResult pre = replay_cluster(t, cluster_options(4, "prefix", 200));
  const ClusterResult cost = replay_cluster(t, cluster_options(4, "cost", 200));
  EXPECT_GT(pre.local_hit_ratio(), rr.local_hit_ratio() + 0.05) << "conversations go back to their instance";
  EXPECT_GT(cost.local_hit_ratio(), rr.local_hit_ratio());
  EXPECT_LE(pre.hit_ratio(), infinite);
}

TEST(Cluster, SlotsServeInParallelAndHeldBlocksArePinned) {
  SyntheticOptions so;
  so.requests = 1500;
  so.rate = 40;  // overloads one sequence at a time
  const Trace t = generate_synthetic(so);
  ClusterOptions serial = cluster_options(2, "round-robin", 60), batched = serial;
  batched.instance.latency.instances = 8;
  const ClusterResult one = replay_cluster(t, serial), eight = replay_cluster(t, batched);
  EXPECT_LT(eight.qttft.p90, one.qttft.p90 / 2) << "8 slots per instance drain the queue";
  ClusterOptions held = batched;
  held.instance.hold_until_done = true;
  const ClusterResult h = replay_cluster(t, held);
  // Eight running requests' blocks pinned in a 60-block cache: some cannot be cached at all.
  EXPECT_LT(h.local_hits, eight.local_hits);
  EXPECT_EQ(h.blocks, eight.blocks);
}

TEST(Cluster, SweepCoversEveryCombinationAndReports) {
  SyntheticOptions so;
  so.requests = 300;
  const Trace t = generate_synthetic(so);
  ClusterSweepOptions s;
  s.routings = {"round-robin", "prefix"};
  s.instances = {1, 2};
  s.shared_tier_blocks = {0, 500};
  s.policies = {"lru"};
  s.capacities = {100};
  s.base = cluster_options(1, "round-robin", 100);
  const auto runs = run_cluster_sweep(t, s);
  ASSERT_EQ(runs.size(), 8u);
  EXPECT_NE(format_cluster_tables(runs).find("| prefix"), std::string::npos);
  const auto j = nlohmann::json::parse(cluster_to_json(t, runs, s));
  EXPECT_EQ(j["runs"].size(), 8u);
  EXPECT_THROW(replay_cluster(t, cluster_options(0, "prefix", 100)), std::exception);
  auto bad = cluster_options(2, "prefix", 100);
  bad.instance.policy = "belady";
  EXPECT_THROW(replay_cluster(t, bad), std::exception);
}

}  // namespace
}  // namespace kvwise::sim
