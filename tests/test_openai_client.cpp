// The official OpenAI client for Node (vendored, tests/node) against the real `kvwise serve` binary:
// models, completions, chat, streaming with usage, cached prompt tokens, kvwise's request
// extensions, an aborted stream, and the client's typed errors for bad requests and a wrong key. The
// texts are checked against the engine's own greedy generation.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "model/generate.h"
#include "serve/chat_template.h"
#include "test_support.h"

namespace kvwise {
namespace {

using json = nlohmann::json;

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

TEST(OpenAiNodeClient, DrivesTheServer) {
  KVWISE_REQUIRE_DATA();
  if (test::run_command("command -v node").exit_code != 0) {
    if (std::getenv("CI")) FAIL() << "node is missing (scripts/setup.sh installs nodejs)";
    GTEST_SKIP() << "node is missing";
  }
  const std::string src = KVWISE_SOURCE_DIR;
  const std::string pkg_dir = test::temp_path("openai-node");
  ASSERT_EQ(test::run_command("mkdir -p " + quoted(pkg_dir) + " && tar xzf " +
                              quoted(src + "/tests/node/openai-5.23.2.tgz") + " -C " + quoted(pkg_dir))
                .exit_code,
            0);

  const std::string prompt = "Once upon a time, there was a little dog named Max. Max liked to run in the park.";
  const std::string chat_prompt = "Tell me a story about a cat.";
  test::ServerProcess server =
      test::start_server("-m " + quoted(test::stories_gguf()) + " --data-dir " + quoted(test::data_dir()) +
                         " -t 2 --api-key sk-kvwise-test --prefix-cache-blocks 64 "
                         "--block-tokens 8 --max-batch 4");
  ASSERT_GT(server.port, 0) << "the server did not start";
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port) + "/v1";
  const test::RunResult node =
      test::run_command("node " + quoted(src + "/tests/node/openai_client.cjs") + " " + quoted(pkg_dir + "/package") +
                        " " + quoted(base) + " sk-kvwise-test " + quoted(prompt) + " " + quoted(chat_prompt));
  // The aborted stream is cancelled on the server: wait until nothing runs, then read the metrics.
  httplib::Client http("127.0.0.1", server.port);
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    auto r = http.Get("/metrics");
    if (r) metrics = r->body;
    if (metrics.find("kvwise_running_sequences 0") != std::string::npos &&
        metrics.find("kvwise_requests_cancelled_total 1") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(test::stop_server(server), 0) << "SIGTERM ends the server cleanly";
  ASSERT_EQ(node.exit_code, 0) << node.out;
  const json out = json::parse(node.out);

  // What the engine generates for the same prompts.
  auto model = Model::load(test::stories_gguf());
  EngineOptions eo;
  eo.threads = 2;
  Engine engine(*model, eo);
  const auto greedy = [&](const std::string& text, int n) {
    Sampler s(SamplerParams{0, 0, 1, 1});
    return generate(engine, model->tokenizer().encode(text, true), n, s).text;
  };
  const std::string chat_text = render_chat(
      detect_chat_format(model->file().get_string("tokenizer.chat_template").value_or("")), {{"user", chat_prompt}});

  EXPECT_EQ(out["models"].size(), 1u);
  EXPECT_EQ(out["completion"]["text"], greedy(prompt, 24));
  const json& usage = out["completion"]["usage"];
  const int prompt_tokens = static_cast<int>(model->tokenizer().encode(prompt, true).size());
  EXPECT_EQ(usage["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(usage["total_tokens"].get<int>(), prompt_tokens + usage["completion_tokens"].get<int>());
  EXPECT_EQ(usage["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(out["repeat"]["text"], out["completion"]["text"]);
  EXPECT_EQ(out["repeat"]["usage"]["prompt_tokens_details"]["cached_tokens"], (prompt_tokens - 1) / 8 * 8);
  EXPECT_EQ(out["stream"]["text"], out["completion"]["text"]);
  EXPECT_EQ(out["stream"]["usage"]["completion_tokens"], usage["completion_tokens"]);
  EXPECT_EQ(out["chat"]["role"], "assistant");
  EXPECT_EQ(out["chat"]["text"], greedy(chat_text, 16));
  EXPECT_EQ(out["chat_stream"], out["chat"]["text"]);
  EXPECT_EQ(out["compressed"]["tokens"].get<int>() > 0, true);
  EXPECT_TRUE(out["abort"]["aborted"].get<bool>());
  EXPECT_LT(out["abort"]["pieces"].get<int>(), 100) << "the stream stopped soon after the abort";
  EXPECT_NE(metrics.find("kvwise_requests_cancelled_total 1"), std::string::npos) << metrics;

  const json& e = out["errors"];
  EXPECT_EQ(e["bad_policy"]["status"], 400);
  EXPECT_EQ(e["bad_policy"]["type"], "BadRequestError");
  EXPECT_NE(e["bad_policy"]["message"].get<std::string>().find("nosuch"), std::string::npos);
  EXPECT_EQ(e["bad_type"]["status"], 400);
  EXPECT_EQ(e["too_long"]["status"], 400);
  EXPECT_NE(e["too_long"]["message"].get<std::string>().find("context"), std::string::npos);
  EXPECT_EQ(e["bad_key"]["status"], 401);
  EXPECT_EQ(e["bad_key"]["type"], "AuthenticationError");
  EXPECT_EQ(e["no_messages"]["status"], 400);
}

}  // namespace
}  // namespace kvwise
