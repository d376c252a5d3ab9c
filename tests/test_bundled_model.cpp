// The bundled model (models/kvwise-retrieval.gguf, issue 6): it is the default of every command, loads
// without ../shared, tokenizes as its trainer did, and retrieves a passkey with the full cache.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "eval/niah.h"
#include "model/model.h"
#include "serve/prefix_fidelity.h"
#include "test_support.h"

namespace kvwise {
namespace {

std::string bundled() {
  return std::string(KVWISE_SOURCE_DIR) + "/models/kvwise-retrieval.gguf";
}

test::RunResult run_env(const std::string& env, const std::string& args) {
  // Inside the subshell stdout is already run_command's file, so 2>&1 sends stderr there too.
  return test::run_command("(" + env + " '" + KVWISE_BINARY + "' " + args + " 2>&1)");
}

TEST(BundledModel, IsTheDefaultAndNeedsNoSharedData) {
  const auto r = run_env("KVWISE_DATA=/nonexistent", "generate -p 'The pass key is' -n 6 --temp 0 -t 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["tokens"].size(), 6u);
  const auto i = test::run_kvwise("inspect '" + bundled() + "' --json");
  ASSERT_EQ(i.exit_code, 0) << i.err;
  const auto ij = nlohmann::json::parse(i.out);
  EXPECT_NE(ij["metadata"]["general.name"].get<std::string>().find("kvwise-retrieval"), std::string::npos);
  EXPECT_GE(ij["config"]["ctx"].get<int>(), 1024);
  const auto missing = run_env("KVWISE_MODEL=/nonexistent/model.gguf", "generate -n 2");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.out.find("bundled"), std::string::npos) << missing.out;
}

TEST(BundledModel, TokenizesAsTheTrainer) {
  auto model = Model::load(bundled());
  const Tokenizer& tok = model->tokenizer();
  // Digits are single pieces and the space before a number is its own piece: what the passkey task needs.
  const std::vector<int32_t> ids = tok.encode("The pass key is 48213.", true);
  ASSERT_GE(ids.size(), 7u);
  EXPECT_EQ(ids[0], tok.bos());
  EXPECT_EQ(tok.decode(std::vector<int32_t>(ids.end() - 6, ids.end())), "48213.");
  EXPECT_EQ(tok.decode(ids), "The pass key is 48213.");
  // The Python trainer's tokenizer (tools/train/spm.py) must give the engine's ids on real text.
  if (test::run_command("/usr/bin/python3 -c 'import sys' 2>/dev/null").exit_code != 0) GTEST_SKIP() << "no python3";
  const std::string text = test::temp_path("tok.txt");
  test::write_file(text,
                   "It's a strange thing to say, but 1,024 tokens & \"quotes\"\n\n are\tfine -- naïve café.\n"
                   "The special magic number is 7368886. What is the pass key? The pass key is");
  const auto py = test::run_command("cd '" + std::string(KVWISE_SOURCE_DIR) +
                                    "/tools' && /usr/bin/python3 -c \"import sys; sys.path.insert(0, 'train'); "
                                    "import gguf_py, spm; t = spm.Spm.from_gguf(gguf_py.Reader('" +
                                    bundled() + "')); print(' '.join(map(str, [1] + t.encode(open('" + text +
                                    "', encoding='utf-8').read()))))\"");
  ASSERT_EQ(py.exit_code, 0) << py.out;
  const auto cli = test::run_kvwise("tokenize -m '" + bundled() + "' -f '" + text + "'");
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(py.out, cli.out);
}

TEST(BundledModel, RetrievesAPasskeyAtFullCache) {
  // kvwise's passkey task (synthetic filler, no ../shared needed) at the model's full context and at
  // half of it, the key at five depths, with seeds the trainer never used for its held-out checks.
  const auto r = run_env("KVWISE_DATA=/nonexistent",
                         "eval niah --task passkey --lengths 512,1014 --depths 0,0.25,0.5,0.75,1 "
                         "--answer-tokens 10 --policies full --seed 20261129 -t 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  ASSERT_EQ(j["results"].size(), 10u);
  int correct = 0;
  for (const auto& c : j["results"]) {
    correct += c["correct"].get<bool>() ? 1 : 0;
    // The reported correctness is the answer's digits in the output, not a flag to trust blindly.
    EXPECT_EQ(c["correct"].get<bool>(),
              c["output"].get<std::string>().find(c["answer"].get<std::string>()) != std::string::npos)
        << c.dump();
  }
  EXPECT_GE(correct, 9) << r.out;
  // The same through `generate` on a prompt of about 600 tokens: the key is the greedy continuation.
  std::string prompt;
  const std::string filler =
      "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
  for (int i = 0; i < 6; ++i) prompt += filler;
  prompt += "The pass key is 70394. Remember it. 70394 is the pass key. ";
  for (int i = 0; i < 8; ++i) prompt += filler;
  prompt += "\n\nWhat is the pass key? The pass key is";
  const auto g = run_env("KVWISE_DATA=/nonexistent", "generate --temp 0 -n 7 -t 2 --json -p \"" + prompt + "\"");
  ASSERT_EQ(g.exit_code, 0) << g.out;
  const auto gj = nlohmann::json::parse(g.out.substr(g.out.find('{')));
  EXPECT_NE(gj["text"].get<std::string>().find("70394"), std::string::npos) << g.out;
}

TEST(BundledModel, NiahAnswerPrefixEndsThePromptAtTheDigits) {
  // On this tokenizer the space before a number is its own piece. --answer-prefix " " puts that piece
  // at the end of the prompt (same length, same hidden key), and the model then answers with the digits.
  auto model = Model::load(bundled());
  const Tokenizer& tok = model->tokenizer();
  NiahOptions plain;
  plain.task = "passkey";
  NiahOptions spaced = plain;
  spaced.answer_prefix = " ";
  const NiahCase a = NiahBuilder(tok, plain).build(600, 0.5, 3), b = NiahBuilder(tok, spaced).build(600, 0.5, 3);
  ASSERT_EQ(a.prompt.size(), 600u);
  ASSERT_EQ(b.prompt.size(), 600u);
  EXPECT_EQ(a.answer, b.answer);
  EXPECT_EQ(b.prompt[b.prompt.size() - 2], a.prompt.back());  // the question's last piece ("is"), then
  const int32_t space = tok.encode("is ", false).back();      // the space piece of its own
  EXPECT_EQ(b.prompt.back(), space);
  EXPECT_NE(a.prompt.back(), space);
  Engine engine(*model, EngineOptions{});
  const NiahOutcome out = run_niah_case(engine, b, nullptr, 6);
  EXPECT_TRUE(out.correct) << out.output << " vs " << b.answer;
  EXPECT_EQ(out.output.substr(0, 5), b.answer) << "no leading space: the prompt already has it";
}

// The haystack served from int8/int4 prefix-cache blocks: the passkey is still found, as without a cache.
TEST(BundledModel, RetrievesAPasskeyFromLowPrecisionPrefixBlocks) {
  auto model = Model::load(bundled());
  Engine engine(*model, EngineOptions{});
  NiahOptions n;
  n.task = "passkey";
  n.answer_prefix = " ";
  const NiahBuilder builder(model->tokenizer(), n);
  std::vector<NiahCase> cases;
  for (double d : {0.0, 0.5, 1.0}) cases.push_back(builder.build(512, d, static_cast<int>(cases.size())));
  for (const std::string dtype : {"int8", "int4"}) {
    LivePrefixOptions o;
    o.memory_blocks = 1;
    o.dtype = dtype;
    const PrefixPasskeyCell c = measure_prefix_passkey(engine, cases, 8, o);
    EXPECT_EQ(c.cases, 3);
    EXPECT_EQ(c.correct_full, 3);
    EXPECT_EQ(c.correct, 3) << dtype;
    EXPECT_EQ(c.cached_tokens, 480.0);  // 15 whole blocks of 32; the last block holds the prompt's last token
  }
}

TEST(BundledModel, ServesByDefaultWithTheGatePolicy) {
  // `kvwise serve` without -m serves the bundled model; `gate` needs no budget; a gate file that does
  // not load is a 400, and the server keeps serving.
  test::ServerProcess server = test::start_server("--data-dir /nonexistent -t 2");
  ASSERT_GT(server.port, 0) << "the server did not start";
  httplib::Client http("127.0.0.1", server.port);
  const auto post = [&](const nlohmann::json& body) {
    return http.Post("/v1/completions", body.dump(), "application/json");
  };
  const auto ok = post({{"prompt", "The grass is green. The pass key is 123. What is the pass key? The pass key is"},
                        {"max_tokens", 6},
                        {"temperature", 0},
                        {"kv_policy", "gate(rate=0.5)"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(nlohmann::json::parse(ok->body)["usage"]["completion_tokens"], 6);
  const auto bad = post({{"prompt", "x"}, {"max_tokens", 2}, {"kv_policy", "gate(file=/nonexistent.gate.gguf)"}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400) << bad->body;
  // A request cannot name a file (docs/security.md): a 400 that names the parameter, not the path.
  EXPECT_NE(bad->body.find("names a file"), std::string::npos) << bad->body;
  EXPECT_EQ(bad->body.find("nonexistent.gate.gguf"), std::string::npos) << bad->body;
  const auto again = post({{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"temperature", 0}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  const auto models = http.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_NE(models->body.find("kvwise-retrieval"), std::string::npos) << models->body;
  EXPECT_EQ(test::stop_server(server), 0);
}

}  // namespace
}  // namespace kvwise
