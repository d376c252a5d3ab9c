#include "serve/loadgen.h"

#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "base/error.h"
#include "base/timer.h"

namespace kvwise {

using json = nlohmann::json;

namespace {
// The tokens of one trace block: a function of its id (and the seed) only.
void block_tokens_of(prefix::BlockKey id, const LoadScale& s, int n, std::vector<int32_t>& out) {
  std::mt19937_64 rng(id * 0x9e3779b97f4a7c15ULL ^ s.seed);
  std::uniform_int_distribution<int32_t> tok(s.token_lo, s.vocab - 1);
  for (int i = 0; i < n; ++i) out.push_back(tok(rng));
}
}  // namespace

std::vector<LoadRequest> scale_trace(const sim::Trace& trace, const LoadScale& s) {
  KV_CHECK(s.vocab > s.token_lo + 1, "the vocabulary size ({}) must exceed the lowest token id ({})", s.vocab,
           s.token_lo);
  KV_CHECK(s.block_tokens > 0 && s.time_scale > 0 && s.sample >= 1 && s.min_output >= 1 && s.max_output >= s.min_output,
           "bad scaling options");
  KV_CHECK(s.first < trace.requests.size(), "the trace has {} requests; cannot start at {}", trace.requests.size(),
           s.first);
  KV_CHECK(s.ctx > s.max_output + s.block_tokens, "a context of {} tokens leaves no room for a {}-token block", s.ctx,
           s.block_tokens);
  std::vector<LoadRequest> out;
  const size_t end = std::min(trace.requests.size(), s.first + s.count);
  const double t0 = trace.requests[s.first].time;
  const int bt = s.block_tokens;
  for (size_t i = s.first; i < end; ++i) {
    const sim::TraceRequest& r = trace.requests[i];
    if (r.blocks.empty()) continue;
    const prefix::BlockKey group = r.blocks.size() > 1 ? r.blocks[1] : r.blocks[0];
    if (s.sample > 1 && (group * 0xff51afd7ed558ccdULL >> 33) % static_cast<uint64_t>(s.sample) != 0) continue;
    LoadRequest q;
    q.time = (r.time - t0) * s.time_scale;
    q.trace_input = r.input_tokens;
    q.trace_output = r.output_tokens;
    q.max_tokens =
        std::clamp(static_cast<int>(std::lround(r.output_tokens * s.output_scale)), s.min_output, s.max_output);
    long n = static_cast<long>(std::ceil(static_cast<double>(r.input_tokens) * bt / trace.block_tokens));
    n = std::clamp<long>(n, 1, static_cast<long>(r.blocks.size()) * bt);
    n = std::min<long>(n, s.ctx - q.max_tokens);  // trailing tokens beyond the context are dropped
    for (long j = 0; j * bt < n; ++j)
      block_tokens_of(r.blocks[static_cast<size_t>(j)], s, static_cast<int>(std::min<long>(bt, n - j * bt)), q.prompt);
    q.blocks.assign(r.blocks.begin(), r.blocks.begin() + n / bt);
    out.push_back(std::move(q));
  }
  return out;
}

sim::Trace scaled_trace(const std::vector<LoadRequest>& requests, int block_tokens) {
  sim::Trace t;
  t.format = "bailian";
  t.block_tokens = block_tokens;
  for (size_t i = 0; i < requests.size(); ++i) {
    const LoadRequest& q = requests[i];
    sim::TraceRequest r;
    r.time = q.time;
    r.input_tokens = static_cast<uint32_t>(q.blocks.size()) * static_cast<uint32_t>(block_tokens);
    r.output_tokens = static_cast<uint32_t>(q.max_tokens);
    r.blocks = q.blocks;
    r.chat_id = static_cast<int64_t>(i);
    t.requests.push_back(std::move(r));
  }
  return t;
}

namespace {

RequestOutcome send_one(const LoadRequest& q, const LoadTarget& target, double start) {
  RequestOutcome o;
  httplib::Client cli(target.host, target.port);
  const auto secs = static_cast<time_t>(target.timeout);
  cli.set_read_timeout(secs, 0);
  cli.set_write_timeout(secs, 0);
  cli.set_connection_timeout(10, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.set_header("Content-Type", "application/json");
  if (!target.api_key.empty()) req.set_header("Authorization", "Bearer " + target.api_key);
  req.body = json{{"model", target.model},
                  {"prompt", q.prompt},
                  {"max_tokens", q.max_tokens},
                  {"temperature", 0},
                  {"ignore_eos", true},
                  {"stream", true},
                  {"stream_options", {{"include_usage", true}}}}
                 .dump();
  std::string buffer, raw;
  double last = 0;
  int chunks = 0;
  const double t_send = now_seconds();
  o.sent = t_send - start;
  o.lateness = std::max(0.0, o.sent - q.time);
  const auto on_event = [&](const std::string& data) {
    if (data == "[DONE]") return;
    json j;
    try {
      j = json::parse(data);
    } catch (const json::exception&) {
      o.error = "unparsable event: " + data.substr(0, 200);
      return;
    }
    if (j.contains("error")) {
      o.error = j["error"].dump();
      return;
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      const json& u = j["usage"];
      o.prompt_tokens = u.value("prompt_tokens", 0);
      o.completion_tokens = u.value("completion_tokens", 0);
      if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object())
        o.cached_tokens = u["prompt_tokens_details"].value("cached_tokens", 0);
    }
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return;
    const json& c = j["choices"][0];
    const bool text = c.contains("text") && c["text"].is_string() && !c["text"].get<std::string>().empty();
    if (!text) return;
    const double now = now_seconds();
    if (chunks == 0)
      o.ttft = now - t_send;
    else
      o.gaps.push_back(now - last);
    last = now;
    ++chunks;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    buffer.append(data, len);
    if (raw.size() < 4096) raw.append(data, std::min<size_t>(len, 4096));
    for (size_t at; (at = buffer.find("\n\n")) != std::string::npos;) {
      const std::string event = buffer.substr(0, at);
      buffer.erase(0, at + 2);
      if (event.rfind("data: ", 0) == 0) on_event(event.substr(6));
    }
    return true;
  };
  const auto res = cli.send(req);
  o.e2e = now_seconds() - t_send;
  if (!res) {
    o.error = "connection failed: " + httplib::to_string(res.error());
    return o;
  }
  o.status = res->status;
  if (res->status != 200) {
    o.error = fmt::format("HTTP {}: {}", res->status, (res->body.empty() ? raw : res->body).substr(0, 300));
    return o;
  }
  if (o.completion_tokens == 0) o.completion_tokens = chunks;
  if (o.prompt_tokens == 0) o.prompt_tokens = static_cast<int>(q.prompt.size());
  o.ok = o.error.empty() && chunks > 0;
  if (chunks == 0 && o.error.empty()) o.error = "no tokens streamed";
  return o;
}

}  // namespace

LoadReport run_load(const std::vector<LoadRequest>& requests, const LoadTarget& target,
                    const std::function<void(size_t, size_t)>& progress) {
  KV_CHECK(target.max_concurrency > 0, "max concurrency must be positive");
  LoadReport rep;
  rep.requests = requests.size();
  rep.outcomes.resize(requests.size());
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  size_t done = 0;
  std::vector<std::thread> threads;
  threads.reserve(requests.size());
  const double start = now_seconds();
  for (size_t i = 0; i < requests.size(); ++i) {
    const double wait = requests[i].time - (now_seconds() - start);
    if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return in_flight < target.max_concurrency; });
      ++in_flight;
    }
    threads.emplace_back([&, i] {
      RequestOutcome o = send_one(requests[i], target, start);
      std::lock_guard<std::mutex> lk(mu);
      rep.outcomes[i] = std::move(o);
      --in_flight;
      ++done;
      if (progress) progress(done, requests.size());
      cv.notify_all();
    });
  }
  for (auto& t : threads) t.join();
  double first = 1e300, last = 0;
  std::vector<double> ttft, itl, e2e, late;
  for (const RequestOutcome& o : rep.outcomes) {
    late.push_back(o.lateness);
    if (!o.ok) {
      ++rep.failed;
      continue;
    }
    first = std::min(first, o.sent);
    last = std::max(last, o.sent + o.e2e);
    rep.prompt_tokens += o.prompt_tokens;
    rep.cached_tokens += o.cached_tokens;
    rep.completion_tokens += o.completion_tokens;
    ttft.push_back(o.ttft);
    e2e.push_back(o.e2e);
    itl.insert(itl.end(), o.gaps.begin(), o.gaps.end());
  }
  rep.seconds = last > first ? last - first : 0;
  if (rep.seconds > 0) {
    rep.output_tokens_per_second = static_cast<double>(rep.completion_tokens) / rep.seconds;
    rep.requests_per_second = static_cast<double>(rep.requests - rep.failed) / rep.seconds;
  }
  rep.ttft = sim::latency_stats(ttft);
  rep.itl = sim::latency_stats(itl);
  rep.e2e = sim::latency_stats(e2e);
  rep.lateness = sim::latency_stats(late);
  return rep;
}

}  // namespace kvwise
