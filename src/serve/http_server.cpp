#include "serve/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.h"
#include "base/utf8.h"
#include "compress/pipeline.h"
#include "compress/registry.h"
#include "serve/chat_template.h"
#include "serve/http_connection.h"
#include "serve/prompt_tokens.h"
#include "serve/request_fields.h"

namespace kvwise {

namespace {

using json = nlohmann::json;

// What a client learns of a failure inside the server: the details (which may name the operator's
// files) go to the server's log only.
constexpr const char* kUnauthorized = "missing or wrong API key (Authorization: Bearer KEY)";
constexpr const char* kInternalError = "the request failed inside the server (its log has the details)";

// Everything the server writes is UTF-8: text that is not (a message echoing a client's bytes) has
// its bad bytes replaced rather than failing the response.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_body(int status, const std::string& message, const std::string& type) {
  return dump(json{{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", status}}}});
}

// Equal-length keys compared without an early exit, so the time taken does not tell how many leading
// bytes of a guess were right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type) {
  res.status = status;
  res.set_content(error_body(status, message, type), "application/json");
}

// Latency histogram in Prometheus form.
class Histogram {
 public:
  void observe(double v) {
    std::lock_guard<std::mutex> lk(mu_);
    for (size_t i = 0; i < kBounds.size(); ++i)
      if (v <= kBounds[i]) ++counts_[i];
    ++count_;
    sum_ += v;
  }
  std::string render(const std::string& name, const std::string& help) const {
    std::lock_guard<std::mutex> lk(mu_);
    std::string s = "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
    for (size_t i = 0; i < kBounds.size(); ++i)
      s += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[i], counts_[i]);
    s += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
    return s;
  }

 private:
  static constexpr std::array<double, 12> kBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  mutable std::mutex mu_;
  std::array<long, 12> counts_{};
  long count_ = 0;
  double sum_ = 0;
};

// Events of one request, from the scheduler thread to the HTTP thread.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> pieces;
  bool done = false;
  Completion result;
};

// What the response carries beyond the text.
struct ResponseShape {
  int logprobs = -1;  // >= 0: per-token logprobs with this many alternatives
  bool echo = false;  // completions: the prompt first (and its logprobs)
  bool return_tokens = false;
};

struct Parsed {
  ServeRequest req;
  bool stream = false;
  bool include_usage = false;
  ResponseShape shape;
};

}  // namespace

struct HttpServer::Impl {
  Engine& engine;
  Scheduler& sched;
  ServerOptions opt;
  GuardedHttpServer srv;
  ChatFormat chat_format;
  std::atomic<long> next_id{1};
  Histogram ttft, itl, e2e;
  std::atomic<long> http_errors{0};
  std::atomic<bool> draining{false};  // stop() was called: responses in flight end, new ones get 503
  std::atomic<int> in_flight{0};      // chunked responses not yet released
  std::mutex run_mu;                  // orders serve() against stop()
  bool stop_requested = false;
  std::atomic<bool> serving{false};

  Impl(Engine& e, Scheduler& s, const ServerOptions& o) : engine(e), sched(s), opt(o), srv(o.request_deadline) {
    chat_format = detect_chat_format(engine.model().file().get_string("tokenizer.chat_template").value_or(""));
    if (opt.model_name.empty()) opt.model_name = engine.model().file().get_string("general.name").value_or("kvwise");
  }

  bool authorized(const httplib::Request& req) const {
    return opt.api_key.empty() || same_secret(req.get_header_value("Authorization"), "Bearer " + opt.api_key);
  }

  // A checked body made into a scheduler request: tokenized, its policy built from the untrusted spec.
  Parsed build(RequestFields f, bool chat) {
    Parsed p;
    ServeRequest& r = p.req;
    r.max_tokens = f.max_tokens;
    r.ignore_eos = f.ignore_eos;
    r.logprobs = f.logprobs;
    r.prompt_logprobs = f.echo && f.logprobs >= 0;
    p.shape = {f.logprobs, f.echo, f.return_tokens};
    r.sampling = f.sampling;
    r.stop = std::move(f.stop);
    r.kv_category = std::move(f.kv_category);
    r.cache_salt = std::move(f.cache_salt);
    p.stream = f.stream;
    p.include_usage = f.include_usage;
    if (!f.kv_policy.empty()) {
      r.policy =
          make_policy(f.kv_policy, f.kv_budget.empty() ? Budget{} : Budget::parse(f.kv_budget), opt.policy_files);
      // Policies that keep every token (uniform quantisation, SpeCache) or decide by themselves (the
      // gate) need no budget: the policy says so.
      if (r.policy->needs_budget() && f.kv_budget.empty())
        throw HttpError{400, "kv_policy needs kv_budget (a ratio like 0.25 or tokens like 256)",
                        "invalid_request_error"};
      // A gate that cannot load is the request's fault: say so now, not as a 500 from the scheduler.
      // The message does not say where the server looked: file names are the operator's business.
      if (r.policy->gate) try {
          GateModel::load_cached(gate_file(*r.policy, engine.model().file().path()), engine.model().config());
        } catch (const Error&) {
          throw HttpError{400, "this server has no gate for its model (the operator registers gates with --gate)",
                          "invalid_request_error"};
        }
    } else {
      r.policy = opt.default_policy;
    }
    r.prompt = prompt_tokens(engine.model().tokenizer(), chat_format, f, chat);
    return p;
  }

  json usage(const Completion& c) const {
    const long n = static_cast<long>(c.tokens.size());
    return {{"prompt_tokens", c.prompt_tokens},
            {"completion_tokens", n},
            {"total_tokens", c.prompt_tokens + n},
            {"prompt_tokens_details", {{"cached_tokens", c.cached_tokens}}}};
  }

  void observe(const Completion& c) {
    if (c.finish_reason == "error" || c.finish_reason == "cancelled") return;
    if (c.ttft_seconds > 0) ttft.observe(c.ttft_seconds);
    e2e.observe(c.seconds);
    if (c.tokens.size() > 1) itl.observe((c.seconds - c.ttft_seconds) / static_cast<double>(c.tokens.size() - 1));
  }

