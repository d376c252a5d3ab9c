// A small synchronous Redis client over hiredis for the shared prefix tier and its KV events: one
// node, or a Redis Cluster (keys routed to their slot's node by CRC16 as the cluster specification
// says, the slot map read with CLUSTER SLOTS, MOVED answered by re-reading it, ASK by ASKING on the
// named node). Every call has a deadline (a late answer is a failure, and the connection that timed
// out is dropped); a node that fails is retried after a backoff that doubles up to backoff_max, and
// calls to it fail fast meanwhile, so a dead Redis costs a request nothing but a miss.
// Thread-safety: none; use one client per thread.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct redisContext;

namespace kvwise {

struct RedisEndpoint {
  std::string host;
  int port = 6379;
  std::string address() const { return host + ":" + std::to_string(port); }
};

struct RedisOptions {
  std::vector<RedisEndpoint> nodes;  // one node, or the seeds of a cluster
  bool cluster = false;
  std::string password;           // AUTH when set
  int db = 0;                     // SELECT when set (single node only)
  double connect_timeout = 0.25;  // seconds
  double backoff_min = 0.1, backoff_max = 5.0;
};

// redis://[:PASSWORD@]HOST[:PORT][/DB]; throws kvwise::Error naming what is wrong.
RedisOptions parse_redis_url(const std::string& url);
// HOST:PORT,HOST:PORT,... (the seeds of a cluster).
RedisOptions parse_redis_cluster_nodes(const std::string& list);

// CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384.
int redis_key_slot(std::string_view key);

struct RedisReply {
  enum class Kind { nil, string, integer, status, array, error } kind = Kind::nil;
  std::string str;  // string, status, error
  long long integer = 0;
  std::vector<RedisReply> elements;
  bool is_error() const { return kind == Kind::error; }
};

struct RedisCommand {
  std::vector<std::string> argv;
  int key_arg = 1;  // the argument that routes the command in a cluster; -1: any node
};

class RedisClient {
 public:
  explicit RedisClient(RedisOptions options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  using Clock = std::chrono::steady_clock;
  // Runs the commands (pipelined per node) and returns one reply each; nullopt for a command whose
  // node could not be reached or did not answer before the deadline.
  std::vector<std::optional<RedisReply>> run(const std::vector<RedisCommand>& commands, Clock::time_point deadline);
  std::optional<RedisReply> run(const RedisCommand& command, Clock::time_point deadline);

  uint64_t reconnects() const { return reconnects_; }
  uint64_t redirects() const { return redirects_; }
  // True unless the last attempt on some node failed and its backoff has not passed.
  bool healthy() const;
  const RedisOptions& options() const { return opt_; }
  // Testing: forget the cluster's slot map and send every key to `address` (MOVED must repair it).
  void scramble_slot_map_for_test(const std::string& address);

 private:
  struct Node {
    redisContext* ctx = nullptr;
    RedisEndpoint ep;
    Clock::time_point retry_at{};
    double backoff = 0;
    bool ever_connected = false;
  };
  Node* node(const std::string& address);
  bool connect(Node& n, Clock::time_point deadline);
  void fail(Node& n);
  bool set_deadline(Node& n, Clock::time_point deadline);
  std::optional<RedisReply> run_on(Node& n, const RedisCommand& c, Clock::time_point deadline, bool asking);
  std::optional<RedisReply> run_redirected(const RedisCommand& c, RedisReply reply, Clock::time_point deadline);
  bool refresh_slots(Clock::time_point deadline);
  std::string address_of(const RedisCommand& c) const;

  RedisOptions opt_;
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::vector<std::string> slots_;  // cluster: slot -> node address (empty: unknown)
  bool slots_known_ = false;
  uint64_t reconnects_ = 0, redirects_ = 0;
};

// A subscription to one pub/sub channel (KV events). In a Redis Cluster a PUBLISH reaches every
// node, so one node's subscription sees all. Messages published while it was disconnected are lost
// (pub/sub has no history): the router's picture of the cluster heals as new events arrive.
// Thread-safety: none; one thread polls.
class RedisSubscriber {
 public:
  RedisSubscriber(RedisOptions options, std::string channel);
  ~RedisSubscriber();
  RedisSubscriber(const RedisSubscriber&) = delete;
  RedisSubscriber& operator=(const RedisSubscriber&) = delete;

  // Waits up to timeout_seconds for messages and appends their payloads; reconnects (with backoff)
  // when the connection is gone. False while not subscribed.
  bool poll(std::vector<std::string>* messages, double timeout_seconds);
  bool subscribed() const { return ctx_ != nullptr; }
  uint64_t connects() const { return connects_; }

 private:
  bool connect();
  void drop();
  RedisOptions opt_;
  std::string channel_;
  redisContext* ctx_ = nullptr;
  RedisClient::Clock::time_point retry_at_{};
  double backoff_ = 0;
  size_t next_node_ = 0;
  uint64_t connects_ = 0;
};

}  // namespace kvwise
