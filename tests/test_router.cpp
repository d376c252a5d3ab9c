// Routing policies on constructed cases, the prefix locator, and kvwise route in front of real
// kvwise servers: prefix routing sends a repeated prompt where its blocks are, KV events from the
// servers feed it, streams pass through, a dead backend is skipped, a request in flight to one that
// dies is a counted 502, and a recovered backend comes back.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "prefix/routing.h"
#include "redis_support.h"
#include "test_support.h"

namespace kvwise {
namespace {

using json = nlohmann::json;
using prefix::InstanceView;

std::vector<InstanceView> views(std::initializer_list<InstanceView> v) {
  return v;
}

TEST(Routing, RoundRobinTakesHealthyInstancesInTurn) {
  auto p = prefix::make_routing_policy("round-robin");
  auto v = views({{true, 0, 0, 0}, {false, 0, 0, 0}, {true, 0, 0, 0}});
  EXPECT_EQ(p->choose(v, 4, 1), 0);
  EXPECT_EQ(p->choose(v, 4, 1), 2);
  EXPECT_EQ(p->choose(v, 4, 1), 0);
  for (auto& x : v) x.healthy = false;
  EXPECT_EQ(p->choose(v, 4, 1), -1);
}

TEST(Routing, LeastLoadPrefixAndCostChooseByTheirRules) {
  auto least = prefix::make_routing_policy("least-load");
  EXPECT_EQ(least->choose(views({{true, 3, 10, 0}, {true, 1, 50, 0}, {true, 1, 20, 0}}), 4, 1), 2)
      << "fewest in flight, then fewest active blocks";

  auto pre = prefix::make_routing_policy("prefix");
  EXPECT_EQ(pre->choose(views({{true, 5, 90, 2}, {true, 0, 0, 0}, {true, 9, 99, 7}}), 8, 1), 2) << "longest prefix";
  EXPECT_EQ(pre->choose(views({{true, 5, 90, 3}, {true, 1, 9, 3}, {true, 0, 0, 0}}), 8, 1), 1)
      << "equal prefixes: the less loaded";
  EXPECT_EQ(pre->choose(views({{true, 5, 90, 0}, {true, 1, 9, 0}, {false, 0, 0, 9}}), 8, 1), 1)
      << "no overlap on a healthy one: least-load; an unhealthy one's overlap is ignored";
  EXPECT_EQ(pre->choose(views({{true, 1, 0, 2}, {true, 0, 0, 0}, {true, 0, 5, 0}}), 10, 1), 1)
      << "2 of 10 blocks is under the 0.3 match threshold: least-load";
  EXPECT_EQ(pre->choose(views({{true, 1, 0, 3}, {true, 0, 0, 0}, {true, 0, 5, 0}}), 10, 1), 0) << "3 of 10 is not";
  EXPECT_EQ(pre->choose(views({{true, 100, 0, 9}, {true, 2, 0, 0}}), 10, 1), 1)
      << "unbalanced (100 vs 2 in flight, > 64 apart and > 1.5x): least-load wins over the prefix";
  EXPECT_EQ(pre->choose(views({{true, 60, 0, 9}, {true, 2, 0, 0}}), 10, 1), 0) << "58 apart: still balanced";

  // Dynamo's cost: w x uncached prefill blocks + the instance's active blocks (+ the request's own).
  // A holds 8 of 10 blocks but is busy (20 active); B holds nothing and is idle.
  const auto v = views({{true, 2, 20, 8}, {true, 0, 0, 0}});
  prefix::RoutingOptions w1, w5;
  w1.overlap_weight = 1;
  w5.overlap_weight = 5;
  EXPECT_EQ(prefix::make_routing_policy("cost", w1)->choose(v, 10, 2), 1) << "1x2+20 > 1x10+0";
  EXPECT_EQ(prefix::make_routing_policy("cost", w5)->choose(v, 10, 2), 0) << "5x2+20 < 5x10+0";
}

TEST(Routing, NamesExpandAndUnknownOnesSayWhatExists) {
  EXPECT_EQ(prefix::expand_routing_names({"all"}), prefix::routing_policy_names());
  EXPECT_EQ(prefix::expand_routing_names({"cost", "prefix", "cost"}), (std::vector<std::string>{"cost", "prefix"}));
  try {
    prefix::make_routing_policy("prefixx");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("least-load"), std::string::npos);
  }
}

TEST(PrefixLocator, OverlapIsTheLeadingRunAndStaysBounded) {
  prefix::PrefixLocator loc(4);
  for (prefix::BlockKey k : {1, 2, 3}) loc.stored(k, 0);
  loc.stored(1, 1);
  const std::vector<prefix::BlockKey> keys{1, 2, 3, 9};
  EXPECT_EQ(loc.overlap(keys, 0), 3);
  EXPECT_EQ(loc.overlap(keys, 1), 1);
  loc.evicted(2, 0);
  EXPECT_EQ(loc.overlap(keys, 0), 1) << "a hole ends the prefix";
  loc.stored(5, 2);
  loc.stored(6, 2);
  loc.stored(7, 2);  // capacity 4: the least recently touched key (3) goes
  EXPECT_EQ(loc.size(), 4u);
  const std::vector<prefix::BlockKey> three{3};
  EXPECT_EQ(loc.overlap(three, 0), 0);
  loc.forget_instance(2);
  EXPECT_EQ(loc.size(), 1u);
}

// --- live -------------------------------------------------------------------------------------------

struct Answer {
  int status = 0;
  std::string text, body;
  int cached = -1;
};

Answer complete(int port, const std::string& prompt, int max_tokens = 8, bool stream = false, bool ignore_eos = false) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  json body{{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  if (stream) body["stream"] = true, body["stream_options"] = {{"include_usage", true}};
  if (ignore_eos) body["ignore_eos"] = true;
  auto r = c.Post("/v1/completions", body.dump(), "application/json");
  Answer a;
  if (!r) return a;
  a.status = r->status;
  a.body = r->body;
  if (r->status != 200) return a;
  if (stream) {
    bool done = false;
    a.text = test::sse_text(r->body, &done, &a.cached);
    if (!done) a.status = -1;
    return a;
  }
  const json j = json::parse(r->body);
  a.text = j["choices"][0]["text"].get<std::string>();
  a.cached = j["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
  return a;
}

std::string metrics(int port) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/metrics");
  return r ? r->body : "";
}

double metric(int port, const std::string& name) {
  const std::string m = metrics(port);
  const size_t at = m.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(m.substr(at + name.size() + 2));
}

std::string url(const test::ServerProcess& s) {
  return "http://127.0.0.1:" + std::to_string(s.port);
}

std::string prompt(int i) {
  std::string s = "Request " + std::to_string(i) + ": ";
  while (s.size() < 400) s += "the quick brown fox jumps over the lazy dog near the river bank. ";
  return s;
}

TEST(Router, PrefixRoutingSendsARepeatedPromptToWhereItsBlocksAre) {
  test::ServerProcess a = test::start_server("-t 1"), b = test::start_server("-t 1");
  ASSERT_GT(a.port, 0);
  ASSERT_GT(b.port, 0);
  test::ServerProcess r =
      test::start_listening("route --port 0 --routing prefix --backend " + url(a) + " --backend " + url(b));
  ASSERT_GT(r.port, 0);
  std::vector<Answer> first;
  for (int i = 0; i < 6; ++i) first.push_back(complete(r.port, prompt(i)));
  for (int i = 0; i < 6; ++i) {
    const Answer again = complete(r.port, prompt(i));
    ASSERT_EQ(again.status, 200) << again.body;
    EXPECT_EQ(again.text, first[static_cast<size_t>(i)].text);
    EXPECT_GT(again.cached, 0) << "prompt " << i << " went back to the server that holds it";
  }
  // The first six spread over both (no overlap anywhere: least-load in turn).
  EXPECT_EQ(metric(r.port, "kvwise_router_requests_total{backend=\"" + url(a) + "\"}"), 6);
  EXPECT_EQ(metric(r.port, "kvwise_router_requests_total{backend=\"" + url(b) + "\"}"), 6);
  EXPECT_GT(metric(r.port, "kvwise_router_overlap_blocks_total{backend=\"" + url(a) + "\"}"), 0);
  EXPECT_NE(metrics(r.port).find("prefix_source=\"record\""), std::string::npos);

  // Streams pass through, with the same text.
  const Answer streamed = complete(r.port, prompt(0), 8, true);
  EXPECT_EQ(streamed.status, 200) << streamed.body;
  EXPECT_EQ(streamed.text, first[0].text);
  EXPECT_GT(streamed.cached, 0);
  // Bad requests get the backend's own 400.
  httplib::Client c("127.0.0.1", r.port);
  auto bad = c.Post("/v1/completions", R"({"prompt": "x", "max_tokens": "many"})", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("max_tokens"), std::string::npos) << bad->body;
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  for (auto* s : {&r, &a, &b}) EXPECT_EQ(test::stop_server(*s), 0);
}

TEST(Router, KvEventsFromTheServersTellItWhereAPrefixIs) {
  KVWISE_REQUIRE_REDIS();
  test::RedisProcess redis;
  // Events only (no shared tier): each server's own cache, published for the router.
  const std::string shared = "-t 1 --kv-events " + redis.url();
  test::ServerProcess a = test::start_server(shared), b = test::start_server(shared);
  test::ServerProcess r = test::start_listening("route --port 0 --routing prefix --kv-events " + redis.url() +
                                                " --backend " + url(a) + " --backend " + url(b));
  ASSERT_GT(r.port, 0);
  // Sent to B directly, not through the router: only B's events can tell the router. Until the
  // router's subscription is up, events are lost (pub/sub has no history): try fresh prompts.
  int sent = 42;
  for (int attempt = 0; attempt < 50 && metric(r.port, "kvwise_router_kv_events_total") <= 0; ++attempt) {
    sent = 42 + attempt;
    ASSERT_EQ(complete(b.port, prompt(sent)).status, 200);
    for (int i = 0; i < 20 && metric(r.port, "kvwise_router_kv_events_total") <= 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(metric(r.port, "kvwise_router_kv_events_total"), 0);
  EXPECT_GT(metric(r.port, "kvwise_router_locator_keys"), 0);
  // The rest of that request's events, a moment behind the first.
  for (double seen = -1, now = 0; (now = metric(r.port, "kvwise_router_kv_events_total")) != seen;) {
    seen = now;  // until no more arrive for 300 ms
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  const Answer routed = complete(r.port, prompt(sent));
  EXPECT_EQ(routed.status, 200);
  EXPECT_EQ(metric(r.port, "kvwise_router_requests_total{backend=\"" + url(b) + "\"}"), 1) << "routed to B";
  EXPECT_GT(metric(r.port, "kvwise_router_overlap_blocks_total{backend=\"" + url(b) + "\"}"), 0);
  EXPECT_NE(metrics(r.port).find("prefix_source=\"events\""), std::string::npos);
  for (auto* s : {&r, &a, &b}) EXPECT_EQ(test::stop_server(*s), 0);
}

TEST(Router, DeadBackendsAreSkippedAndRecoveredOnesReturn) {
  const int port_a = test::free_loopback_port();
  test::ServerProcess a = test::start_listening("serve -t 1 --port " + std::to_string(port_a));
  test::ServerProcess b = test::start_server("-t 1");
  ASSERT_GT(a.port, 0);
  test::ServerProcess r = test::start_listening(
      "route --port 0 --routing round-robin --health-interval 0.1 --backend " + url(a) + " --backend " + url(b));
  ASSERT_GT(r.port, 0);
  int status = 0;
  kill(a.pid, SIGKILL);
  waitpid(a.pid, &status, 0);
  a.pid = -1;
  // A is down: everything is answered by B (a request that finds A unreachable is retried there).
  for (int i = 0; i < 4; ++i) EXPECT_EQ(complete(r.port, prompt(10 + i)).status, 200);
  EXPECT_EQ(metric(r.port, "kvwise_router_backend_healthy{backend=\"" + url(a) + "\"}"), 0);
  EXPECT_EQ(metric(r.port, "kvwise_router_requests_total{backend=\"" + url(b) + "\"}"), 4);
  // A comes back on its port: the health check returns it to the rotation.
  a = test::start_listening("serve -t 1 --port " + std::to_string(port_a));
  ASSERT_GT(a.port, 0);
  for (int i = 0; i < 100 && metric(r.port, "kvwise_router_backend_healthy{backend=\"" + url(a) + "\"}") != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double before = metric(r.port, "kvwise_router_requests_total{backend=\"" + url(a) + "\"}");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(complete(r.port, prompt(20 + i)).status, 200);
  EXPECT_EQ(metric(r.port, "kvwise_router_requests_total{backend=\"" + url(a) + "\"}"), before + 2);
  // Every backend down: 503, and /health says so.
  kill(a.pid, SIGKILL);
  waitpid(a.pid, &status, 0);
  a.pid = -1;
  EXPECT_EQ(test::stop_server(b), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(complete(r.port, prompt(30)).status, 503);
  httplib::Client c("127.0.0.1", r.port);
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 503);
  EXPECT_EQ(test::stop_server(r), 0);
}

// A backend that dies in the middle of an answer, made deterministic: it is healthy, takes the
// request, writes the first bytes of its answer and drops the connection.
TEST(Router, ARequestInFlightToABackendThatFailsIsACounted502) {
  httplib::Server backend;
  backend.Get("/health",
              [](const httplib::Request&, httplib::Response& res) { res.set_content("{}", "application/json"); });
  backend.Post("/v1/completions", [](const httplib::Request& req, httplib::Response& res) {
    const bool stream = json::parse(req.body).value("stream", false);
    res.set_chunked_content_provider(
        stream ? "text/event-stream" : "application/json", [stream](size_t, httplib::DataSink& sink) {
          const std::string first = stream ? "data: {\"choices\":[{\"text\":\"Once\",\"index\":0}]}\n\n" : " ";
          sink.write(first.data(), first.size());
          return false;  // the connection is cut
        });
  });
  const int port = backend.bind_to_any_port("127.0.0.1");
  std::thread t([&] { backend.listen_after_bind(); });
  test::ServerProcess r = test::start_listening("route --port 0 --backend http://127.0.0.1:" + std::to_string(port));
  ASSERT_GT(r.port, 0);
  const Answer cut = complete(r.port, prompt(1));
  EXPECT_EQ(cut.status, 502) << cut.body;
  EXPECT_NE(cut.body.find("failed mid-request"), std::string::npos) << cut.body;
  // Health checks bring it back; a stream that breaks ends with an error event and [DONE].
  const std::string b = "http://127.0.0.1:" + std::to_string(port);
  for (int i = 0; i < 250 && metric(r.port, "kvwise_router_backend_healthy{backend=\"" + b + "\"}") != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  httplib::Client c("127.0.0.1", r.port);
  auto s = c.Post("/v1/completions", json{{"prompt", "x"}, {"stream", true}}.dump(), "application/json");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, 200);
  EXPECT_NE(s->body.find("Once"), std::string::npos) << s->body;
  EXPECT_NE(s->body.find("backend_error"), std::string::npos) << s->body;
  EXPECT_NE(s->body.find("data: [DONE]"), std::string::npos) << s->body;
  // The stream's failure is counted when the router's relay ends, which may be just after the client
  // has read the [DONE] it wrote: wait for it rather than race it.
  const std::string failures = "kvwise_router_failures_total{backend=\"" + b + "\"}";
  for (int i = 0; i < 250 && metric(r.port, failures) != 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(metric(r.port, failures), 2);
  EXPECT_EQ(test::stop_server(r), 0);
  backend.stop();
  t.join();
}

TEST(Router, BadArgumentsStopTheStart) {
  EXPECT_EQ(test::run_kvwise("route --port 0").exit_code, 2);  // --backend is required
  const auto bad = test::run_kvwise("route --port 0 --backend localhost:8080");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("http://HOST:PORT"), std::string::npos) << bad.err;
  EXPECT_EQ(test::run_kvwise("route --port 0 --backend http://x:1 --routing prefixx").exit_code, 2);
}

}  // namespace
}  // namespace kvwise
