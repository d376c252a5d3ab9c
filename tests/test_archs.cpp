// Every architecture family end to end beyond the oracle comparison (test_reference): KV policies on
// sliding-window models (window layers left alone and bounded, global layers compressed, what cannot
// work refused), the CLI (inspect, make-model shapes, generate's top logprobs) and the server with its
// prefix cache on a sliding-window model (the same text as a cache-free server).
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "compress/pipeline.h"
#include "compress/registry.h"
#include "model/arch.h"
#include "model/convert.h"
#include "model/generate.h"
#include "model/gguf_writer.h"
#include "model/sampler.h"
#include "test_support.h"

namespace kvwise {
namespace {

using json = nlohmann::json;

std::string q(const std::string& s) {
  return "'" + s + "'";
}

std::string tiny_model(const std::string& shape) {
  const std::string path = test::temp_path(shape + ".gguf");
  make_random_model(model_shape(shape), path);
  return path;
}

std::vector<int32_t> prompt_of(int n, int vocab) {
  std::vector<int32_t> ids{1};
  for (int i = 1; i < n; ++i) ids.push_back(3 + (i * 53) % (vocab - 3));
  return ids;
}

TEST(Archs, EveryFamilyIsRegisteredFromItsOwnFile) {
  for (const char* arch : {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"})
    EXPECT_NE(arch_registry().find(arch), nullptr) << arch;
  EXPECT_EQ(arch_registry().find("mixtral"), nullptr);
  EXPECT_NE(supported_architectures().find("gemma3"), std::string::npos);
}

// On a sliding-window model a policy compresses the global layers only; the window layers keep at
// most their window (plus two pages) and generation runs to the end.
TEST(Archs, PoliciesLeaveWindowLayersToTheirWindow) {
  const std::string path = tiny_model("tiny-gemma3");
  auto model = Model::load(path);
  const ModelConfig& c = model->config();
  EngineOptions o;
  o.kv_type = DType::F32;
  o.page_tokens = 4;
  Engine e(*model, o);
  const auto prompt = prompt_of(80, c.n_vocab);
  for (const char* spec : {"snapkv", "pyramidkv", "adakv(snapkv)", "knorm", "kvzip", "streamingllm", "h2o"}) {
    SCOPED_TRACE(spec);
    auto policy = make_policy(spec, Budget::parse("0.5"));
    std::shared_ptr<KvCompressor> comp;
    Sampler s(SamplerParams{0, 0, 1, 1});
    const GenerateResult r = generate(
        e, prompt, 6, s, {}, [&](SeqId seq) { comp = attach_policy(e, seq, policy, static_cast<int>(prompt.size())); });
    EXPECT_EQ(r.tokens.size(), 6u);
    ASSERT_TRUE(comp);
    const auto& heads = comp->report().head_tokens;
    for (int l = 0; l < c.n_layers; ++l) {
      const int held = heads[static_cast<size_t>(l)][0];
      if (c.layers[static_cast<size_t>(l)].window > 0)
        EXPECT_LE(held, e.layer_slot_bound(l)) << "window layer " << l;
      else
        EXPECT_LE(held, 41) << "global layer " << l;  // half of the 80-token prompt (+ rounding)
    }
  }
  // What cannot work on window layers is refused with the reason.
  for (const char* spec : {"streamingllm(rerotate=1)", "specache"}) {
    SCOPED_TRACE(spec);
    const SeqId seq = e.new_sequence();
    EXPECT_THROW(attach_policy(e, seq, make_policy(spec, Budget::parse("0.5")), 80), Error);
    e.free_sequence(seq);
  }
}

TEST(Archs, InspectNamesTheFamilyAndItsWindows) {
  const std::string path = tiny_model("tiny-gemma3");
  const auto r = test::run_kvwise("inspect " + q(path));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("family gemma3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sliding window of 9 tokens on 5 of 6 layers (global layers: 5)"), std::string::npos) << r.out;
  const auto j = test::run_kvwise("inspect --json " + q(path));
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const json info = json::parse(j.out);
  EXPECT_EQ(info["config"]["family"], "gemma3");
  EXPECT_EQ(info["config"]["layers_attention"][0]["window"], 9);
  EXPECT_EQ(info["config"]["layers_attention"][0]["rope_base"], 10000.0);
  EXPECT_EQ(info["config"]["layers_attention"][5]["window"], 0);
}

// make-model's real shapes, shrunk with --layers and --vocab, load with their families' traits.
TEST(Archs, MakeModelWritesTheRealShapes) {
  const std::map<std::string, std::string> family = {
      {"llama3.2-1b", "llama"}, {"qwen2.5-0.5b", "qwen2"}, {"qwen3-0.6b", "qwen3"},  {"gemma3-1b", "gemma3"},
      {"gemma2-2b", "gemma2"},  {"phi3-mini", "phi3"},     {"smollm2-135m", "llama"}};
  for (const auto& [shape, fam] : family) {
    SCOPED_TRACE(shape);
    const std::string out = test::temp_path(shape + ".gguf");
    const auto r = test::run_kvwise("make-model --shape " + shape + " --layers 1 --vocab 512 --type q8_0 -o " + q(out));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto m = Model::load(out);
    EXPECT_EQ(m->config().family, fam);
    EXPECT_EQ(m->config().n_layers, 1);
  }
  auto llama3 = GgufFile::open(test::temp_path("llama3.2-1b.gguf"));
  EXPECT_NE(llama3->find_tensor("rope_freqs.weight"), nullptr);
  auto phi3 = GgufFile::open(test::temp_path("phi3-mini.gguf"));
  EXPECT_NE(phi3->find_tensor("blk.0.attn_qkv.weight"), nullptr);
  EXPECT_EQ(Model::load(test::temp_path("qwen3-0.6b.gguf"))->config().head_dim, 128);
}

// generate --prompt-tokens --top-logprobs: the top logprobs are a log-softmax (they sum to at most 1
// in probability, the first is the greedy token) and match the engine's own logits.
TEST(Archs, GenerateReportsTopLogprobs) {
  const std::string path = tiny_model("tiny-qwen3");
  const auto r = test::run_kvwise("generate -m " + q(path) +
                                  " --prompt-tokens 1,40,41,42 -n 3 --temp 0 --top-logprobs 4 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_EQ(j["top_logprobs"].size(), 3u);
  EXPECT_EQ(j["prompt_token_ids"], json::array({1, 40, 41, 42}));
  for (size_t i = 0; i < 3; ++i) {
    const json& step = j["top_logprobs"][i];
    ASSERT_EQ(step.size(), 4u);
    EXPECT_EQ(step[0]["id"], j["tokens"][i]);
    double p = 0;
    for (size_t k = 0; k < 4; ++k) {
      p += std::exp(step[k]["logprob"].get<double>());
      if (k > 0) {
        EXPECT_LE(step[k]["logprob"].get<double>(), step[k - 1]["logprob"].get<double>());
      }
    }
    EXPECT_LE(p, 1.0 + 1e-6);
  }
  auto model = Model::load(path);
  EngineOptions o;
  Engine e(*model, o);
  const std::vector<int32_t> prompt{1, 40, 41, 42};
  const auto logits = e.prefill(e.new_sequence(), prompt);
  const auto top = top_log_probs(logits.data(), model->config().n_vocab, 1);
  EXPECT_NEAR(j["top_logprobs"][0][0]["logprob"].get<double>(), top[0].second, 1e-4);
  const auto bad = test::run_kvwise("generate -m " + q(path) + " --prompt-tokens 1,99999 -n 1");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("outside the vocabulary"), std::string::npos) << bad.err;
}

// The server on a sliding-window model: a repeated long prompt is served from the prefix cache (its
// window layers' blocks too) with the same greedy text as a server without the cache, across chunks.
TEST(Archs, ServerPrefixCacheOnASlidingWindowModel) {
  const std::string path = tiny_model("tiny-gemma2");
  std::string prompt;
  for (int i = 0; i < 60; ++i) prompt += fmt::format("w{} ", 100 + i);
  const auto complete = [&](int port) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    auto r = c.Post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0}}.dump(),
                    "application/json");
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body);
  };
  auto plain = test::start_server("-m " + q(path) + " --no-prefix-cache --prefill-chunk 16");
  const std::string expected = complete(plain.port)["choices"][0]["text"];
  test::stop_server(plain);
  auto cached = test::start_server("-m " + q(path) + " --block-tokens 16 --prefill-chunk 16");
  const json first = complete(cached.port), second = complete(cached.port);
  EXPECT_EQ(first["choices"][0]["text"], expected);
  EXPECT_EQ(second["choices"][0]["text"], expected);
  EXPECT_GT(second["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0) << second.dump();
  test::stop_server(cached);
}

// Logprobs as lm-eval-harness and OpenAI clients use them: echo + max_tokens 0 scores a prompt (each
// token's logprob equals the engine's own log-softmax), generated tokens carry their logprob and
// alternatives, chat has OpenAI's content list, return_tokens gives the ids, and what cannot be done
// (logprobs with stream) is a 400.
TEST(Archs, ServerLogprobs) {
  const std::string path = tiny_model("tiny-qwen3");
  auto server = test::start_server("-m " + q(path) + " -t 1");
  httplib::Client c("127.0.0.1", server.port);
  c.set_read_timeout(60, 0);
  const auto post = [&](const std::string& route, const json& body) {
    auto r = c.Post(route.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r);
    return r ? std::make_pair(r->status, json::parse(r->body)) : std::make_pair(0, json());
  };
  const std::vector<int32_t> prompt{1, 50, 60, 70, 80, 90};
  auto [st, scored] = post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 2}});
  ASSERT_EQ(st, 200) << scored.dump();
  const json& lp = scored["choices"][0]["logprobs"];
  ASSERT_EQ(lp["token_logprobs"].size(), prompt.size());
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_EQ(scored["usage"]["completion_tokens"], 0);
  auto model = Model::load(path);
  EngineOptions o;
  Engine e(*model, o);
  const auto logits = e.prefill(e.new_sequence(), prompt, true);
  const int V = model->config().n_vocab;
  for (size_t i = 1; i < prompt.size(); ++i) {
    const float want = token_log_prob(logits.data() + (i - 1) * static_cast<size_t>(V), V, prompt[i]);
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), want, 2e-3) << i;
    EXPECT_EQ(lp["top_logprobs"][i].size(), 2u);
  }
  auto [st2, gen] = post("/v1/completions", {{"prompt", prompt},
                                             {"max_tokens", 3},
                                             {"temperature", 0},
                                             {"ignore_eos", true},
                                             {"logprobs", 3},
                                             {"return_tokens", true}});
  ASSERT_EQ(st2, 200) << gen.dump();
  const json& g = gen["choices"][0];
  ASSERT_EQ(g["tokens"].size(), 3u);
  ASSERT_EQ(g["logprobs"]["token_logprobs"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    double best = -1e30;
    for (const auto& [piece, v] : g["logprobs"]["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
    EXPECT_NEAR(g["logprobs"]["token_logprobs"][i].get<double>(), best, 1e-6) << "greedy picks the likeliest";
  }
  auto [st3, chat] = post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                                   {"max_tokens", 2},
                                                   {"ignore_eos", true},
                                                   {"logprobs", true},
                                                   {"top_logprobs", 2}});
  ASSERT_EQ(st3, 200) << chat.dump();
  const json& content = chat["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_TRUE(content[0]["bytes"].is_array());
  EXPECT_EQ(post("/v1/completions", {{"prompt", "x"}, {"logprobs", 1}, {"stream", true}}).first, 400);
  EXPECT_EQ(post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 0}}).first, 400);
  EXPECT_EQ(
      post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"top_logprobs", 2}}).first,
      400);
  test::stop_server(server);
}

// /tokenize and /detokenize (llama-server's endpoints and bodies), and `kvwise tokenize` on a
// vocab-only GGUF (metadata, no tensors).
TEST(Archs, TokenizeEndpointsAndVocabOnlyFiles) {
  const std::string path = tiny_model("tiny");
  auto server = test::start_server("-m " + q(path) + " -t 1");
  httplib::Client c("127.0.0.1", server.port);
  auto r = c.Post("/tokenize", json{{"content", "hello world"}, {"add_special", true}}.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json ids = json::parse(r->body)["tokens"];
  auto model = Model::load(path);
  EXPECT_EQ(ids.get<std::vector<int32_t>>(), model->tokenizer().encode("hello world", true));
  auto d = c.Post("/detokenize", json{{"tokens", ids}}.dump(), "application/json");
  ASSERT_TRUE(d);
  ASSERT_EQ(d->status, 200) << d->body;
  EXPECT_EQ(json::parse(d->body)["content"], model->tokenizer().decode(ids.get<std::vector<int32_t>>()));
  auto p = c.Post("/tokenize", json{{"content", "hi"}, {"with_pieces", true}}.dump(), "application/json");
  ASSERT_TRUE(p);
  EXPECT_TRUE(json::parse(p->body)["tokens"][0].contains("piece")) << p->body;
  auto bad = c.Post("/tokenize", json{{"content", "hi"}, {"frobnicate", 1}}.dump(), "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  auto bad_ids = c.Post("/detokenize", json{{"tokens", {1, 999999}}}.dump(), "application/json");
  ASSERT_TRUE(bad_ids);
  EXPECT_EQ(bad_ids->status, 400);
  test::stop_server(server);
  // A vocab-only copy: every metadata key, no tensors.
  auto f = GgufFile::open(path);
  GgufWriter w;
  copy_metadata(*f, w);
  const std::string vocab = test::temp_path("vocab-only.gguf");
  w.write(vocab);
  const auto t = test::run_kvwise("tokenize -m " + q(vocab) + " -p 'hello world'");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_EQ(t.out, fmt::format("{}\n", fmt::join(model->tokenizer().encode("hello world", true), " ")));
}

}  // namespace
}  // namespace kvwise
