// Prefix-cache mechanics: chain semantics, pinning, tail-first release, tiers with demotion and
// promotion, chain hashes of token blocks, and metadata size.
#include <gtest/gtest.h>

#include <tuple>

#include "prefix/block_hash.h"
#include "prefix/prefix_cache.h"

namespace kvwise::prefix {
namespace {

PrefixCache make(size_t cap, const std::string& policy = "lru", std::vector<TierSpec> lower = {}) {
  PrefixCacheConfig c;
  c.policy = policy;
  c.tiers = {{"t0", cap, 0}};
  for (auto& t : lower) c.tiers.push_back(t);
  return PrefixCache(c);
}

TEST(PrefixCache, OnlyTheUnbrokenPrefixHits) {
  auto c = make(10);
  const std::vector<BlockKey> a{1, 2, 3, 4};
  c.release(c.acquire(a, 0, 1), 1);
  const std::vector<BlockKey> b{1, 2, 9, 4};  // 4 is cached but follows a miss
  const auto r = c.acquire(b, 0, 2);
  EXPECT_EQ(r.hit_blocks, 2u);
  EXPECT_EQ(r.inserted, 1u);
  c.release(r, 2);
  PrefixCacheConfig holes;
  holes.tiers = {{"t0", 10, 0}};
  holes.chain = false;
  PrefixCache h(holes);
  h.release(h.acquire(a, 0, 1), 1);
  EXPECT_EQ(h.acquire(b, 0, 2).hit_blocks, 3u);
}

TEST(PrefixCache, PinnedBlocksAreNeverEvicted) {
  auto c = make(3);
  const std::vector<BlockKey> running{1, 2, 3};
  const auto held = c.acquire(running, 0, 1);  // not released: all three pinned
  const std::vector<BlockKey> other{7, 8};
  const auto r = c.acquire(other, 0, 2);
  EXPECT_TRUE(r.bypassed);
  EXPECT_EQ(r.inserted, 0u);
  for (BlockKey k : running) EXPECT_EQ(c.tier_of(k), 0);
  c.release(r, 2);
  c.release(held, 3);
  const auto again = c.acquire(other, 0, 4);
  EXPECT_FALSE(again.bypassed);
  EXPECT_EQ(c.tier_of(3), -1) << "released tail first, so the tail is the LRU victim";
  EXPECT_EQ(c.tier_of(1), 0);
}

TEST(PrefixCache, EvictedBlocksDemoteAndHitsPromote) {
  auto c = make(2, "lru", {{"host", 4, 1e9}});
  const std::vector<BlockKey> a{1, 2}, b{3, 4};
  c.release(c.acquire(a, 0, 1), 1);
  c.release(c.acquire(b, 0, 2), 2);
  EXPECT_EQ(c.tier_of(1), 1);
  EXPECT_EQ(c.tier_of(2), 1);
  EXPECT_EQ(c.tier_of(3), 0);
  const auto r = c.acquire(a, 0, 3);
  EXPECT_EQ(r.hit_blocks, 2u);
  EXPECT_EQ(r.hits_by_tier[1], 2u);
  EXPECT_EQ(c.tier_of(1), 0);
  EXPECT_EQ(c.tier_of(3), 1);
  c.release(r, 3);
  EXPECT_EQ(c.metrics().tiers[1].hits, 2u);
  EXPECT_EQ(c.metrics().tiers[0].evictions, 4u);
}

TEST(PrefixCache, ReportsEveryMoveBetweenTiers) {
  std::vector<std::tuple<BlockKey, int, int>> moves;
  PrefixCacheConfig cfg;
  cfg.tiers = {{"t0", 2, 0}, {"t1", 1, 0}};
  cfg.on_move = [&](BlockKey k, int from, int to) { moves.emplace_back(k, from, to); };
  PrefixCache c(cfg);
  const std::vector<BlockKey> a{1, 2}, b{3};
  c.release(c.acquire(a, 0, 1), 1);
  EXPECT_TRUE(moves.empty());  // insertions are not moves
  c.release(c.acquire(b, 0, 2), 2);
  // LRU victim 2 (tail released first) goes down a tier.
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0], std::make_tuple(BlockKey{2}, 0, 1));
  c.release(c.acquire(std::vector<BlockKey>{4}, 0, 3), 3);
  // 1 is demoted; the full lower tier drops 2 for it.
  ASSERT_EQ(moves.size(), 3u);
  EXPECT_EQ(moves[1], std::make_tuple(BlockKey{2}, 1, -1));
  EXPECT_EQ(moves[2], std::make_tuple(BlockKey{1}, 0, 1));
  c.release(c.acquire(std::vector<BlockKey>{1}, 0, 4), 4);  // hit in tier 1: promoted (3 demoted, 1 dropped first)
  EXPECT_EQ(moves.back(), std::make_tuple(BlockKey{1}, 1, 0));
  EXPECT_EQ(c.tier_of(1), 0);
}

TEST(PrefixCache, ChainHashesIdentifyPrefixes) {
  std::vector<int32_t> t1(64), t2(64);
  for (int i = 0; i < 64; ++i) t1[static_cast<size_t>(i)] = t2[static_cast<size_t>(i)] = i;
  t2[40] = 999;  // differs in the third 16-token block
  const auto k1 = block_keys(t1, 16), k2 = block_keys(t2, 16);
  ASSERT_EQ(k1.size(), 4u);
  EXPECT_EQ(k1[0], k2[0]);
  EXPECT_EQ(k1[1], k2[1]);
  EXPECT_NE(k1[2], k2[2]);
  EXPECT_NE(k1[3], k2[3]) << "a block's key depends on everything before it";
  EXPECT_NE(block_keys(t1, 16, 1)[0], k1[0]) << "a salt separates tenants";
  EXPECT_EQ(block_keys(std::vector<int32_t>(15, 1), 16).size(), 0u) << "partial blocks are not cached";
}

TEST(PrefixCache, MetadataStaysSmall) {
  for (const auto& p : policy_names()) {
    auto c = make(20000, p);
    std::vector<BlockKey> keys;
    for (BlockKey k = 0; k < 20000; ++k) keys.push_back(k + 1);
    for (size_t i = 0; i < keys.size(); i += 50) {
      const std::vector<BlockKey> chunk(keys.begin() + static_cast<std::ptrdiff_t>(i),
                                        keys.begin() + static_cast<std::ptrdiff_t>(i + 50));
      c.release(c.acquire(chunk, static_cast<uint16_t>(i % 3), static_cast<double>(i)), static_cast<double>(i));
    }
    EXPECT_LT(static_cast<double>(c.metadata_bytes()) / 20000.0, 128.0) << p;
  }
}

}  // namespace
}  // namespace kvwise::prefix
