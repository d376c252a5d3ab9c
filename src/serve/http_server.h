// The OpenAI-compatible HTTP front end (cpp-httplib): /v1/completions and /v1/chat/completions with
// server-sent-event streaming, /v1/models, /health and Prometheus /metrics. Requests go to the
// continuous-batching scheduler; a client that disconnects mid-stream cancels its request. Bad input
// gets an OpenAI-style error body with a 4xx status (503 when the queue is full); the server keeps
// serving everyone else.
#pragma once
#include <memory>
#include <string>

#include "compress/pipeline.h"
#include "serve/scheduler.h"

namespace kvwise {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  std::string model_name;
  std::string api_key;  // empty: no authentication
  size_t max_body_bytes = 1 << 20;
  int http_threads = 64;
  // A non-streaming request still running after heartbeat_after seconds is answered in chunks, with a
  // space every heartbeat_every seconds, so that a client that hangs up is noticed (and cancelled).
  double heartbeat_after = 1.0, heartbeat_every = 0.5;
  std::shared_ptr<const KvPolicy> default_policy;  // when a request names none
};

class HttpServer {
 public:
  HttpServer(Engine& engine, Scheduler& scheduler, const ServerOptions& options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int bind();    // binds (throws kvwise::Error on failure) and returns the port
  void serve();  // blocks until stop()
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvwise
