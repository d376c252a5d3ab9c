#include "serve/router.h"

#include <fmt/format.h>
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.h"
#include "prefix/block_hash.h"
#include "serve/http_connection.h"
#include "serve/prompt_tokens.h"

namespace kvwise {

using json = nlohmann::json;

namespace {

struct Backend {
  std::string url, host;
  int port = 0;
  bool healthy = true;
  int in_flight = 0;
  double active_blocks = 0;
  uint64_t requests = 0, failures = 0, overlap_blocks = 0;
};

Backend parse_backend(const std::string& url_in) {
  std::string url = url_in;
  while (!url.empty() && url.back() == '/') url.pop_back();
  constexpr std::string_view scheme = "http://";
  KV_CHECK(url.compare(0, scheme.size(), scheme) == 0, "--backend '{}': expected http://HOST:PORT", url_in);
  const std::string rest = url.substr(scheme.size());
  const size_t colon = rest.rfind(':');
  KV_CHECK(colon != std::string::npos && colon > 0, "--backend '{}': expected http://HOST:PORT", url_in);
  Backend b;
  b.url = url;
  b.host = rest.substr(0, colon);
  char* end = nullptr;
  const long port = std::strtol(rest.c_str() + colon + 1, &end, 10);
  KV_CHECK(*end == '\0' && port > 0 && port < 65536, "--backend '{}': '{}' is not a port", url_in,
           rest.substr(colon + 1));
  b.port = static_cast<int>(port);
  return b;
}

void send_error(httplib::Response& res, int status, const std::string& message, const char* type) {
  res.status = status;
  res.set_content(json{{"error", {{"message", message}, {"type", type}, {"code", status}}}}.dump(), "application/json");
}

// One streamed answer being relayed: the backend's thread fills it, the client's provider drains it.
struct Relay {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> chunks;
  bool have_headers = false, done = false, ok = false, cancelled = false;
  int status = 0;
  std::string content_type;
  httplib::Error error = httplib::Error::Success;
  std::thread worker;
};

}  // namespace

struct Router::Impl {
  RouterOptions opt;
  std::unique_ptr<Tokenizer> tok;
  ChatFormat chat_format = ChatFormat::Plain;
  int64_t n_vocab = 0;
  GuardedHttpServer srv;

  std::mutex mu;  // everything below
  std::vector<Backend> backends;
  std::unique_ptr<prefix::RoutingPolicy> policy;
  prefix::PrefixLocator locator;
  uint64_t no_backend = 0, events = 0, unknown_events = 0, prompt_blocks = 0, unparsed = 0;

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::thread health, subscriber;

  Impl(const GgufFile& vocab, const RouterOptions& o) : opt(o), srv(o.request_deadline), locator(o.locator_capacity) {
    KV_CHECK(!opt.backends.empty(), "kvwise route needs at least one --backend");
    KV_CHECK(opt.backends.size() <= 64, "kvwise route takes at most 64 backends");
    KV_CHECK(opt.block_tokens > 0, "--block-tokens must be positive");
    for (const auto& u : opt.backends) backends.push_back(parse_backend(u));
    policy = prefix::make_routing_policy(opt.routing, opt.routing_options);
    tok = Tokenizer::from_gguf(vocab);
    n_vocab = tok->n_vocab();
    chat_format = detect_chat_format(vocab.get_string("tokenizer.chat_template").value_or(""));
  }

  const char* source() const { return opt.events ? "events" : "record"; }

  int backend_of(const std::string& instance) const {
    std::string u = instance;
    while (!u.empty() && u.back() == '/') u.pop_back();
    for (size_t i = 0; i < backends.size(); ++i)
      if (backends[i].url == u) return static_cast<int>(i);
    return -1;
  }

  // The request's prompt blocks, computed as the servers do; empty when the body does not parse
  // (the backend then answers it with its own 400).
  struct Shape {
    std::vector<prefix::BlockKey> keys;
    double decode_blocks = 0;
    bool stream = false;
  };
  Shape shape(const std::string& body, bool chat) {
    Shape s;
    try {
      RequestFields f = parse_request_fields(body, chat, RequestLimits{n_vocab, 1 << 30}, 0);
      s.stream = f.stream;
      s.decode_blocks = static_cast<double>(f.max_tokens) / opt.block_tokens;
      const std::vector<int32_t> prompt = prompt_tokens(*tok, chat_format, f, chat);
      s.keys = prefix::block_keys(prompt, opt.block_tokens, prefix::salt_of(f.cache_salt));
    } catch (const HttpError&) {
      std::lock_guard<std::mutex> lk(mu);
      ++unparsed;
    } catch (const Error&) {
      std::lock_guard<std::mutex> lk(mu);
      ++unparsed;
    }
    return s;
  }

  // Picks a backend (not one in `exclude`) and counts the request on it; -1 when none is healthy.
  int pick(const Shape& s, const std::vector<bool>& exclude) {
    std::lock_guard<std::mutex> lk(mu);
    std::vector<prefix::InstanceView> view(backends.size());
    for (size_t i = 0; i < backends.size(); ++i) {
      view[i].healthy = backends[i].healthy && !exclude[i];
      view[i].in_flight = backends[i].in_flight;
      view[i].active_blocks = backends[i].active_blocks;
      view[i].overlap_blocks = locator.overlap(s.keys, static_cast<int>(i));
    }
    const int b = policy->choose(view, static_cast<int>(s.keys.size()), s.decode_blocks);
    if (b < 0) {
      ++no_backend;
      return -1;
    }
    Backend& be = backends[static_cast<size_t>(b)];
    ++be.in_flight;
    ++be.requests;
    be.active_blocks += static_cast<double>(s.keys.size()) + s.decode_blocks;
    be.overlap_blocks += static_cast<uint64_t>(view[static_cast<size_t>(b)].overlap_blocks);
    prompt_blocks += s.keys.size();
    if (!opt.events)  // the router's own record: the backend will hold what it was sent
      for (const auto k : s.keys) locator.stored(k, b);
    return b;
  }

  void finished(int b, const Shape& s, bool failed, bool unreachable) {
    std::lock_guard<std::mutex> lk(mu);
    Backend& be = backends[static_cast<size_t>(b)];
    --be.in_flight;
    be.active_blocks = std::max(0.0, be.active_blocks - static_cast<double>(s.keys.size()) - s.decode_blocks);
    if (failed) {
      ++be.failures;
      be.healthy = false;  // until a health check says otherwise
    }
    if (unreachable && !opt.events)
      for (const auto k : s.keys) locator.evicted(k, b);
  }

  httplib::Headers forward_headers(const httplib::Request& req) const {
    httplib::Headers h;
    if (req.has_header("Authorization")) h.emplace("Authorization", req.get_header_value("Authorization"));
    return h;
  }

  void handle(const httplib::Request& req, httplib::Response& res, bool chat) {
    GuardedHttpServer::request_read();
    const Shape s = shape(req.body, chat);
    std::vector<bool> exclude(backends.size(), false);
    for (size_t attempt = 0; attempt < backends.size(); ++attempt) {
      const int b = pick(s, exclude);
      if (b < 0) break;
      const Backend be = [&] {
        std::lock_guard<std::mutex> lk(mu);
        return backends[static_cast<size_t>(b)];
      }();
      if (s.stream) {
        if (relay_stream(req, res, b, be, s)) return;
      } else {
        httplib::Client cli(be.host, be.port);
        cli.set_connection_timeout(2, 0);
        cli.set_read_timeout(static_cast<time_t>(opt.backend_timeout), 0);
        auto r = cli.Post(req.path.c_str(), forward_headers(req), req.body, "application/json");
        if (r) {
          finished(b, s, false, false);
          res.status = r->status;
          res.set_content(r->body, r->get_header_value("Content-Type").empty()
                                       ? "application/json"
                                       : r->get_header_value("Content-Type").c_str());
          return;
        }
        const bool unreachable = r.error() == httplib::Error::Connection;
        finished(b, s, true, unreachable);
        if (!unreachable) {  // it may have run the request: answering twice would be worse
          send_error(res, 502, fmt::format("backend {} failed mid-request ({})", be.url, httplib::to_string(r.error())),
                     "backend_error");
          return;
        }
      }
      exclude[static_cast<size_t>(b)] = true;  // nothing was sent: try another
    }
    send_error(res, 503, "no healthy backend", "server_busy");
  }