  // The body, read under --max-body whatever its framing: httplib 0.11 enforces the limit only for a
  // Content-Length, so a chunked body is counted here and cut off at the limit.
  std::string read_body(const httplib::Request& req, const httplib::ContentReader& reader) {
    const auto count = [&](const char* name) {
      size_t n = 0;
      for (auto [it, end] = req.headers.equal_range(name); it != end; ++it) ++n;
      return n;
    };
    // Two lengths, or a length and chunked framing, are how requests are smuggled past proxies.
    if (count("Content-Length") > 1)
      throw HttpError{400, "more than one Content-Length header", "invalid_request_error"};
    if (count("Content-Length") > 0 && req.has_header("Transfer-Encoding"))
      throw HttpError{400, "both Content-Length and Transfer-Encoding", "invalid_request_error"};
    std::string body;
    bool too_large = false;
    const bool ok = reader([&](const char* data, size_t n) {
      if (body.size() + n > opt.max_body_bytes) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    if (too_large ||
        (!ok && std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10) > opt.max_body_bytes))
      throw HttpError{413, fmt::format("the request body is too large (more than {} bytes)", opt.max_body_bytes),
                      "invalid_request_error"};
    if (!ok) throw HttpError{400, "the request body could not be read", "invalid_request_error"};
    GuardedHttpServer::request_read();
    return body;
  }

  void handle(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader, bool chat) {
    bool body_read = false;
    try {
      if (!authorized(req)) throw HttpError{401, kUnauthorized, "authentication_error"};
      if (draining) throw HttpError{503, "the server is shutting down", "server_busy"};
      const std::string text = read_body(req, reader);
      body_read = true;
      const RequestLimits limits{engine.model().config().n_vocab, engine.ctx()};
      Parsed p = build(parse_request_fields(text, chat, limits, static_cast<uint64_t>(next_id.load())), chat);
      run(p, res, chat);
    } catch (const HttpError& e) {
      if (!body_read) {  // the rest of the body is not read: the connection cannot carry another request
        res.set_header("Connection", "close");
        GuardedHttpServer::close_after_response();
      }
      send_error(res, e.status, e.message, e.type);
    } catch (const QueueFull& e) {
      send_error(res, 503, e.what(), "server_busy");
    } catch (const Error& e) {
      send_error(res, 400, e.what(), "invalid_request_error");
    } catch (const std::exception& e) {
      // Not the client's doing: an internal failure is a 500 and a line in the server's log.
      std::fprintf(stderr, "kvwise serve: internal error: %s\n", e.what());
      send_error(res, 500, kInternalError, "server_error");
    }
  }

  // A chunked response's release callback: a response that did not complete cancels its request.
  std::function<void(bool)> cancel_if_unfinished(const std::shared_ptr<Channel>& ch, uint64_t sid) {
    ++in_flight;
    return [this, ch, sid](bool success) {
      {
        std::lock_guard<std::mutex> lk(ch->mu);
        if (!success && !ch->done) sched.cancel(sid);
      }
      --in_flight;
    };
  }

  // OpenAI's legacy completions logprobs: parallel lists of token strings, logprobs, alternatives
  // (a token string -> logprob object per token) and text offsets; the prompt's first token has null.
  json completion_logprobs(const Completion& c, const ResponseShape& shape) const {
    const Tokenizer& tok = engine.model().tokenizer();
    json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
    size_t offset = 0;
    const auto add = [&](const TokenLogprob& t) {
      const std::string piece = utf8_sanitize(tok.token_to_piece(t.token));
      tokens.push_back(piece);
      offsets.push_back(offset);
      offset += piece.size();
      if (!t.has_logprob) {
        lps.push_back(nullptr);
        tops.push_back(nullptr);
        return;
      }
      lps.push_back(t.logprob);
      json top = json::object();
      for (const auto& [id, lp] : t.top) top[utf8_sanitize(tok.token_to_piece(id))] = lp;
      tops.push_back(std::move(top));
    };
    if (shape.echo)
      for (const TokenLogprob& t : c.prompt_logprobs) add(t);
    for (const TokenLogprob& t : c.logprobs) add(t);
    return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
  }

  // The chat format: per generated token its text, logprob, UTF-8 bytes and alternatives.
  json chat_logprobs(const Completion& c) const {
    const Tokenizer& tok = engine.model().tokenizer();
    const auto entry = [&](int32_t id, float lp) {
      const std::string piece = tok.token_to_piece(id);
      json bytes = json::array();
      for (const char ch : piece) bytes.push_back(static_cast<unsigned char>(ch));
      return json{{"token", utf8_sanitize(piece)}, {"logprob", lp}, {"bytes", bytes}};
    };
    json content = json::array();
    for (const TokenLogprob& t : c.logprobs) {
      json e = entry(t.token, t.logprob);
      e["top_logprobs"] = json::array();
      for (const auto& [id, lp] : t.top) e["top_logprobs"].push_back(entry(id, lp));
      content.push_back(std::move(e));
    }
    return {{"content", content}};
  }

  json completion_body(const Completion& c, const std::string& id, long created, bool chat,
                       const ResponseShape& shape) const {
    json choice = {{"index", 0}, {"finish_reason", c.finish_reason}, {"logprobs", nullptr}};
    if (chat)
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else
      choice["text"] = shape.echo ? utf8_sanitize(engine.model().tokenizer().decode(c.prompt)) + c.text : c.text;
    if (shape.logprobs >= 0) choice["logprobs"] = chat ? chat_logprobs(c) : completion_logprobs(c, shape);
    if (shape.return_tokens) choice["tokens"] = c.tokens;
    return json{{"id", id},
                {"object", chat ? "chat.completion" : "text_completion"},
                {"created", created},
                {"model", opt.model_name},
                {"choices", json::array({choice})},
                {"usage", usage(c)}};
  }

  // A non-streaming answer. Quick requests get a plain response (any status). A request still running
  // after opt.heartbeat_after is answered in chunks: a space (JSON allows leading white space) every
  // opt.heartbeat_every until the body, so a client that went away is noticed at a failed write and
  // its sequence freed. (cpp-httplib 0.11 has no other way to see a closed connection.)
  void respond_whole(const std::shared_ptr<Channel>& ch, uint64_t sid, httplib::Response& res, const std::string& id,
                     long created, bool chat, const ResponseShape& shape) {
    {
      std::unique_lock<std::mutex> lk(ch->mu);
      if (ch->cv.wait_for(lk, std::chrono::duration<double>(opt.heartbeat_after), [&] { return ch->done; })) {
        const Completion& c = ch->result;
        if (c.finish_reason == "error") return send_error(res, 500, kInternalError, "server_error");
        res.set_content(dump(completion_body(c, id, created, chat, shape)), "application/json");
        return;
      }
    }
    res.set_chunked_content_provider(
        "application/json",
        [this, ch, sid, id, created, chat, shape](size_t, httplib::DataSink& sink) {
          Completion c;
          {
            std::unique_lock<std::mutex> lk(ch->mu);
            if (!ch->cv.wait_for(lk, std::chrono::duration<double>(opt.heartbeat_every), [&] { return ch->done; })) {
              lk.unlock();
              if (draining) {  // the server is stopping: end with an error rather than a cut connection
                sched.cancel(sid);
                const std::string body = error_body(503, "the server is shutting down", "server_shutdown");
                sink.write(body.data(), body.size());
                sink.done();
                return true;
              }
              if (sink.write(" ", 1)) return true;
              sched.cancel(sid);
              return false;
            }
            c = ch->result;
          }
          const std::string body = c.finish_reason == "error" ? error_body(500, kInternalError, "server_error")
                                                              : dump(completion_body(c, id, created, chat, shape));
          sink.write(body.data(), body.size());
          sink.done();
          return true;
        },
        cancel_if_unfinished(ch, sid));
  }

  void run(Parsed& p, httplib::Response& res, bool chat) {
    auto ch = std::make_shared<Channel>();
    p.req.on_token = [ch](int32_t, const std::string& piece) {
      if (piece.empty()) return;
      std::lock_guard<std::mutex> lk(ch->mu);
      ch->pieces.push_back(piece);
      ch->cv.notify_all();
    };
    p.req.on_done = [ch, this](const Completion& c) {
      observe(c);
      std::lock_guard<std::mutex> lk(ch->mu);
      ch->result = c;
      ch->done = true;
      ch->cv.notify_all();
    };
    const long n = next_id++;
    const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(n);
    const long created = static_cast<long>(std::time(nullptr));
    const uint64_t sid = sched.submit(std::move(p.req));
    if (!p.stream) return respond_whole(ch, sid, res, id, created, chat, p.shape);
    const bool include_usage = p.include_usage;
    auto first = std::make_shared<bool>(true);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, ch, sid, id, created, chat, include_usage, first](size_t, httplib::DataSink& sink) {
          const auto chunk = [&](const json& choice_delta, const json& finish) {
            json choice = {{"index", 0}, {"finish_reason", finish}, {"logprobs", nullptr}};
            if (chat)
              choice["delta"] = choice_delta;
            else
              choice["text"] = choice_delta;
            return json{{"id", id},
                        {"object", chat ? "chat.completion.chunk" : "text_completion"},
                        {"created", created},
                        {"model", opt.model_name},
                        {"choices", json::array({choice})}};
          };
          const auto send = [&](const json& j) {
            const std::string s = "data: " + dump(j) + "\n\n";
            return sink.write(s.data(), s.size());
          };
          std::deque<std::string> pieces;
          bool done;
          Completion result;
          {
            std::unique_lock<std::mutex> lk(ch->mu);
            ch->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return ch->done || !ch->pieces.empty(); });
            pieces.swap(ch->pieces);
            done = ch->done;
            if (done) result = ch->result;
          }
          for (const std::string& piece : pieces) {
            json delta = chat ? json{{"content", piece}} : json(piece);
            if (chat && *first) delta["role"] = "assistant";
            *first = false;
            if (!send(chunk(delta, nullptr))) {
              sched.cancel(sid);  // the client went away: free its sequence now
              return false;
            }
          }
          // A client that went away is noticed at the next write (is_writable() also reports a full
          // socket buffer, which is not a disconnect).
          if (!done && draining) {  // the server is stopping: the stream ends with an error event
            sched.cancel(sid);
            send(json{{"error", {{"message", "the server is shutting down"}, {"type", "server_shutdown"}}}});
            const std::string end = "data: [DONE]\n\n";
            sink.write(end.data(), end.size());
            sink.done();
            return true;
          }
          if (!done) return true;
          if (result.finish_reason == "error") {
            send(json{{"error", {{"message", kInternalError}, {"type", "server_error"}}}});
          } else {
            send(chunk(chat ? json::object() : json(""), result.finish_reason));
            if (include_usage)
              send(json{{"id", id},
                        {"object", chat ? "chat.completion.chunk" : "text_completion"},
                        {"created", created},
                        {"model", opt.model_name},
                        {"choices", json::array()},
                        {"usage", usage(result)}});
          }
          const std::string end = "data: [DONE]\n\n";
          sink.write(end.data(), end.size());
          sink.done();
          return true;
        },
        cancel_if_unfinished(ch, sid));
  }

  std::string metrics() const {
    const SchedulerStats s = sched.stats();
    std::string m;
    const auto counter = [&](const char* name, const char* help, double v, const char* type = "counter") {
      m += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
    };
    counter("kvwise_requests_total", "Requests accepted", static_cast<double>(s.requests));
    counter("kvwise_requests_completed_total", "Requests finished (stop or length)", static_cast<double>(s.completed));
    counter("kvwise_requests_cancelled_total", "Requests cancelled (client went away)",
            static_cast<double>(s.cancelled));
    counter("kvwise_requests_failed_total", "Requests that failed in the engine", static_cast<double>(s.failed));
    counter("kvwise_requests_rejected_total", "Requests refused because the queue was full",
            static_cast<double>(s.rejected));
    counter("kvwise_http_errors_total", "Responses with an error status (4xx, 5xx)",
            static_cast<double>(http_errors.load()));
    counter("kvwise_prompt_tokens_total", "Prompt tokens prefilled", static_cast<double>(s.prompt_tokens));
    counter("kvwise_generation_tokens_total", "Tokens generated", static_cast<double>(s.generated_tokens));
    counter("kvwise_engine_steps_total", "Batched forward steps", static_cast<double>(s.steps));
    counter("kvwise_queue_length", "Requests waiting", s.queued, "gauge");
    counter("kvwise_running_sequences", "Sequences running", s.running, "gauge");
    counter("kvwise_kv_hot_bytes", "KV bytes held in memory", static_cast<double>(s.kv_bytes), "gauge");
    counter("kvwise_compression_seconds_total", "Time spent scoring, budgeting and selecting KV",
            s.compression_seconds);
    if (const LivePrefixCache* pc = sched.prefix_cache()) m += prefix_metrics(pc->metrics());
    m += ttft.render("kvwise_time_to_first_token_seconds", "Time from request to first token");
    m += itl.render("kvwise_inter_token_latency_seconds", "Mean time between generated tokens per request");
    m += e2e.render("kvwise_request_duration_seconds", "Time from request to the last token");
    return m;
  }

  static std::string prefix_metrics(const LivePrefixMetrics& pm) {
    std::string m;
    const auto one = [&](const char* name, const char* help, const char* type, double v) {
      m += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
    };
    const auto per_tier = [&](const char* name, const char* help, const char* type, auto value) {
      m += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
      for (size_t t = 0; t < pm.tier_names.size(); ++t)
        m += fmt::format("{}{{tier=\"{}\"}} {}\n", name, pm.tier_names[t], static_cast<double>(value(t)));
    };
    one("kvwise_prefix_lookups_total", "Prompts looked up in the prefix cache", "counter",
        static_cast<double>(pm.lookups));
    one("kvwise_prefix_lookup_blocks_total", "Full prompt blocks looked up", "counter",
        static_cast<double>(pm.lookup_blocks));
    one("kvwise_prefix_cached_tokens_total", "Prompt tokens loaded from the cache instead of computed", "counter",
        static_cast<double>(pm.cached_tokens));
    one("kvwise_prefix_block_bytes", "KV bytes of one cached block", "gauge", static_cast<double>(pm.block_bytes));
    m += fmt::format(
        "# HELP kvwise_prefix_block_info How cached blocks hold KV (--prefix-cache-dtype)\n# TYPE "
        "kvwise_prefix_block_info gauge\nkvwise_prefix_block_info{{dtype=\"{}\"}} 1\n",
        pm.dtype);
    per_tier("kvwise_prefix_hits_total", "Blocks found (unbroken prefix)", "counter",
             [&](size_t t) { return pm.cache.tiers[t].hits; });
    per_tier("kvwise_prefix_insertions_total", "Blocks inserted", "counter",
             [&](size_t t) { return pm.cache.tiers[t].insertions; });
    per_tier("kvwise_prefix_evictions_total", "Blocks evicted (from the first tier: demoted)", "counter",
             [&](size_t t) { return pm.cache.tiers[t].evictions; });
    per_tier("kvwise_prefix_resident_blocks", "Blocks resident", "gauge",
             [&](size_t t) { return pm.cache.tiers[t].resident; });
    per_tier("kvwise_prefix_capacity_blocks", "Block capacity", "gauge",
             [&](size_t t) { return pm.cache.tiers[t].capacity; });
    per_tier("kvwise_kv_cold_bytes", "KV bytes of cached prefix blocks", "gauge",
             [&](size_t t) { return t == 0 ? pm.memory_bytes : pm.disk_bytes; });
    if (pm.tier_names.size() > 1) {
      one("kvwise_prefix_disk_enabled", "1 while the disk tier works (a failed write disables it)", "gauge",
          pm.disk_enabled ? 1 : 0);
      one("kvwise_prefix_disk_loaded_blocks_total", "Blocks whose data came back from disk, verified", "counter",
          static_cast<double>(pm.disk_loaded));
      one("kvwise_prefix_disk_rejected_blocks_total",
          "Block files that did not verify (another model, truncated, corrupt): misses", "counter",
          static_cast<double>(pm.disk_rejected));
      one("kvwise_prefix_disk_errors_total", "Disk tier reads and writes that failed", "counter",
          static_cast<double>(pm.disk_errors));
    }
    // Every storage tier's own operations (memory, disk, and the shared tier when there is one).
    const auto per_store = [&](const char* name, const char* help, const char* type, auto value) {
      m += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
      for (const auto& t : pm.storage) m += fmt::format("{}{{tier=\"{}\"}} {}\n", name, t.name, value(t));
    };
    using T = LivePrefixMetrics::StorageTier;
    per_store("kvwise_prefix_tier_hits_total", "Blocks read back from the tier, verified", "counter",
              [](const T& t) { return static_cast<double>(t.io.hits); });
    per_store("kvwise_prefix_tier_misses_total", "Blocks asked of the tier that it did not hold", "counter",
              [](const T& t) { return static_cast<double>(t.io.misses); });
    per_store("kvwise_prefix_tier_rejected_total",
              "Records that did not verify (truncated, another model or layout, corrupt): misses", "counter",
              [](const T& t) { return static_cast<double>(t.io.rejected); });
    per_store("kvwise_prefix_tier_errors_total", "Reads that failed (I/O, unreachable, past the deadline): misses",
              "counter", [](const T& t) { return static_cast<double>(t.io.errors); });
    per_store("kvwise_prefix_tier_writes_total", "Blocks written", "counter",
              [](const T& t) { return static_cast<double>(t.io.puts); });
    per_store("kvwise_prefix_tier_write_errors_total", "Writes that failed", "counter",
              [](const T& t) { return static_cast<double>(t.io.put_errors); });
    per_store("kvwise_prefix_tier_read_bytes_total", "Block bytes read", "counter",
              [](const T& t) { return static_cast<double>(t.io.bytes_read); });
    per_store("kvwise_prefix_tier_written_bytes_total", "Block bytes written", "counter",
              [](const T& t) { return static_cast<double>(t.io.bytes_written); });
    per_store("kvwise_prefix_tier_bytes", "Block bytes the tier holds for this server", "gauge",
              [](const T& t) { return static_cast<double>(t.bytes); });
    per_store("kvwise_prefix_tier_queue_drops_total", "Writes dropped because the write queue was full", "counter",
              [](const T& t) { return static_cast<double>(t.io.queue_drops); });
    per_store("kvwise_prefix_tier_queue_pending", "Writes waiting in the queue", "gauge",
              [](const T& t) { return static_cast<double>(t.io.queue_pending); });
    per_store("kvwise_prefix_tier_read_seconds_total", "Time spent reading (lookups) from the tier", "counter",
              [](const T& t) { return t.io.get_seconds; });
    per_store("kvwise_prefix_tier_reconnects_total", "Connections re-established after a failure", "counter",
              [](const T& t) { return static_cast<double>(t.io.reconnects); });
    per_store("kvwise_prefix_tier_healthy", "1 while the tier works (0: disabled, unreachable or backing off)", "gauge",
              [](const T& t) { return t.io.healthy ? 1.0 : 0.0; });
    if (pm.storage.size() > pm.tier_names.size()) {
      one("kvwise_prefix_shared_lookup_blocks_total", "Blocks asked of the shared tier", "counter",
          static_cast<double>(pm.shared_lookups));
      one("kvwise_prefix_shared_loaded_blocks_total", "Blocks whose data came from the shared tier, verified",
          "counter", static_cast<double>(pm.shared_loaded));
      one("kvwise_prefix_shared_hits_total", "Blocks of a usable cached prefix that came from the shared tier",
          "counter", static_cast<double>(pm.shared_hits));
    }
    return m;
  }

  // llama.cpp's /tokenize ({"content", "add_special" = false, "parse_special" = true, "with_pieces" =
  // false}) and /detokenize ({"tokens"}); unknown fields are 400s, as everywhere.
  void handle_tokens(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                     bool tokenize) {
    try {
      if (!authorized(req)) throw HttpError{401, kUnauthorized, "authentication_error"};
      json body;
      try {
        body = json::parse(read_body(req, reader));
      } catch (const json::exception& e) {
        throw HttpError{400, std::string("malformed JSON: ") + e.what(), "invalid_request_error"};
      }
      const auto bad = [](const std::string& m) { throw HttpError{400, m, "invalid_request_error"}; };
      if (!body.is_object()) bad("the body must be a JSON object");
      const std::vector<std::string> known =
          tokenize ? std::vector<std::string>{"content", "add_special", "parse_special", "with_pieces"}
                   : std::vector<std::string>{"tokens"};
      for (const auto& item : body.items())
        if (std::find(known.begin(), known.end(), item.key()) == known.end())
          bad(fmt::format("'{}' is not supported (fields: {})", item.key().substr(0, 64), fmt::join(known, ", ")));
      const Tokenizer& tok = engine.model().tokenizer();
      const auto flag = [&](const char* key, bool def) {
        if (!body.contains(key)) return def;
        if (!body[key].is_boolean()) bad(fmt::format("'{}' must be true or false", key));
        return body[key].get<bool>();
      };
      if (tokenize) {
        if (!body.contains("content") || !body["content"].is_string()) bad("'content' must be a string");
        const std::vector<int32_t> ids =
            tok.encode(body["content"].get<std::string>(), flag("add_special", false), flag("parse_special", true));
        json out = json::array();
        const bool pieces = flag("with_pieces", false);
        for (int32_t id : ids) {
          if (!pieces) {
            out.push_back(id);
            continue;
          }
          const std::string piece = tok.token_to_piece(id);
          json bytes = json::array();
          for (const char ch : piece) bytes.push_back(static_cast<unsigned char>(ch));
          out.push_back({{"id", id}, {"piece", utf8_sanitize(piece) == piece ? json(piece) : bytes}});
        }
        res.set_content(dump(json{{"tokens", out}}), "application/json");
        return;
      }
      if (!body.contains("tokens") || !body["tokens"].is_array()) bad("'tokens' must be a list of token ids");
      std::vector<int32_t> ids;
      for (const json& x : body["tokens"]) {
        if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= engine.model().config().n_vocab)
          bad(fmt::format("token ids must be integers in [0, {})", engine.model().config().n_vocab));
        ids.push_back(static_cast<int32_t>(x.get<int64_t>()));
      }
      res.set_content(dump(json{{"content", utf8_sanitize(tok.decode(ids))}}), "application/json");
    } catch (const HttpError& e) {
      send_error(res, e.status, e.message, e.type);
    }
  }

  void routes() {
    srv.new_task_queue = [n = opt.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
    srv.set_payload_max_length(opt.max_body_bytes);
    srv.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    srv.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics(), "text/plain; version=0.0.4");
    });
    srv.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req)) return send_error(res, 401, kUnauthorized, "authentication_error");
      res.set_content(dump(json{{"object", "list"},
                                {"data", json::array({{{"id", opt.model_name},
                                                       {"object", "model"},
                                                       {"created", 0},
                                                       {"owned_by", "kvwise"},
                                                       {"meta",
                                                        {{"n_ctx", engine.ctx()},
                                                         {"n_vocab", engine.model().config().n_vocab},
                                                         {"chat_format", chat_format_name(chat_format)}}}}})}}),
                      "application/json");
    });
    srv.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res,
                                       const httplib::ContentReader& reader) { handle(req, res, reader, false); });
    srv.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res,
                                            const httplib::ContentReader& reader) { handle(req, res, reader, true); });
    srv.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res,
                                 const httplib::ContentReader& reader) { handle_tokens(req, res, reader, true); });
    srv.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res,
                                   const httplib::ContentReader& reader) { handle_tokens(req, res, reader, false); });
    srv.set_error_handler([this](const httplib::Request&, httplib::Response& res) {
      ++http_errors;
      if (!res.body.empty()) return;
      if (res.status == 413)
        send_error(res, 413, "the request body is too large", "invalid_request_error");
      else if (res.status == 404)
        send_error(res, 404, "no such endpoint", "not_found_error");
      else if (res.status >= 400)
        send_error(res, res.status, "request failed", "invalid_request_error");
    });
    srv.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "kvwise serve: internal error: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "kvwise serve: internal error\n");
      }
      send_error(res, 500, kInternalError, "server_error");
    });
  }
};

HttpServer::HttpServer(Engine& engine, Scheduler& scheduler, const ServerOptions& options)
    : impl_(std::make_unique<Impl>(engine, scheduler, options)) {
  impl_->routes();
}

HttpServer::~HttpServer() {
  stop();
}

int HttpServer::bind() {
  return impl_->srv.bind_listener(impl_->opt.host, impl_->opt.port);
}

void HttpServer::serve() {
  Impl& i = *impl_;
  {
    std::lock_guard<std::mutex> lk(i.run_mu);
    if (i.stop_requested) return;
    i.serving = true;
  }
  i.srv.listen_after_bind();
  i.serving = false;
}

void HttpServer::stop() {
  if (!impl_) return;
  Impl& i = *impl_;
  if (!i.draining.exchange(true)) {
    // Streams notice within their 100 ms wait, whole responses within a heartbeat.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (i.in_flight.load() > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  {
    std::lock_guard<std::mutex> lk(i.run_mu);
    i.stop_requested = true;
  }
  // httplib's stop() does nothing until its listen loop runs: a serve() that has begun but not yet
  // reached the loop is waited for, or it would listen forever.
  while (i.serving && !i.srv.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (i.srv.is_running()) i.srv.stop();
}

}  // namespace kvwise
