// kvwise serve processes sharing a prefix tier on a real Redis started by the test: a prompt
// prefilled on one server is a hit on another, with the same greedy text as a server without any
// cache; Redis down at start, killed mid-run and restarted empty never changes an answer.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "redis_support.h"
#include "test_support.h"

namespace kvwise {
namespace {

using json = nlohmann::json;

struct Answer {
  int status = 0;
  std::string text;
  int cached = -1;
};

Answer complete(int port, const std::string& prompt) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  auto r = c.Post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}}.dump(),
                  "application/json");
  Answer a;
  if (!r) return a;
  a.status = r->status;
  if (r->status != 200) return a;
  const json j = json::parse(r->body);
  a.text = j["choices"][0]["text"].get<std::string>();
  a.cached = j["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
  return a;
}

double metric(int port, const std::string& name) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/metrics");
  if (!r) return -1;
  const size_t at = r->body.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(r->body.substr(at + name.size() + 2));
}

// Waits until the server's queued shared-tier writes have all been tried.
void wait_for_writes(int port, double at_least) {
  for (int i = 0; i < 200; ++i) {
    if (metric(port, "kvwise_prefix_tier_writes_total{tier=\"redis\"}") >= at_least &&
        metric(port, "kvwise_prefix_tier_queue_pending{tier=\"redis\"}") == 0)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}

std::string story(int i, size_t chars = 420) {
  std::string s = "Once upon a time " + std::to_string(i) + ", ";
  while (s.size() < chars) s += "a little girl named Lily went to the park with her mom and saw a big red ball. ";
  return s;
}

TEST(SharedTier, APrefixPrefilledOnOneServerIsAHitOnAnotherAndRedisFaultsChangeNoText) {
  KVWISE_REQUIRE_REDIS();
  test::RedisProcess redis;
  ASSERT_TRUE(redis.running());
  const std::string shared = "-t 1 --prefix-cache-redis " + redis.url();
  test::ServerProcess a = test::start_server(shared), b = test::start_server(shared),
                      plain = test::start_server("-t 1 --no-prefix-cache");
  ASSERT_GT(a.port, 0);
  ASSERT_GT(b.port, 0);
  ASSERT_GT(plain.port, 0);

  const Answer on_a = complete(a.port, story(1));
  ASSERT_EQ(on_a.status, 200);
  EXPECT_EQ(on_a.cached, 0);
  wait_for_writes(a.port, 1);
  const double written = metric(a.port, "kvwise_prefix_tier_writes_total{tier=\"redis\"}");
  EXPECT_GT(written, 0);
  const Answer on_b = complete(b.port, story(1));
  const Answer reference = complete(plain.port, story(1));
  ASSERT_EQ(on_b.status, 200);
  EXPECT_GT(on_b.cached, 0) << "B never computed this prompt: its prefix came from Redis";
  EXPECT_EQ(on_b.text, reference.text);
  EXPECT_EQ(on_a.text, reference.text);
  EXPECT_EQ(metric(b.port, "kvwise_prefix_shared_loaded_blocks_total"), written);
  EXPECT_EQ(metric(b.port, "kvwise_prefix_tier_hits_total{tier=\"redis\"}"), written);
  EXPECT_EQ(metric(b.port, "kvwise_prefix_shared_hits_total"), on_b.cached / 32);

  // Redis killed mid-run: every answer stays the cache-free one.
  redis.kill();
  for (int i = 2; i <= 3; ++i) {
    const Answer want = complete(plain.port, story(i));
    for (const auto* s : {&a, &b}) {
      const Answer got = complete(s->port, story(i));
      EXPECT_EQ(got.status, 200);
      EXPECT_EQ(got.text, want.text) << "server " << s->port << " prompt " << i;
    }
  }
  EXPECT_EQ(complete(b.port, story(1)).text, reference.text) << "its own memory still serves";
  EXPECT_GT(metric(b.port, "kvwise_prefix_tier_errors_total{tier=\"redis\"}") +
                metric(a.port, "kvwise_prefix_tier_write_errors_total{tier=\"redis\"}"),
            0);

  // Restarted empty: the servers reconnect after their backoff and share again.
  ASSERT_TRUE(redis.start());
  bool shared_again = false;
  for (int i = 10; i < 40 && !shared_again; ++i) {
    const Answer first = complete(a.port, story(i));
    EXPECT_EQ(first.status, 200);
    wait_for_writes(a.port, written + 1);
    const Answer second = complete(b.port, story(i));
    EXPECT_EQ(second.text, first.text);
    shared_again = second.cached > 0;
    if (!shared_again) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_TRUE(shared_again);
  EXPECT_EQ(metric(b.port, "kvwise_prefix_tier_healthy{tier=\"redis\"}"), 1);
  for (auto* s : {&a, &b, &plain}) EXPECT_EQ(test::stop_server(*s), 0);
}

TEST(SharedTier, ServersShareThroughARedisCluster) {
  KVWISE_REQUIRE_REDIS();
  test::RedisCluster cluster;
  ASSERT_TRUE(cluster.ok());
  const std::string shared = "-t 1 --prefix-cache-redis-cluster " + cluster.seeds();
  test::ServerProcess a = test::start_server(shared), b = test::start_server(shared);
  ASSERT_GT(a.port, 0);
  ASSERT_GT(b.port, 0);
  const Answer first = complete(a.port, story(7, 1500));  // a dozen blocks: spread over the slots
  wait_for_writes(a.port, 1);
  const Answer second = complete(b.port, story(7, 1500));
  EXPECT_EQ(second.text, first.text);
  EXPECT_GT(second.cached, 0);
  long keys = 0, nodes_used = 0;
  for (const auto& n : cluster.nodes) {
    const long k = n->command({"DBSIZE"})->integer;
    keys += k;
    nodes_used += k > 0;
  }
  EXPECT_EQ(static_cast<double>(keys), metric(a.port, "kvwise_prefix_tier_writes_total{tier=\"redis\"}"));
  EXPECT_GE(nodes_used, 2) << "blocks spread over the cluster's slots";
  EXPECT_EQ(test::stop_server(a), 0);
  EXPECT_EQ(test::stop_server(b), 0);
}

TEST(SharedTier, RedisDownAtStartIsOnlyMisses) {
  KVWISE_REQUIRE_REDIS();
  const int dead = test::free_loopback_port();
  test::ServerProcess s = test::start_server("-t 1 --prefix-cache-redis redis://127.0.0.1:" + std::to_string(dead));
  test::ServerProcess plain = test::start_server("-t 1 --no-prefix-cache");
  ASSERT_GT(s.port, 0) << "a dead Redis does not stop the start";
  for (int i = 0; i < 2; ++i) {
    const Answer got = complete(s.port, story(50)), want = complete(plain.port, story(50));
    ASSERT_EQ(got.status, 200);
    EXPECT_EQ(got.text, want.text);
    if (i == 1) {
      EXPECT_GT(got.cached, 0) << "memory still caches";
    }
  }
  EXPECT_EQ(metric(s.port, "kvwise_prefix_tier_healthy{tier=\"redis\"}"), 0);
  EXPECT_EQ(test::stop_server(s), 0);
  EXPECT_EQ(test::stop_server(plain), 0);
}

TEST(SharedTier, BadRedisAddressesAreErrorsAtStart) {
  const auto r = test::run_kvwise("serve --port 0 --prefix-cache-redis http://x:1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("redis://"), std::string::npos) << r.err;
  const auto c = test::run_kvwise("serve --port 0 --prefix-cache-redis-cluster ,");
  EXPECT_EQ(c.exit_code, 1);
  EXPECT_NE(c.err.find("HOST:PORT"), std::string::npos) << c.err;
  const auto both = test::run_kvwise("serve --port 0 --no-prefix-cache --prefix-cache-redis redis://x");
  EXPECT_EQ(both.exit_code, 2);
}

}  // namespace
}  // namespace kvwise