  // Streams the backend's answer through. False when the backend could not be reached (retry).
  bool relay_stream(const httplib::Request& req, httplib::Response& res, int b, const Backend& be, const Shape& s) {
    auto relay = std::make_shared<Relay>();
    const httplib::Headers headers = forward_headers(req);
    relay->worker = std::thread([relay, be, headers, path = req.path, body = req.body, timeout = opt.backend_timeout] {
      httplib::Client cli(be.host, be.port);
      cli.set_connection_timeout(2, 0);
      cli.set_read_timeout(static_cast<time_t>(timeout), 0);
      httplib::Request r;
      r.method = "POST";
      r.path = path;
      r.headers = headers;
      r.body = body;
      r.set_header("Content-Type", "application/json");
      r.response_handler = [&](const httplib::Response& head) {
        std::lock_guard<std::mutex> lk(relay->mu);
        relay->status = head.status;
        relay->content_type = head.get_header_value("Content-Type");
        relay->have_headers = true;
        relay->cv.notify_all();
        return true;
      };
      r.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
        std::lock_guard<std::mutex> lk(relay->mu);
        relay->chunks.emplace_back(data, n);
        relay->cv.notify_all();
        return !relay->cancelled;
      };
      httplib::Response resp;
      httplib::Error err = httplib::Error::Success;
      const bool ok = cli.send(r, resp, err);
      std::lock_guard<std::mutex> lk(relay->mu);
      relay->ok = ok;
      relay->error = err;
      relay->done = true;
      relay->cv.notify_all();
    });
    {
      std::unique_lock<std::mutex> lk(relay->mu);
      relay->cv.wait(lk, [&] { return relay->have_headers || relay->done; });
    }
    if (!relay->have_headers) {
      relay->worker.join();
      const bool unreachable = relay->error == httplib::Error::Connection;
      finished(b, s, true, unreachable);
      if (unreachable) return false;
      send_error(res, 502,
                 fmt::format("backend {} failed before answering ({})", be.url, httplib::to_string(relay->error)),
                 "backend_error");
      return true;
    }
    res.status = relay->status;
    const std::string type = relay->content_type.empty() ? "text/event-stream" : relay->content_type;
    res.set_chunked_content_provider(
        type,
        [relay](size_t, httplib::DataSink& sink) {
          std::unique_lock<std::mutex> lk(relay->mu);
          relay->cv.wait(lk, [&] { return !relay->chunks.empty() || relay->done; });
          while (!relay->chunks.empty()) {
            std::string c = std::move(relay->chunks.front());
            relay->chunks.pop_front();
            lk.unlock();
            const bool wrote = sink.write(c.data(), c.size());
            lk.lock();
            if (!wrote) {
              relay->cancelled = true;  // the client left: stop reading the backend
              return false;
            }
          }
          if (relay->done) {
            if (!relay->ok) {  // the backend died mid-stream: say so in the stream, then end it
              const std::string e =
                  "data: " +
                  json{{"error",
                        {{"message", "the backend failed mid-stream"}, {"type", "backend_error"}, {"code", 502}}}}
                      .dump() +
                  "\n\ndata: [DONE]\n\n";
              lk.unlock();
              sink.write(e.data(), e.size());
            }
            sink.done();
          }
          return true;
        },
        [this, relay, b, s](bool) {
          relay->worker.join();
          finished(b, s, !relay->ok, false);
        });
    return true;
  }

  void check_health() {
    std::vector<Backend> snapshot;
    {
      std::lock_guard<std::mutex> lk(mu);
      snapshot = backends;
    }
    for (size_t i = 0; i < snapshot.size(); ++i) {
      httplib::Client cli(snapshot[i].host, snapshot[i].port);
      cli.set_connection_timeout(1, 0);
      cli.set_read_timeout(2, 0);
      auto r = cli.Get("/health");
      const bool up = r && r->status == 200;
      std::lock_guard<std::mutex> lk(mu);
      Backend& be = backends[i];
      if (up && !be.healthy) locator.forget_instance(static_cast<int>(i));  // it may have restarted empty
      be.healthy = up;
    }
  }

  void health_loop() {
    for (;;) {
      check_health();
      std::unique_lock<std::mutex> lk(stop_mu);
      if (stop_cv.wait_for(lk, std::chrono::duration<double>(opt.health_interval), [&] { return stopping; })) return;
    }
  }

  void subscribe_loop() {
    RedisSubscriber sub(*opt.events, opt.events_channel);
    std::vector<std::string> messages;
    for (;;) {
      {
        std::lock_guard<std::mutex> lk(stop_mu);
        if (stopping) return;
      }
      messages.clear();
      sub.poll(&messages, 0.2);
      if (messages.empty()) continue;
      std::lock_guard<std::mutex> lk(mu);
      for (const std::string& m : messages) {
        // "<stored|evicted> <instance url> <chain key hex>"
        const size_t a = m.find(' '), z = m.rfind(' ');
        if (a == std::string::npos || z == a) {
          ++unknown_events;
          continue;
        }
        const int b = backend_of(m.substr(a + 1, z - a - 1));
        const prefix::BlockKey key = std::strtoull(m.c_str() + z + 1, nullptr, 16);
        if (b < 0) {
          ++unknown_events;
          continue;
        }
        ++events;
        if (m.compare(0, a, "stored") == 0)
          locator.stored(key, b);
        else if (m.compare(0, a, "evicted") == 0)
          locator.evicted(key, b);
        else
          ++unknown_events;
      }
    }
  }

