// The OpenAI-compatible server in-process on a free loopback port: greedy output equals `generate`,
// streaming equals non-streaming, usage is reported, bad requests get OpenAI-style 4xx errors, and 16
// parallel streaming clients (some hanging up mid-stream) leave no KV pages behind.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "compress/registry.h"
#include "model/generate.h"
#include "serve/http_server.h"
#include "test_support.h"

namespace kvwise {
namespace {

using json = nlohmann::json;

class Server : public test::StoriesEngineTest {
 protected:
  void SetUp() override {
    StoriesEngineTest::SetUp();
    if (!engine_) return;
    sched_ = std::make_unique<Scheduler>(*engine_, SchedulerOptions{8, 32, 64, 0, nullptr});
  }
  void use_prefix_cache(size_t blocks) {
    LivePrefixOptions po;
    po.memory_blocks = blocks;
    po.block_tokens = 8;
    SchedulerOptions o{8, 32, 64, 0, std::make_shared<LivePrefixCache>(engine_->kv().layout(), po)};
    sched_ = std::make_unique<Scheduler>(*engine_, o);
  }
  // Sends a request on a plain socket and closes it at once (or after the first bytes of the answer).
  void post_and_hang_up(const json& body, bool wait_for_bytes) {
    const std::string payload = body.dump();
    const std::string request =
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(payload.size()) + "\r\n\r\n" + payload;
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()) && wait_for_bytes) {
      char buf[64];
      (void)!read(fd, buf, sizeof buf);
    }
    close(fd);
  }
  void start(ServerOptions so = {}) {
    so.port = 0;
    so.max_body_bytes = 64 * 1024;
    server_ = std::make_unique<HttpServer>(*engine_, *sched_, so);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->serve(); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    sched_.reset();
  }
  httplib::Client client() {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }
  json post(const std::string& path, const json& body, int expect = 200) {
    auto c = client();
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, expect) << r->body;
    return json::parse(r->body);
  }
  std::string greedy_text(const std::string& prompt, int n) {
    Sampler s(SamplerParams{0, 0, 1, 1});
    return generate(*engine_, model_->tokenizer().encode(prompt, true), n, s).text;
  }
  static std::string sse_text(const std::string& body, bool* done) { return test::sse_text(body, done); }

  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_F(Server, CompletionsEqualGenerateAndReportUsage) {
  start();
  const std::string expected = greedy_text("Once upon a time", 24);
  const json r =
      post("/v1/completions", {{"model", "x"}, {"prompt", "Once upon a time"}, {"max_tokens", 24}, {"temperature", 0}});
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["choices"][0]["text"], expected);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(r["usage"]["completion_tokens"], 24);
  EXPECT_EQ(r["usage"]["total_tokens"], 29);
  EXPECT_EQ(r["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  // Token-id prompts and a per-request KV policy.
  const json ids =
      post("/v1/completions",
           {{"prompt", model_->tokenizer().encode("Once upon a time", true)}, {"max_tokens", 24}, {"temperature", 0}});
  EXPECT_EQ(ids["choices"][0]["text"], expected);
  const json pol =
      post("/v1/completions",
           {{"prompt", "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."},
            {"max_tokens", 8},
            {"temperature", 0},
            {"kv_policy", "snapkv(window=8)"},
            {"kv_budget", 0.5}});
  EXPECT_EQ(pol["usage"]["completion_tokens"], 8);
  {  // the same policy through `generate`
    const auto prompt = model_->tokenizer().encode(
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.", true);
    const auto policy = make_policy("snapkv(window=8)", Budget::parse("0.5"));
    Sampler s(SamplerParams{0, 0, 1, 1});
    const std::string want = generate(*engine_, prompt, 8, s, {}, [&](SeqId seq) {
                               attach_policy(*engine_, seq, policy, static_cast<int>(prompt.size()));
                             }).text;
    EXPECT_EQ(pol["choices"][0]["text"], want);
  }
  const json stopped = post("/v1/completions",
                            {{"prompt", "Once upon a time"}, {"max_tokens", 24}, {"temperature", 0}, {"stop", "Lily"}});
  EXPECT_EQ(stopped["choices"][0]["text"], expected.substr(0, expected.find("Lily")));
  EXPECT_EQ(stopped["choices"][0]["finish_reason"], "stop");
  const json models = json::parse(client().Get("/v1/models")->body);
  EXPECT_EQ(models["data"][0]["id"], "stories260K");
  EXPECT_EQ(client().Get("/health")->status, 200);
}

TEST_F(Server, StreamingEqualsNonStreamingForCompletionsAndChat) {
  start();
  for (bool chat : {false, true}) {
    json body = {{"max_tokens", 16}, {"temperature", 0}};
    if (chat)
      body["messages"] = json::array({{{"role", "user"}, {"content", "Tell me a story about a cat."}}});
    else
      body["prompt"] = "Tom had a red ball.";
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    const json plain = post(path, body);
    const std::string text = chat ? plain["choices"][0]["message"]["content"].get<std::string>()
                                  : plain["choices"][0]["text"].get<std::string>();
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    auto r = client().Post(path.c_str(), body.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
    bool done = false;
    EXPECT_EQ(sse_text(r->body, &done), text) << chat;
    EXPECT_TRUE(done);
    EXPECT_NE(r->body.find("\"completion_tokens\":16"), std::string::npos);  // the usage chunk
    EXPECT_EQ(plain["object"], chat ? "chat.completion" : "text_completion");
  }
}

TEST_F(Server, BadRequestsGetOpenAiErrors) {
  start();
  auto c = client();
  const auto expect_error = [&](const std::string& body, int status, const std::string& msg) {
    auto r = c.Post("/v1/completions", body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << body;
    const json j = json::parse(r->body);
    EXPECT_NE(j["error"]["message"].get<std::string>().find(msg), std::string::npos) << r->body;
  };
  expect_error("{\"prompt\": ", 400, "malformed JSON");
  expect_error("[1,2]", 400, "JSON object");
  expect_error(R"({"prompt": "x", "max_tokens": "ten"})", 400, "wrong type");
  expect_error(R"({"prompt": 12})", 400, "'prompt' must be");
  expect_error(R"({"max_tokens": 4})", 400, "'prompt' is required");
  expect_error(R"({"prompt": "x", "temperature": 9})", 400, "temperature");
  expect_error(R"({"prompt": "x", "kv_policy": "nosuch", "kv_budget": 0.5})", 400, "unknown KV policy");
  expect_error(R"({"prompt": "x", "kv_policy": "snapkv"})", 400, "kv_budget");
  expect_error(R"({"prompt": "x", "kv_policy": "snapkv", "kv_budget": -1})", 400, "positive");
  expect_error(R"({"prompt": "x", "max_tokens": 4000})", 400, "exceeds the context");
  expect_error(R"({"prompt": [1, 100000]})", 400, "vocabulary");
  expect_error(R"({"prompt": "x", "stop": [1]})", 400, "'stop' must be");
  expect_error(json{{"prompt", std::string(100 * 1024, 'a')}}.dump(), 413, "too large");
  auto chat =
      c.Post("/v1/chat/completions", R"({"messages": [{"role": "robot", "content": "x"}]})", "application/json");
  EXPECT_EQ(chat->status, 400);
  EXPECT_EQ(c.Get("/v1/nothing")->status, 404);
  // After all that the server still answers.
  EXPECT_EQ(
      post("/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}, {"temperature", 0}})["usage"]["completion_tokens"],
      2);
  const std::string metrics = c.Get("/metrics")->body;
  // 13 bad completions, 1 bad chat request, 1 unknown endpoint.
  EXPECT_NE(metrics.find("kvwise_http_errors_total 15"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("kvwise_time_to_first_token_seconds_count 1"), std::string::npos) << metrics;
}

TEST_F(Server, ApiKeyIsRequiredWhenSet) {
  ServerOptions so;
  so.api_key = "sekrit";
  start(so);
  auto c = client();
  auto r = c.Post("/v1/completions", R"({"prompt": "Hi", "max_tokens": 2})", "application/json");
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "authentication_error");
  c.set_bearer_token_auth("sekrit");
  EXPECT_EQ(c.Post("/v1/completions", R"({"prompt": "Hi", "max_tokens": 2})", "application/json")->status, 200);
  EXPECT_EQ(client().Get("/health")->status, 200);
}

TEST_F(Server, SixteenStreamingClientsSomeHangingUp) {
  start();
  const std::vector<std::string> prompts = {"Once upon a time", "Tom had a red ball.", "The sun was hot and",
                                            "One day"};
  std::vector<std::string> expected;
  for (const auto& p : prompts) expected.push_back(greedy_text(p, 32));
  std::vector<std::thread> clients;
  std::vector<std::string> got(16);
  std::vector<int> status(16, 0);  // hang-ups keep 0
  for (int i = 0; i < 16; ++i)
    clients.emplace_back([&, i] {
      auto c = client();
      const json body = {{"prompt", prompts[static_cast<size_t>(i) % prompts.size()]},
                         {"max_tokens", 32},
                         {"temperature", 0},
                         {"stream", true}};
      if (i % 4 == 3) {
        // Hang up after the first bytes of the stream, with a plain socket.
        post_and_hang_up(body, true);
        return;
      }
      auto r = c.Post("/v1/completions", body.dump(), "application/json");
      if (!r) {
        got[static_cast<size_t>(i)] = "<" + httplib::to_string(r.error()) + " client " + std::to_string(i) + ">";
        return;
      }
      status[static_cast<size_t>(i)] = r->status;
      bool done = false;
      got[static_cast<size_t>(i)] = sse_text(r->body, &done);
      if (!done) got[static_cast<size_t>(i)] += "<not done>";
    });
  for (auto& t : clients) t.join();
  for (int i = 0; i < 16; ++i) {
    if (i % 4 == 3) continue;
    EXPECT_EQ(status[static_cast<size_t>(i)], 200) << i;
    EXPECT_EQ(got[static_cast<size_t>(i)], expected[static_cast<size_t>(i) % prompts.size()]) << i;
  }
  sched_->wait_idle();
  const SchedulerStats st = sched_->stats();
  EXPECT_EQ(st.kv_bytes, 0u);  // the pool is back to idle: no leaked pages
  EXPECT_EQ(st.completed + st.cancelled, 16);
  EXPECT_GE(st.completed, 12);
}

TEST_F(Server, PrefixCacheIsLiveAndReportedInUsageAndMetrics) {
  use_prefix_cache(64);
  start();
  const std::string prompt =
      "Once upon a time, there was a little girl named Lily. She liked to play in the park with her friends.";
  const json body = {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}};
  const json first = post("/v1/completions", body);
  const json second = post("/v1/completions", body);
  EXPECT_EQ(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  const int cached = second["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
  const int prompt_tokens = second["usage"]["prompt_tokens"].get<int>();
  EXPECT_EQ(cached, (prompt_tokens - 1) / 8 * 8);
  EXPECT_EQ(second["choices"][0]["text"], first["choices"][0]["text"]);
  EXPECT_EQ(second["choices"][0]["text"], greedy_text(prompt, 12));
  // A different tenant salt misses; the metrics count per tier.
  json salted = body;
  salted["cache_salt"] = "tenant-b";
  EXPECT_EQ(post("/v1/completions", salted)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  auto r = client().Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("kvwise_prefix_hits_total{tier=\"memory\"} " + std::to_string(cached / 8)), std::string::npos)
      << r->body;
  EXPECT_NE(r->body.find("kvwise_prefix_cached_tokens_total " + std::to_string(cached)), std::string::npos);
}

TEST_F(Server, NonStreamingClientThatHangsUpIsCancelled) {
  ServerOptions so;
  so.heartbeat_after = 0;
  so.heartbeat_every = 0.005;
  start(so);
  // 480 tokens past any end of text: long enough to be running when the hang-up is noticed.
  post_and_hang_up({{"prompt", "Once upon a time"}, {"max_tokens", 480}, {"ignore_eos", true}, {"temperature", 0}},
                   false);
  sched_->wait_idle();
  // Wait for the submission to have happened (the handler may still be parsing when wait_idle returns).
  for (int i = 0; i < 200 && sched_->stats().requests == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  sched_->wait_idle();
  const SchedulerStats st = sched_->stats();
  EXPECT_EQ(st.requests, 1);
  EXPECT_EQ(st.cancelled, 1);
  EXPECT_LT(st.generated_tokens, 480);
  EXPECT_EQ(st.kv_bytes, 0u);
  // A patient client gets the whole body (after some heartbeat spaces) and exactly max_tokens tokens.
  const json whole =
      post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 300}, {"ignore_eos", true}});
  EXPECT_EQ(whole["usage"]["completion_tokens"], 300);
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "length");
}

}  // namespace
}  // namespace kvwise
