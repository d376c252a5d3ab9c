// Features compose exactly: on the bundled model, every registered policy gives the same greedy text
// with the prefix cache off, with it on (the first request fills it, the second starts from cached
// blocks), streaming and not, through the real HTTP server. Policies whose statistics need every
// prompt query (H2O, the gate) compute the prompt in full even when its prefix is cached; the others
// must actually use the cache.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "compress/baklava.h"
#include "compress/duo_profile.h"
#include "compress/registry.h"
#include "model/forward.h"
#include "serve/http_server.h"
#include "test_support.h"

namespace kvwise {
namespace {

using json = nlohmann::json;

std::string bundled() {
  return std::string(KVWISE_SOURCE_DIR) + "/models/kvwise-retrieval.gguf";
}

// One policy spec per registered policy (and a few compositions), at a budget that compresses.
struct Case {
  std::string spec;
  std::string budget;  // "" for policies that ignore the budget
};

std::vector<Case> cases(const std::string& profile_name) {
  std::vector<Case> out;
  for (const PolicyInfo& p : policy_catalog()) {
    if (p.name == "baklava")
      out.push_back({"baklava(profile=" + profile_name + ")", "0.5"});
    else if (p.name == "duoattention")
      out.push_back({"duoattention(profile=duo)", "0.5"});
    else  // each registration says how it builds without files and whether it needs a budget
      out.push_back({p.example, p.budget == BudgetUse::Ignored || p.budget == BudgetUse::Optional ? "" : "0.5"});
  }
  out.push_back({"specache(bits=int1)", ""});  // the cold tier in a file
  out.push_back({"adakv(pyramidkv)", "0.5"});
  out.push_back({"mikv(snapkv)", "0.5"});
  out.push_back({"gate", "0.5"});
  out.push_back({"chunkkv(knorm,chunk=8)", "0.5"});
  out.push_back({"criticalkv(expected-attention(vnorm=0))", "0.5"});
  out.push_back({"decoding(snapkv,every=4,prefill=1)", "0.5"});
  return out;
}

class Composition : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = Model::load(bundled());
    EngineOptions eo;
    eo.threads = 2;
    engine_ = std::make_unique<Engine>(*model_, eo);
    // A BaKlaVa profile of this model, registered by name as an operator would.
    auto profiler = std::make_shared<BaklavaProfiler>(model_->config());
    const SeqId s = engine_->new_sequence();
    engine_->observe(s, profiler);
    engine_->prefill(s, prompt());
    engine_->free_sequence(s);
    profile_ = test::temp_path("composition-baklava.json");
    profiler->profile("bundled", 2.0).save(profile_);
    // A DuoAttention calibration of this model, registered as "duo".
    auto duo = std::make_shared<DuoProfiler>(model_->config(), 4, 32, 64);
    const SeqId d = engine_->new_sequence();
    engine_->observe(d, duo);
    engine_->prefill(d, prompt());
    engine_->free_sequence(d);
    duo_profile_ = test::temp_path("composition-duo.json");
    duo->profile("bundled").save(duo_profile_);
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    sched_.reset();
  }
  void start(bool prefix_cache) {
    TearDown();
    SchedulerOptions so{4, 32, 64, 0, nullptr};
    if (prefix_cache) {
      LivePrefixOptions po;
      po.memory_blocks = 256;
      po.block_tokens = 16;
      so.prefix_cache = std::make_shared<LivePrefixCache>(engine_->kv().layout(), po);
    }
    sched_ = std::make_unique<Scheduler>(*engine_, so);
    ServerOptions o;
    o.port = 0;
    o.policy_files.profiles["bundled"] = profile_;
    o.policy_files.profiles["duo"] = duo_profile_;
    server_ = std::make_unique<HttpServer>(*engine_, *sched_, o);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->serve(); });
  }
  // A passkey-style prompt of about 400 tokens: filler, a key, more filler, the question.
  std::vector<int32_t> prompt() const {
    std::string text;
    for (int i = 0; i < 12; ++i) text += "The grass is green. The sky is blue. The sun is yellow. Here we go. ";
    text += "The pass key is 71432. Remember it. 71432 is the pass key. ";
    for (int i = 0; i < 8; ++i) text += "The grass is green. The sky is blue. The sun is yellow. Here we go. ";
    text += "What is the pass key? The pass key is";
    return model_->tokenizer().encode(text, true);
  }
  // (text, cached tokens) of one greedy request.
  std::pair<std::string, int> ask(const Case& c, bool stream) {
    json body = {
        {"prompt", prompt()}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}, {"kv_policy", c.spec}};
    if (!c.budget.empty()) body["kv_budget"] = c.budget;
    if (stream) {
      body["stream"] = true;
      body["stream_options"] = {{"include_usage", true}};
    }
    httplib::Client cl("127.0.0.1", port_);
    cl.set_read_timeout(120, 0);
    auto r = cl.Post("/v1/completions", body.dump(), "application/json");
    if (!r || r->status != 200) {
      ADD_FAILURE() << c.spec << ": " << (r ? r->body : std::string("no answer"));
      return {"", -1};
    }
    if (!stream) {
      const json j = json::parse(r->body);
      return {j["choices"][0]["text"], j["usage"]["prompt_tokens_details"]["cached_tokens"]};
    }
    int cached = -1;
    const std::string text = test::sse_text(r->body, nullptr, &cached);
    return {text, cached};
  }

  std::unique_ptr<Model> model_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  int port_ = 0;
  std::string profile_, duo_profile_;
};

TEST_F(Composition, EveryPolicyGivesTheSameTextWithAndWithoutThePrefixCacheAndStreaming) {
  const auto all = cases("bundled");
  std::map<std::string, std::string> reference;
  start(false);
  for (const Case& c : all) {
    const auto [text, cached] = ask(c, false);
    reference[c.spec + "@" + c.budget] = text;
    EXPECT_EQ(cached, 0);
    EXPECT_EQ(ask(c, true).first, text) << c.spec << ": streaming differs";
  }
  start(true);
  for (const Case& c : all) {
    const std::string& want = reference[c.spec + "@" + c.budget];
    const auto policy = make_policy(c.spec, c.budget.empty() ? Budget{} : Budget::parse(c.budget),
                                    PolicySource{true, {}, {{"bundled", profile_}, {"duo", duo_profile_}}, {}});
    for (bool stream : {false, true}) {
      const auto [text, cached] = ask(c, stream);
      EXPECT_EQ(text, want) << c.spec << " budget " << c.budget << (stream ? " streaming" : "") << ", cached "
                            << cached;
      // The prompt's blocks were captured by the first request that ran it; later ones use them
      // unless the policy needs every prompt query.
      if (policy->needs_every_prompt_query) {
        EXPECT_EQ(cached, 0) << c.spec;
      }
    }
    const auto [text, cached] = ask(c, false);
    EXPECT_EQ(text, want) << c.spec;
    if (!policy->needs_every_prompt_query) {
      EXPECT_GT(cached, 0) << c.spec << " never used the cache";
    }
  }
}

}  // namespace
}  // namespace kvwise