  std::string metrics() {
    std::lock_guard<std::mutex> lk(mu);
    std::string m;
    const auto family = [&](const char* name, const char* help, const char* type, auto value) {
      m += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
      for (const auto& be : backends) m += fmt::format("{}{{backend=\"{}\"}} {}\n", name, be.url, value(be));
    };
    const auto one = [&](const char* name, const char* help, const char* type, double v) {
      m += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
    };
    family("kvwise_router_requests_total", "Requests sent to the backend", "counter",
           [](const Backend& b) { return static_cast<double>(b.requests); });
    family("kvwise_router_failures_total", "Requests the backend failed (unreachable or mid-request)", "counter",
           [](const Backend& b) { return static_cast<double>(b.failures); });
    family("kvwise_router_backend_healthy", "1 while the backend answers its health check", "gauge",
           [](const Backend& b) { return b.healthy ? 1.0 : 0.0; });
    family("kvwise_router_in_flight", "Requests sent and not yet answered", "gauge",
           [](const Backend& b) { return static_cast<double>(b.in_flight); });
    family("kvwise_router_overlap_blocks_total", "Prompt blocks the backend held when it was picked", "counter",
           [](const Backend& b) { return static_cast<double>(b.overlap_blocks); });
    one("kvwise_router_prompt_blocks_total", "Full prompt blocks routed", "counter",
        static_cast<double>(prompt_blocks));
    one("kvwise_router_no_backend_total", "Requests answered 503: no healthy backend", "counter",
        static_cast<double>(no_backend));
    one("kvwise_router_unparsed_total", "Requests routed without a prefix (the backend answered their 400)", "counter",
        static_cast<double>(unparsed));
    one("kvwise_router_kv_events_total", "KV events applied", "counter", static_cast<double>(events));
    one("kvwise_router_kv_events_ignored_total", "KV events of unknown backends or malformed", "counter",
        static_cast<double>(unknown_events));
    one("kvwise_router_locator_keys", "Block keys whose location the router knows", "gauge",
        static_cast<double>(locator.size()));
    m += fmt::format(
        "# HELP kvwise_router_info Routing policy and where prefix locations come from\n# TYPE kvwise_router_info "
        "gauge\nkvwise_router_info{{routing=\"{}\",prefix_source=\"{}\"}} 1\n",
        policy->name(), source());
    return m;
  }

  void routes() {
    srv.new_task_queue = [n = opt.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
    srv.set_payload_max_length(opt.max_body_bytes);
    srv.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) { handle(q, r, false); });
    srv.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) { handle(q, r, true); });
    srv.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      int up = 0;
      {
        std::lock_guard<std::mutex> lk(mu);
        for (const auto& b : backends) up += b.healthy;
      }
      res.status = up > 0 ? 200 : 503;
      res.set_content(json{{"status", up > 0 ? "ok" : "no healthy backend"}, {"backends_healthy", up}}.dump(),
                      "application/json");
    });
    srv.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics(), "text/plain; version=0.0.4");
    });
    srv.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      std::vector<Backend> snapshot;
      {
        std::lock_guard<std::mutex> lk(mu);
        snapshot = backends;
      }
      for (const auto& be : snapshot) {
        if (!be.healthy) continue;
        httplib::Client cli(be.host, be.port);
        cli.set_connection_timeout(2, 0);
        if (auto r = cli.Get("/v1/models", forward_headers(req))) {
          res.status = r->status;
          res.set_content(r->body, "application/json");
          return;
        }
      }
      send_error(res, 503, "no healthy backend", "server_busy");
    });
  }
};

Router::Router(const GgufFile& vocab, const RouterOptions& options) : impl_(std::make_unique<Impl>(vocab, options)) {
  impl_->routes();
}

Router::~Router() {
  stop();
  if (impl_->health.joinable()) impl_->health.join();
  if (impl_->subscriber.joinable()) impl_->subscriber.join();
}

const char* Router::prefix_source() const {
  return impl_->source();
}

int Router::bind() {
  return impl_->srv.bind_listener(impl_->opt.host, impl_->opt.port);
}

void Router::serve() {
  Impl& i = *impl_;
  i.check_health();  // the first picture before the first request
  i.health = std::thread([&i] { i.health_loop(); });
  if (i.opt.events) i.subscriber = std::thread([&i] { i.subscribe_loop(); });
  i.srv.listen_after_bind();
}

void Router::stop() {
  {
    std::lock_guard<std::mutex> lk(impl_->stop_mu);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  impl_->srv.stop();
}

}  // namespace kvwise
