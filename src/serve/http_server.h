// The OpenAI-compatible HTTP front end (cpp-httplib): /v1/completions and /v1/chat/completions with
// server-sent-event streaming, /v1/models, /health and Prometheus /metrics. Requests go to the
// continuous-batching scheduler; a client that disconnects mid-stream cancels its request. Bad input
// gets an OpenAI-style error body with a 4xx status (503 when the queue is full); a failure inside the
// engine is a 500 and a log line; the server keeps serving everyone else. Requests never name files
// (docs/security.md). Thread-safe: handlers run on httplib's worker threads.
#pragma once
#include <memory>
#include <string>

#include "compress/pipeline.h"
#include "compress/registry.h"
#include "serve/scheduler.h"

namespace kvwise {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  std::string model_name;
  std::string api_key;              // empty: no authentication
  size_t max_body_bytes = 1 << 20;  // every body, chunked or not (413 above)
  int http_threads = 64;
  double request_deadline = 30;  // seconds for a request's headers and body to arrive (slow clients)
  // A non-streaming request still running after heartbeat_after seconds is answered in chunks, with a
  // space every heartbeat_every seconds, so that a client that hangs up is noticed (and cancelled).
  double heartbeat_after = 1.0, heartbeat_every = 0.5;
  std::shared_ptr<const KvPolicy> default_policy;  // when a request names none
  // What a request's kv_policy may refer to: gates and profiles by name, the SpeCache cold directory.
  // Always untrusted: requests never name files.
  PolicySource policy_files{false, {}, {}, {}};
};

class HttpServer {
 public:
  HttpServer(Engine& engine, Scheduler& scheduler, const ServerOptions& options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int bind();    // binds (throws kvwise::Error on failure, e.g. a port in use) and returns the port
  void serve();  // blocks until stop()
  // Ends the server: responses in flight end first (a stream with an error event and [DONE], a whole
  // response with a 503), then the listener closes. Callable from any thread.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvwise
