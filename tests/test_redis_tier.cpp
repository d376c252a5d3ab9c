// The shared prefix tier against real Redis servers (and a real 3-node cluster) started by the test:
// records verify, every fault degrades to a miss within the deadline, writes never block, and the
// cluster client routes by slot and follows MOVED and ASK.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "redis_support.h"
#include "serve/redis_tier.h"

namespace kvwise {
namespace {

using Clock = std::chrono::steady_clock;

BlockIdentity identity(uint64_t model = 0x1234) {
  BlockIdentity id;
  id.model = model;
  id.block_tokens = 16;
  id.kv_tag = 7;
  id.n_layers = 2;
  id.n_kv_heads = 2;
  id.head_dim = 8;
  id.row_bytes = 16;
  id.payload_bytes = 2 * 2 * 2 * 16 * 16;  // layers x heads x (K, V) x tokens x row bytes
  return id;
}

std::vector<uint8_t> block_data(uint64_t seed, size_t n) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

RedisTierOptions options_for(RedisOptions redis) {
  RedisTierOptions o;
  o.redis = std::move(redis);
  o.redis.backoff_min = 0.02;
  o.redis.backoff_max = 0.1;
  o.lookup_deadline = 0.5;
  o.write_deadline = 2.0;
  return o;
}

TierGet get(RedisTier& t, prefix::BlockKey key, std::vector<uint8_t>* out) {
  out->assign(identity().payload_bytes, 0);
  return t.get(key, *out);
}

// A get that retries while the tier backs off, until `want` or 3 s.
TierGet get_until(RedisTier& t, prefix::BlockKey key, TierGet want) {
  std::vector<uint8_t> out;
  TierGet r = TierGet::error;
  for (int i = 0; i < 150 && (r = get(t, key, &out)) != want; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return r;
}

TEST(RedisClient, KeySlotsFollowTheClusterSpecification) {
  EXPECT_EQ(redis_key_slot("123456789"), 12739);  // the specification's CRC16 check value 0x31C3
  EXPECT_EQ(redis_key_slot("{user1000}.following"), redis_key_slot("user1000"));
  EXPECT_EQ(redis_key_slot("foo{}{bar}"), redis_key_slot("foo{}{bar}"));  // empty tag: the whole key
  EXPECT_NE(redis_key_slot("foo{}{bar}"), redis_key_slot("bar"));
  EXPECT_EQ(redis_key_slot("foo{{bar}}zap"), redis_key_slot("{bar"));
}

TEST(RedisClient, UrlsAndNodeListsParseOrSayWhatIsWrong) {
  const RedisOptions a = parse_redis_url("redis://:secret@10.0.0.5:7000/3");
  ASSERT_EQ(a.nodes.size(), 1u);
  EXPECT_EQ(a.nodes[0].host, "10.0.0.5");
  EXPECT_EQ(a.nodes[0].port, 7000);
  EXPECT_EQ(a.password, "secret");
  EXPECT_EQ(a.db, 3);
  EXPECT_EQ(parse_redis_url("redis://cache").nodes[0].port, 6379);
  EXPECT_THROW(parse_redis_url("http://cache:6379"), std::exception);
  EXPECT_THROW(parse_redis_url("redis://cache:99999"), std::exception);
  EXPECT_THROW(parse_redis_url("redis://cache:12x"), std::exception);
  const RedisOptions c = parse_redis_cluster_nodes("a:7000,b:7001,c:7002");
  EXPECT_TRUE(c.cluster);
  EXPECT_EQ(c.nodes.size(), 3u);
  EXPECT_THROW(parse_redis_cluster_nodes(","), std::exception);
}

TEST(RedisTier, BlocksRoundTripAndBadRecordsAreCountedMisses) {
  KVWISE_REQUIRE_REDIS();
  test::RedisProcess redis;
  ASSERT_TRUE(redis.running());
  RedisTier tier(options_for(parse_redis_url(redis.url())), identity());
  const size_t n = identity().payload_bytes;
  for (uint64_t k = 1; k <= 8; ++k) EXPECT_TRUE(tier.put(k, block_data(k, n)));
  ASSERT_TRUE(tier.flush(5));
  EXPECT_EQ(tier.counters().puts, 8u);
  std::vector<uint8_t> out;
  for (uint64_t k = 1; k <= 8; ++k) {
    ASSERT_EQ(get(tier, k, &out), TierGet::hit) << k;
    EXPECT_EQ(out, block_data(k, n));
  }
  EXPECT_EQ(get(tier, 99, &out), TierGet::missing);

  // The key names the identity: another model's tier never even finds these blocks.
  RedisTier other(options_for(parse_redis_url(redis.url())), identity(0x9999));
  EXPECT_EQ(get(other, 1, &out), TierGet::missing);
  EXPECT_NE(tier.redis_key(1), other.redis_key(1));

  // Damaged values under our keys: truncated, a byte flipped, a record of another model.
  const auto value = redis.command({"GET", tier.redis_key(2)});
  ASSERT_TRUE(value && value->str.size() == sizeof(BlockRecordHeader) + n);
  redis.command({"SET", tier.redis_key(2), value->str.substr(0, value->str.size() - 1)});
  std::string flipped = value->str;
  flipped[sizeof(BlockRecordHeader) + 5] ^= 0x40;
  redis.command({"SET", tier.redis_key(3), flipped});
  std::string foreign = value->str;
  uint64_t model = 0x9999;
  std::memcpy(foreign.data() + offsetof(BlockRecordHeader, model), &model, sizeof model);
  redis.command({"SET", tier.redis_key(4), foreign});
  for (uint64_t k : {2, 3, 4}) EXPECT_EQ(get(tier, k, &out), TierGet::rejected) << k;
  const TierCounters c = tier.counters();
  EXPECT_EQ(c.hits, 8u);
  EXPECT_EQ(c.rejected, 3u);
  EXPECT_EQ(c.misses, 1u);
  EXPECT_EQ(c.errors, 0u);
  EXPECT_TRUE(c.healthy);
  EXPECT_EQ(c.bytes_written, 8 * n);
}

TEST(RedisTier, DownAtStartIsAMissUntilItComesUp) {
  KVWISE_REQUIRE_REDIS();
  const int port = test::free_loopback_port();
  RedisTier tier(options_for(parse_redis_url("redis://127.0.0.1:" + std::to_string(port))), identity());
  const auto t0 = Clock::now();
  EXPECT_EQ(get_until(tier, 1, TierGet::missing), TierGet::error) << "nothing listens yet";
  EXPECT_FALSE(tier.counters().healthy);
  EXPECT_TRUE(tier.put(1, block_data(1, identity().payload_bytes)));  // queued, fails in the writer
  ASSERT_TRUE(tier.flush(5));
  EXPECT_GE(tier.counters().put_errors, 1u);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10.0);

  test::RedisProcess redis("", port);
  ASSERT_TRUE(redis.running());
  EXPECT_EQ(get_until(tier, 1, TierGet::missing), TierGet::missing) << "reconnects after its backoff";
  EXPECT_TRUE(tier.put(1, block_data(1, identity().payload_bytes)));
  // The writer may still be backing off from its failure: retry the write until it lands.
  for (int i = 0; i < 100 && tier.counters().puts == 0; ++i) {
    tier.flush(1);
    if (tier.counters().puts == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      tier.put(1, block_data(1, identity().payload_bytes));
    }
  }
  EXPECT_EQ(get_until(tier, 1, TierGet::hit), TierGet::hit);
  EXPECT_TRUE(tier.counters().healthy);
}

TEST(RedisTier, KilledThenRestartedEmptyCostsMissesThenHitsAgain) {
  KVWISE_REQUIRE_REDIS();
  test::RedisProcess redis;
  RedisTier tier(options_for(parse_redis_url(redis.url())), identity());
  const size_t n = identity().payload_bytes;
  tier.put(1, block_data(1, n));
  ASSERT_TRUE(tier.flush(5));
  ASSERT_EQ(get_until(tier, 1, TierGet::hit), TierGet::hit);
  redis.kill();
  std::vector<uint8_t> out;
  EXPECT_EQ(get(tier, 1, &out), TierGet::error);
  EXPECT_FALSE(tier.counters().healthy);
  ASSERT_TRUE(redis.start());
  EXPECT_EQ(get_until(tier, 1, TierGet::missing), TierGet::missing) << "restarted empty";
  for (int i = 0; i < 150 && get(tier, 2, &out) != TierGet::hit; ++i) {
    tier.put(2, block_data(2, n));  // the writer's first tries may fall in its backoff
    tier.flush(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(get(tier, 2, &out), TierGet::hit);
  EXPECT_EQ(out, block_data(2, n));
  EXPECT_GE(tier.counters().reconnects, 1u);
  EXPECT_TRUE(tier.counters().healthy);
}

TEST(RedisTier, SlowRedisIsAMissWithinTheDeadlineAndAFullQueueDrops) {
  KVWISE_REQUIRE_REDIS();
  test::RedisProcess redis;
  RedisTierOptions o = options_for(parse_redis_url(redis.url()));
  o.lookup_deadline = 0.1;
  o.queue_limit = 2;
  RedisTier tier(o, identity());
  const size_t n = identity().payload_bytes;
  tier.put(1, block_data(1, n));
  ASSERT_TRUE(tier.flush(5));
  std::thread sleeper([&] { redis.command({"DEBUG", "SLEEP", "1.5"}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server is asleep now
  const auto t0 = Clock::now();
  std::vector<uint8_t> out;
  EXPECT_EQ(get(tier, 1, &out), TierGet::error);
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(waited, 0.5) << "a late answer is a miss at the deadline";
  // The writer takes what is queued (at most the limit, 2) and is stuck sending it; 2 more wait; the
  // other 6 of the 10 are dropped (7 when the writer woke for the first alone).
  for (uint64_t k = 10; k < 20; ++k) tier.put(k, block_data(k, n));
  EXPECT_GE(tier.counters().queue_drops, 6u);
  sleeper.join();
  ASSERT_TRUE(tier.flush(5));
  EXPECT_EQ(get_until(tier, 1, TierGet::hit), TierGet::hit) << "back once Redis answers";
}

TEST(RedisTier, RedisEvictingUnderMaxmemoryIsMissesNeverErrors) {
  KVWISE_REQUIRE_REDIS();
  test::RedisProcess redis("--maxmemory 2mb --maxmemory-policy allkeys-lru");
  BlockIdentity id = identity();
  id.payload_bytes = 64 * 1024;
  RedisTier tier(options_for(parse_redis_url(redis.url())), id);
  for (uint64_t k = 0; k < 100; ++k) {
    tier.put(k, block_data(k, id.payload_bytes));
    if (k % 8 == 7) {
      ASSERT_TRUE(tier.flush(5));
    }
  }
  ASSERT_TRUE(tier.flush(5));
  int hits = 0, misses = 0;
  std::vector<uint8_t> out(id.payload_bytes);
  for (uint64_t k = 0; k < 100; ++k) {
    const TierGet r = tier.get(k, out);
    hits += r == TierGet::hit;
    misses += r == TierGet::missing;
    if (r == TierGet::hit) {
      EXPECT_EQ(out, block_data(k, id.payload_bytes));
    }
  }
  EXPECT_EQ(hits + misses, 100);
  EXPECT_GT(misses, 50) << "6.4 MB of blocks in 2 MB";
  EXPECT_GT(hits, 5);
  EXPECT_EQ(tier.counters().errors, 0u);
  EXPECT_EQ(tier.counters().put_errors, 0u);
}

TEST(RedisCluster, KeysGoToTheirSlotsNodeAndMovedAndAskAreFollowed) {
  KVWISE_REQUIRE_REDIS();
  test::RedisCluster cluster;
  ASSERT_TRUE(cluster.ok()) << "redis-cli --cluster create failed";
  RedisTier tier(options_for(parse_redis_cluster_nodes(cluster.seeds())), identity());
  const size_t n = identity().payload_bytes;
  for (uint64_t k = 1; k <= 60; ++k) tier.put(k, block_data(k, n));
  ASSERT_TRUE(tier.flush(5));
  EXPECT_EQ(tier.counters().puts, 60u);
  std::vector<uint8_t> out;
  for (uint64_t k = 1; k <= 60; ++k) {
    ASSERT_EQ(get(tier, k, &out), TierGet::hit) << k;
    EXPECT_EQ(out, block_data(k, n));
  }
  long total = 0;
  for (const auto& node : cluster.nodes) {
    const auto size = node->command({"DBSIZE"});
    ASSERT_TRUE(size);
    EXPECT_GT(size->integer, 0) << node->address() << " holds none of the 60 blocks";
    total += size->integer;
  }
  EXPECT_EQ(total, 60);
  for (uint64_t k = 1; k <= 5; ++k) {
    const auto slot = cluster.nodes[0]->command({"CLUSTER", "KEYSLOT", tier.redis_key(k)});
    ASSERT_TRUE(slot);
    EXPECT_EQ(slot->integer, redis_key_slot(tier.redis_key(k)));
  }

  // MOVED: a client whose slot map is wrong is redirected and repairs it.
  RedisClient client(parse_redis_cluster_nodes(cluster.seeds()));
  client.scramble_slot_map_for_test(cluster.nodes[0]->address());
  std::vector<RedisCommand> gets;
  for (uint64_t k = 1; k <= 60; ++k) gets.push_back({{"GET", tier.redis_key(k)}, 1});
  auto replies = client.run(gets, Clock::now() + std::chrono::seconds(5));
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i]);
    EXPECT_EQ(replies[i]->kind, RedisReply::Kind::string) << replies[i]->str;
  }
  EXPECT_GT(client.redirects(), 0u);

  // ASK: a slot being migrated from its owner to another node. A key the owner lacks is asked of
  // the importing node.
  const std::string key = "kvwise-ask-test";
  const int slot = redis_key_slot(key);
  test::RedisProcess* owner = nullptr;
  test::RedisProcess* importer = nullptr;
  // The owner answers GET of an absent key with MOVED from the others and nil itself.
  for (const auto& node : cluster.nodes) {
    const auto r = node->command({"GET", key});
    ASSERT_TRUE(r);
    if (!r->is_error())
      owner = node.get();
    else if (!importer)
      importer = node.get();
  }
  ASSERT_TRUE(owner && importer);
  const std::string owner_id = owner->command({"CLUSTER", "MYID"})->str;
  const std::string importer_id = importer->command({"CLUSTER", "MYID"})->str;
  ASSERT_FALSE(importer->command({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", owner_id})->is_error());
  ASSERT_FALSE(owner->command({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", importer_id})->is_error());
  RedisClient fresh(parse_redis_cluster_nodes(cluster.seeds()));
  const auto set = fresh.run(RedisCommand{{"SET", key, "asked"}, 1}, Clock::now() + std::chrono::seconds(5));
  ASSERT_TRUE(set);
  EXPECT_FALSE(set->is_error()) << set->str;
  const auto got = fresh.run(RedisCommand{{"GET", key}, 1}, Clock::now() + std::chrono::seconds(5));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->str, "asked");
  EXPECT_GE(fresh.redirects(), 2u) << "both went through ASK";
  EXPECT_EQ(importer->command({"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)})->integer, 1);
  EXPECT_EQ(owner->command({"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)})->integer, 0);
}

}  // namespace
}  // namespace kvwise
