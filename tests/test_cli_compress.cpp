// The real binary with KV policies: generate/perplexity/bench flags, the eval harness, profile, and
// clear errors for bad specs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace kvwise {
namespace {

using test::run_kvwise;

std::string stories() {
  return "-m '" + test::stories_gguf() + "' -t 2 --data-dir '" + test::data_dir() + "'";
}
std::string corpus() {
  std::string s = test::data_dir();
  s.insert(0, 1, '\'');
  s += "/data/tinystories_valid_sample/tinystories_valid_first_stories.txt'";
  return s;
}
const char* kPrompt =
    "-p 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
    "saw a big red ball under a tree. She ran to the ball and kicked it very hard. The ball flew over the fence and "
    "into the garden of an old man. Lily was scared, but she wanted her ball back.'";

TEST(CliCompress, GenerateReportsTheCompression) {
  KVWISE_REQUIRE_DATA();
  const auto full = run_kvwise("generate " + stories() + " " + kPrompt + " -n 16 --temp 0 --json");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const auto r = run_kvwise("generate " + stories() + " " + kPrompt +
                            " -n 16 --temp 0 --json --kv-policy 'adakv(snapkv)' --kv-budget 0.5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out), jf = nlohmann::json::parse(full.out);
  EXPECT_EQ(j["kv_policy"], "adakv(snapkv)");
  const auto& c = j["compression"];
  EXPECT_TRUE(c["compressed"].get<bool>());
  EXPECT_LT(c["bytes_after"].get<size_t>(), c["bytes_before"].get<size_t>());
  EXPECT_EQ(c["head_tokens"].size(), 5u);
  EXPECT_LT(j["kv"]["bytes_final"].get<size_t>(), jf["kv"]["bytes_final"].get<size_t>());
  EXPECT_EQ(j["tokens"].size(), 16u);
  // Text mode prints the summary line on stderr.
  const auto t = run_kvwise("generate " + stories() + " " + kPrompt + " -n 8 --kv-policy h2o --kv-budget 0.25");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.err.find("KV policy h2o"), std::string::npos) << t.err;
}

// The low-precision policies through the real binary: no budget needed, SpeCache's report in the JSON,
// bits per value in the eval table, and clear errors for bad precisions or cold-tier paths.
TEST(CliCompress, LowPrecisionPoliciesRunEndToEnd) {
  KVWISE_REQUIRE_DATA();
  const std::string dir = test::temp_path("cli-cold");
  const auto r = run_kvwise("generate " + stories() + " " + kPrompt +
                            " -n 24 --temp 0 --json --kv-policy 'specache(bits=int1,dir=" + dir + ")'");
  // The directory does not exist: a clear error, no crash.
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("cannot create"), std::string::npos) << r.err;
  ASSERT_EQ(std::system(("mkdir -p '" + dir + "'").c_str()), 0);
  const auto ok = run_kvwise("generate " + stories() + " " + kPrompt +
                             " -n 24 --temp 0 --json --kv-policy 'specache(bits=int1,dir=" + dir + ")'");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const auto j = nlohmann::json::parse(ok.out);
  const auto& s = j["compression"]["specache"];
  EXPECT_EQ(s["steps"].get<int>(), 23);  // the first generated token runs alone (pre-decoding)
  EXPECT_GT(s["cold_bytes"].get<size_t>(), 0u);
  EXPECT_GT(s["prefetch_hit_rate"].get<double>(), 0.0);
  EXPECT_EQ(test::run_command("ls '" + dir + "' | wc -l").out, "0\n") << "the cold-tier file is removed at the end";

  const auto t = run_kvwise("eval fidelity " + stories() +
                            " --policies 'full,h2o,mikv(lo=int4),kv-int4' --budgets 0.25 "
                            "--segments 2 --json");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const auto f = nlohmann::json::parse(t.out);
  ASSERT_EQ(f["results"].size(), 4u);
  for (const auto& c : f["results"]) {
    const double bits = c["bits_per_value"].get<double>();
    if (c["policy"] == "full") {
      EXPECT_NEAR(bits, 16.0, 1e-9);
    }
    if (c["policy"] == "kv-int4") {
      EXPECT_EQ(c["budget"], "all");
      EXPECT_LT(bits, 12.0);
    }
    if (c["policy"] == "mikv(lo=int4)") {
      EXPECT_GT(bits, 4.0);
    }
  }
  const auto bad = run_kvwise("generate " + stories() + " -p hi -n 2 --kv-policy 'kv-quant(bits=int3)'");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("unknown KV precision"), std::string::npos) << bad.err;
  const auto group = run_kvwise("generate " + stories() + " -p hi -n 2 --kv-policy 'kv-int4(group=12)'");
  EXPECT_NE(group.exit_code, 0);
  EXPECT_NE(group.err.find("multiple of 8"), std::string::npos) << group.err;
}

TEST(CliCompress, BadSpecsFailWithAClearMessage) {
  KVWISE_REQUIRE_DATA();
  const std::pair<const char*, const char*> cases[] = {
      {"--kv-policy nosuch --kv-budget 0.5", "unknown KV policy"},
      {"--kv-policy snapkv --kv-budget 0", "must be positive"},
      {"--kv-policy snapkv --kv-budget -3", "must be positive"},
      {"--kv-policy snapkv --kv-budget lots", "not a number"},
      {"--kv-policy snapkv", "needs --kv-budget"},
      {"--kv-policy 'snapkv(window=500)' --kv-budget 0.5", "longer than the prompt"},
      {"--kv-policy 'snapkv(window=' --kv-budget 0.5", "column"},
  };
  for (const auto& [args, msg] : cases) {
    const auto r = run_kvwise("generate " + stories() + " " + kPrompt + " -n 4 " + args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_NE(r.err.find(msg), std::string::npos) << args << ": " << r.err;
  }
}

TEST(CliCompress, PerplexityAndBenchTakeAPolicy) {
  KVWISE_REQUIRE_DATA();
  const auto full = run_kvwise("perplexity " + stories() + " -f " + corpus() + " --truncate --json");
  const auto snap = run_kvwise("perplexity " + stories() + " -f " + corpus() +
                               " --truncate --json --kv-policy 'snapkv(window=8)' --kv-budget 0.25");
  ASSERT_EQ(snap.exit_code, 0) << snap.err;
  const double nf = nlohmann::json::parse(full.out)["mean_nll"], ns = nlohmann::json::parse(snap.out)["mean_nll"];
  EXPECT_GT(ns, nf);        // compression loses something...
  EXPECT_LT(ns, nf + 0.1);  // ...but not much at a quarter of the cache
  const auto b =
      run_kvwise("bench " + stories() + " -p 128 -n 8 -d 0,256 -r 1 --json --kv-policy snapkv --kv-budget 0.25");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto jb = nlohmann::json::parse(b.out);
  ASSERT_EQ(jb["results"].size(), 4u);
  // tg at depth 256 decodes over 64 kept tokens per head (2 pages of 32) instead of 256.
  EXPECT_EQ(jb["results"][3]["test"], "tg8");
  EXPECT_LT(jb["results"][3]["kv_bytes"].get<size_t>(), 256u * 1280u / 2);
}

TEST(CliCompress, EvalFidelityTableJsonAndPlots) {
  KVWISE_REQUIRE_DATA();
  const std::string dir = test::temp_path("fidelity-plots");
  const auto r = run_kvwise("eval fidelity " + stories() +
                            " --policies 'full,random,snapkv,adakv(snapkv,alpha=0.5)' --budgets 0.5,0.25 --segments 2 "
                            "--continuation 16 --json --plot '" +
                            dir + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 7u);  // full once + 3 policies x 2 budgets
  EXPECT_EQ(j["results"][0]["mean_kl"].get<double>(), 0.0);
  for (const auto& c : j["results"]) {
    EXPECT_GE(c["mean_kl"].get<double>(), 0.0);
    EXPECT_GE(c["top1_agreement"].get<double>(), 0.0);
    EXPECT_LE(c["hot_bytes"].get<double>(), c["full_bytes"].get<double>());
  }
  EXPECT_NE(test::read_file(dir + "/fidelity_kl.svg").find("<svg"), std::string::npos);
  EXPECT_NE(test::read_file(dir + "/fidelity.csv").find("adakv(snapkv,alpha=0.5)"), std::string::npos);
  const auto t = run_kvwise("eval fidelity " + stories() + " --policies snapkv --budgets 0.25 --segments 1");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.out.find("| snapkv | 0.25 |"), std::string::npos) << t.out;
}

TEST(CliCompress, EvalNiahAndAttention) {
  KVWISE_REQUIRE_DATA();
  const std::string dir = test::temp_path("niah-plots");
  for (const char* task : {"needle", "passkey"}) {
    const auto r = run_kvwise(
        std::string("eval niah ") + stories() + " --task " + task +
        " --lengths 128,256 --depths 0,0.5,1 --policies full,snapkv --budgets 0.5 --json --plot '" + dir + "'");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["results"].size(), 12u);
    for (const auto& c : j["results"]) {
      EXPECT_EQ(c["correct"].get<bool>(),
                c["output"].get<std::string>().find(c["answer"].get<std::string>()) != std::string::npos);
    }
  }
  EXPECT_NE(test::read_file(dir + "/niah_snapkv_0.5.svg").find("<svg"), std::string::npos);
  const auto bad = run_kvwise("eval niah " + stories() + " --lengths 600");
  EXPECT_EQ(bad.exit_code, 1);
  const auto a = run_kvwise(
      "eval attention -t 2 --prompt 512 --future 16 --policies full,random,snapkv,adakv --budgets 0.25 --json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto ja = nlohmann::json::parse(a.out);
  ASSERT_EQ(ja["results"].size(), 4u);
  EXPECT_NEAR(ja["results"][0]["relative_error"].get<double>(), 0.0, 1e-6);
  EXPECT_NEAR(ja["results"][0]["retained_mass"].get<double>(), 1.0, 1e-6);
  // Planted needles: window scoring keeps more of the future attention mass than random choice.
  EXPECT_GT(ja["results"][2]["retained_mass"].get<double>(), ja["results"][1]["retained_mass"].get<double>());
  EXPECT_LT(ja["results"][2]["relative_error"].get<double>(), ja["results"][1]["relative_error"].get<double>());
  const auto m = run_kvwise("eval attention " + stories() +
                            " --source model --prompt 256 --future 32 --layer 2 "
                            "--policies snapkv --budgets 0.25 --json");
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_GT(nlohmann::json::parse(m.out)["results"][0]["retained_mass"].get<double>(), 0.25);
}

TEST(CliCompress, ProfileWritesABudgetFileTheBaklavaPolicyReads) {
  KVWISE_REQUIRE_DATA();
  const std::string out = test::temp_path("profile.json");
  const auto p = run_kvwise("profile " + stories() + " -o '" + out + "' --thetas 0,1 --segments 2 --json");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const auto j = nlohmann::json::parse(p.out);
  EXPECT_EQ(j["search"].size(), 2u);
  const auto g = run_kvwise("generate " + stories() + " " + kPrompt +
                            " -n 8 --json --kv-policy 'baklava(profile=" + out + ")' --kv-budget 0.5");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_TRUE(nlohmann::json::parse(g.out)["compression"]["compressed"].get<bool>());
}

}  // namespace
}  // namespace kvwise
