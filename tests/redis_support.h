// Real Redis servers for tests: each on a free loopback port, with its files in the test's own
// temporary directory, never a system service; stopped (SIGKILL) when the object goes. A 3-node
// Redis Cluster is made with redis-cli --cluster create. Tests that need them skip when
// redis-server is not installed, except under CI=true, where that is a failure.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "serve/redis_client.h"

namespace kvwise::test {

bool have_redis();
#define KVWISE_REQUIRE_REDIS()                                                             \
  do {                                                                                     \
    if (!::kvwise::test::have_redis()) {                                                   \
      if (std::getenv("CI")) FAIL() << "redis-server is not installed (scripts/setup.sh)"; \
      GTEST_SKIP() << "redis-server is not installed";                                     \
    }                                                                                      \
  } while (0)

int free_loopback_port();

class RedisProcess {
 public:
  // extra: more redis-server arguments, e.g. "--maxmemory 1mb --maxmemory-policy allkeys-lru".
  explicit RedisProcess(std::string extra = "", int port = 0);
  ~RedisProcess();
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  bool start();  // (re)starts on the same port, empty; true once it answers PING
  void kill();   // SIGKILL: as a crash
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // One command on this node (a fresh connection, 5 s deadline); nullopt when it does not answer.
  std::optional<RedisReply> command(const std::vector<std::string>& argv) const;

 private:
  std::string extra_, dir_;
  int port_ = 0, pid_ = -1;
};

// Three masters sharing the 16384 slots.
class RedisCluster {
 public:
  RedisCluster();
  bool ok() const { return ok_; }
  std::string seeds() const;  // HOST:PORT,HOST:PORT,HOST:PORT
  std::vector<std::unique_ptr<RedisProcess>> nodes;

 private:
  bool ok_ = false;
};

}  // namespace kvwise::test
