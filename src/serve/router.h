// kvwise route: an OpenAI-compatible front for several kvwise servers that sends each request to
// the one its routing policy picks (prefix/routing.h: round-robin, least-load, prefix, cost). It
// tokenizes and hashes prompts exactly as the servers do (prompt_tokens.h, the same block size and
// cache salt), so "the longest cached prefix" means the blocks a server really holds. Where prefixes
// live comes from the servers' KV events on Redis pub/sub (kvwise serve publishes stored/evicted)
// or, without an events source, from the router's own record of where it sent which prompt.
//
// Backends are health-checked (GET /health); one that fails is skipped until it answers again (its
// prefixes are then forgotten: it may have restarted empty). A request that cannot reach a backend
// is retried on another before anything was sent; one that was in flight when its backend failed is
// answered 502 (a stream: an error event, then [DONE]) and counted, never dropped silently.
// Streams are passed through as they arrive. Thread-safety: bind/serve/stop as HttpServer; the
// handlers run on the HTTP threads and share the routing state under one mutex.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "prefix/routing.h"
#include "serve/redis_client.h"

namespace kvwise {

struct RouterOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                    // 0: any free port
  std::vector<std::string> backends;  // http://HOST:PORT of each kvwise serve
  std::string routing = "prefix";
  prefix::RoutingOptions routing_options;
  int block_tokens = 32;               // must match the servers' --block-tokens
  std::optional<RedisOptions> events;  // KV events source; none: the router's own record
  std::string events_channel = "kvwise-kv-events";
  double health_interval = 1.0;  // seconds between health checks
  double backend_timeout = 600;  // seconds a backend may take to answer
  size_t max_body_bytes = 1 << 20;
  double request_deadline = 30;  // seconds for a client to send a request
  int http_threads = 64;
  size_t locator_capacity = 1 << 20;  // block keys remembered
};

class Router {
 public:
  // vocab: the model (or a vocab-only GGUF) the backends serve, for tokenizing.
  Router(const GgufFile& vocab, const RouterOptions& options);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  int bind();    // throws kvwise::Error on failure; returns the port
  void serve();  // blocks until stop()
  void stop();
  const char* prefix_source() const;  // "events" or "record"

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvwise
