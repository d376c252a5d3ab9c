// The RULER-style suite: every task builds reproducibly at the bundled model's lengths with its answers
// where they belong, the full cache solves the retrieval tasks the model was trained on, and
// `kvwise eval ruler` runs both protocols over a policy x compression-ratio grid with a leaderboard,
// KV bytes and plots.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "compress/registry.h"
#include "eval/ruler.h"
#include "test_support.h"

namespace kvwise {
namespace {

std::string bundled() {
  return std::string(KVWISE_SOURCE_DIR) + "/models/kvwise-retrieval.gguf";
}
std::string essays() {
  return test::data_dir() + "/data/paul_graham_essays";
}

class Ruler : public ::testing::Test {
 protected:
  void SetUp() override {
    KVWISE_REQUIRE_DATA();
    model_ = Model::load(bundled());
    EngineOptions eo;
    eo.threads = 2;
    engine_ = std::make_unique<Engine>(*model_, eo);
    RulerOptions o;
    o.haystack_dir = essays();
    builder_ = std::make_unique<RulerBuilder>(model_->tokenizer(), o);
  }
  std::string text(const std::vector<int32_t>& ids) const { return model_->tokenizer().decode(ids); }
  std::unique_ptr<Model> model_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<RulerBuilder> builder_;
};

TEST_F(Ruler, EveryTaskBuildsReproduciblyWithItsAnswersInPlace) {
  if (!builder_) return;
  for (const std::string& task : RulerBuilder::tasks()) {
    const RulerCase a = builder_->build(task, 500, 3), b = builder_->build(task, 500, 3),
                    c = builder_->build(task, 500, 4);
    EXPECT_EQ(a.context, b.context) << task;
    EXPECT_NE(a.context, c.context) << task;
    ASSERT_FALSE(a.turns.empty()) << task;
    const int first = static_cast<int>(a.context.size() + a.turns[0].question.size());
    EXPECT_LE(first, 500) << task;
    EXPECT_GE(first, 400) << task;
    EXPECT_LE(a.total_tokens(), engine_->ctx()) << task;
    const std::string ctx = text(a.context);
    for (const RulerTurn& t : a.turns)
      for (const std::string& ans : t.answers) EXPECT_NE(ctx.find(ans), std::string::npos) << task << ": " << ans;
  }
  EXPECT_EQ(builder_->build("niah_multiquery", 500, 0).turns.size(), 4u);
  EXPECT_EQ(builder_->build("niah_multivalue", 500, 0).turns[0].answers.size(), 4u);
  EXPECT_THROW(builder_->build("nosuch", 500, 0), Error);
  EXPECT_THROW(builder_->build("niah_single_2", 20, 0), Error);
}

TEST_F(Ruler, TheFullCacheSolvesTheTrainedRetrievalTasksInBothProtocols) {
  if (!builder_) return;
  const auto full = make_policy("full", Budget{});
  for (const char* task : {"niah_single_1", "niah_single_2", "niah_multikey_1", "niah_multiquery"})
    for (bool agnostic : {false, true}) {
      double score = 0;
      for (int i = 0; i < 3; ++i)
        score += run_ruler_case(*engine_, builder_->build(task, 500, i), full, agnostic).score;
      EXPECT_GE(score, 2.0) << task << (agnostic ? " query-agnostic" : " query-aware");
    }
  // The full cache gives the same answer whichever protocol: the question is appended either way.
  const RulerCase c = builder_->build("niah_single_2", 500, 1);
  EXPECT_EQ(run_ruler_case(*engine_, c, full, false).output, run_ruler_case(*engine_, c, full, true).output);
  // A compressing policy holds fewer bytes.
  const auto r = run_ruler_case(*engine_, c, make_policy("keydiff", Budget::parse("0.25")), true);
  EXPECT_LT(r.hot_bytes, run_ruler_case(*engine_, c, full, true).hot_bytes);
}

// The v2 model (models/README.md) was fine-tuned on the tasks v1 never saw: it retrieves several
// values of one key, which v1 does not.
TEST(RulerModels, TheV2ModelRetrievesMultipleValues) {
  KVWISE_REQUIRE_DATA();
  const auto full = make_policy("full", Budget{});
  RulerOptions o;
  o.haystack_dir = essays();
  double v1 = 0, v2 = 0;
  for (const char* file : {"kvwise-retrieval.gguf", "kvwise-retrieval-v2.gguf"}) {
    auto model = Model::load(std::string(KVWISE_SOURCE_DIR) + "/models/" + file);
    EngineOptions eo;
    eo.threads = 2;
    Engine engine(*model, eo);
    RulerBuilder b(model->tokenizer(), o);
    double score = 0;
    for (int i = 0; i < 6; ++i) score += run_ruler_case(engine, b.build("niah_multivalue", 500, i), full, true).score;
    (std::string(file).find("v2") != std::string::npos ? v2 : v1) = score / 6;
  }
  EXPECT_GT(v2, 0.3);
  EXPECT_GT(v2, v1 + 0.2);
}

TEST(RulerCli, BothProtocolsALeaderboardAndPlots) {
  KVWISE_REQUIRE_DATA();
  const std::string dir = test::temp_path("ruler-plots");
  const auto r = test::run_kvwise(
      "eval ruler --samples 2 --tasks niah_single_1,vt --policies full,keydiff,knorm "
      "--ratios 0.5,0.75 --both --plot " +
      dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("query-aware: average score"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("query-agnostic: average score"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| keydiff |"), std::string::npos) << r.out;
  for (const char* f : {"ruler_query-aware.svg", "ruler_query-agnostic.svg", "ruler.csv", "ruler.json"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;
  const auto j = nlohmann::json::parse(test::run_kvwise("eval ruler --samples 1 --tasks niah_single_1 --policies "
                                                        "full,keydiff --ratios 0.5 --query-agnostic --json")
                                           .out);
  ASSERT_EQ(j["leaderboard"].size(), 2u);
  EXPECT_EQ(j["leaderboard"][1]["protocol"], "query-agnostic");
  EXPECT_DOUBLE_EQ(j["leaderboard"][1]["compression_ratio"].get<double>(), 0.5);
  EXPECT_LT(j["leaderboard"][1]["kv_share"].get<double>(), 0.6);
  // Bad input: an unknown task, a ratio outside (0, 1).
  EXPECT_NE(test::run_kvwise("eval ruler --tasks nosuch").exit_code, 0);
  const auto bad = test::run_kvwise("eval ruler --ratios 1.5 --policies full");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("outside"), std::string::npos) << bad.err;
}

// --query-agnostic in eval niah and eval fidelity: the protocol is reported and changes what a
// question-reading policy keeps, not what the full cache answers.
TEST(QueryAgnosticCli, NiahAndFidelityReportTheProtocol) {
  KVWISE_REQUIRE_DATA();
  const std::string niah =
      "eval niah --task passkey --lengths 300 --depths 0.5 --policies full,snapkv --budgets 0.5 --json";
  const auto aware = nlohmann::json::parse(test::run_kvwise(niah).out);
  const auto agnostic = nlohmann::json::parse(test::run_kvwise(niah + " --query-agnostic").out);
  EXPECT_EQ(aware["protocol"], "query-aware");
  EXPECT_EQ(agnostic["protocol"], "query-agnostic");
  EXPECT_EQ(aware["results"][0]["output"], agnostic["results"][0]["output"]);  // full
  const std::string fid =
      "eval fidelity --prefix 200 --continuation 16 --segments 1 --policies snapkv --budgets 0.5 --json";
  const auto f_aware = nlohmann::json::parse(test::run_kvwise(fid).out);
  const auto f_agnostic = nlohmann::json::parse(test::run_kvwise(fid + " --query-agnostic --question 16").out);
  EXPECT_EQ(f_agnostic["protocol"], "query-agnostic");
  EXPECT_EQ(f_agnostic["question"], 16);
  EXPECT_NE(f_aware["results"][0]["mean_kl"], f_agnostic["results"][0]["mean_kl"]);
  EXPECT_NE(test::run_kvwise(fid + " --query-agnostic --question 200").exit_code, 0);  // as long as the prefix
}

// Every registered method runs from the CLI: kvwise generate with each catalogue entry (a DuoAttention
// profile calibrated by kvwise profile first), and the RULER suite over the 2025-26 methods.
TEST(MethodsCli, EveryRegisteredMethodRunsInGenerateAndEvalRuler) {
  KVWISE_REQUIRE_DATA();
  const std::string duo = test::temp_path("cli-duo.json");
  const auto prof = test::run_kvwise("profile --method duoattention --cases 2 -o " + duo);
  ASSERT_EQ(prof.exit_code, 0) << prof.err;
  const std::string prompt =
      "'The grass is green. The sky is blue. The pass key is 12345. Remember it. The sun is yellow. Here we go. "
      "There and back again. What is the pass key? The pass key is'";
  for (const PolicyInfo& p : policy_catalog()) {
    if (p.name == "baklava") continue;  // its profile is tested with kvwise profile in test_cli_compress
    const std::string spec = p.name == "duoattention" ? "duoattention(profile=" + duo + ")" : p.example;
    const bool budget = p.budget == BudgetUse::Required || p.budget == BudgetUse::Inherit;
    const auto r = test::run_kvwise("generate -p " + prompt + " -n 6 --kv-policy '" + spec + "'" +
                                    (budget ? " --kv-budget 0.5" : ""));
    EXPECT_EQ(r.exit_code, 0) << spec << ": " << r.err;
  }
  // The server registers it by name next to BaKlaVa profiles; a file that is neither stops the start.
  test::ServerProcess srv = test::start_server("--profile duo=" + duo);
  EXPECT_GT(srv.port, 0);
  EXPECT_EQ(test::stop_server(srv), 0);
  const std::string junk = test::temp_path("not-a-profile.json");
  { std::ofstream(junk) << "{\"format\": \"something else\"}"; }
  const auto bad = test::run_kvwise("serve --port 0 --profile x=" + junk);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("neither a BaKlaVa profile"), std::string::npos) << bad.err;
  const auto r = test::run_kvwise(
      "eval ruler --samples 1 --tasks niah_single_1,niah_multikey_1 --ratios 0.5 --both --policies "
      "'full,kvzip,expected-attention,tova,keydiff,knorm,chunkkv(keydiff),criticalkv(snapkv),decoding(keydiff),"
      "duoattention(profile=" +
      duo + ")'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| kvzip |"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("could not run"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvwise
