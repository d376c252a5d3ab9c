// The real binary on real data: every subcommand's happy path and its errors.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "prefix/eviction_policy.h"
#include "test_support.h"

namespace kvwise {
namespace {

using test::run_kvwise;

std::string stories() {
  return "-m '" + test::stories_gguf() + "'";
}

TEST(Cli, GenerateJsonOnStories) {
  KVWISE_REQUIRE_DATA();
  const auto r = run_kvwise("generate " + stories() + " --temp 0 -n 24 -t 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["text"].get<std::string>().rfind("Once upon a time, there was a little girl named Lily.", 0), 0u);
  EXPECT_EQ(j["tokens"].size(), 24u);
  EXPECT_EQ(j["prompt_tokens"][0], 1);
  EXPECT_GT(j["kv"]["bytes_peak"].get<size_t>(), 0u);
  EXPECT_GT(j["timings"]["decode_tokens_per_second"].get<double>(), 0.0);
}

TEST(Cli, DefaultModelIsTheBundledOne) {
  // No -m and no data directory: the bundled model (test_bundled_model checks it further).
  const auto r = run_kvwise("generate --data-dir /nonexistent --temp 0 -n 8 -p 'Once upon a time'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u);
}

TEST(Cli, PerplexityInspectBench) {
  KVWISE_REQUIRE_DATA();
  const auto p = run_kvwise("perplexity " + stories() + " -f '" + test::data_dir() +
                            "/data/tinystories_valid_sample/tinystories_valid_first_stories.txt' --truncate --json");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_NEAR(nlohmann::json::parse(p.out)["mean_nll"].get<double>(), 1.197, 0.02);
  const auto i = run_kvwise("inspect '" + test::stories_gguf() + "' --json");
  ASSERT_EQ(i.exit_code, 0) << i.err;
  const auto ij = nlohmann::json::parse(i.out);
  EXPECT_EQ(ij["parameters"], 260032 + 0);  // embedding is tied: counted once
  EXPECT_EQ(ij["kv_bytes_per_token"]["f32"], 1280);
  const auto b = run_kvwise("bench " + stories() + " -p 32 -n 8 -d 0,64 -r 1 --json");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(nlohmann::json::parse(b.out)["results"].size(), 4u);
}

// Quantized matrices are repacked at load (and say so), decode reports the weight bytes it streams per
// token and their rate, and --bandwidth measures the machine's own for comparison.
TEST(Cli, BenchReportsRepackedWeightsAndBandwidth) {
  const std::string q4k = test::temp_path("bench-q4k.gguf");
  ASSERT_EQ(run_kvwise("make-model --shape tiny-k --type q4_k -o '" + q4k + "'").exit_code, 0);
  const auto b = run_kvwise("bench -m '" + q4k + "' -p 16 -n 4 -r 1 -t 2 --json --bandwidth --bandwidth-mib 16");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto j = nlohmann::json::parse(b.out);
  EXPECT_GT(j["packed_weight_bytes"].get<size_t>(), 0u);
  EXPECT_GT(j["weight_bytes_per_token"].get<size_t>(), 0u);
  EXPECT_LE(j["weight_bytes_per_token"].get<size_t>(), j["weight_bytes"].get<size_t>());
  EXPECT_GT(j["results"][1]["weight_gbps"].get<double>(), 0.0);
  EXPECT_EQ(j["results"][0]["weight_gbps"].get<double>(), 0.0);  // prefill is not a weight-streaming rate
  EXPECT_GT(j["machine_bandwidth"]["read_gbps"].get<double>(), 0.0);
  EXPECT_GT(j["machine_bandwidth"]["copy_gbps"].get<double>(), 0.0);
  // Without repacking nothing is packed, and the run still works (the comparison switch).
  const auto plain = run_kvwise("bench -m '" + q4k + "' -p 16 -n 4 -r 1 --json", "KVWISE_REPACK=0");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(nlohmann::json::parse(plain.out)["packed_weight_bytes"].get<size_t>(), 0u);
}

TEST(Cli, ModelToolsRoundTrip) {
  KVWISE_REQUIRE_DATA();
  const std::string conv = test::temp_path("cli-conv.gguf"), q8 = test::temp_path("cli-q8.gguf");
  const std::string d = test::data_dir() + "/models/stories260K/";
  ASSERT_EQ(run_kvwise("convert llama2c '" + d + "stories260K.bin' '" + d + "tok512.bin' -o '" + conv + "'").exit_code,
            0);
  ASSERT_EQ(run_kvwise("quantize '" + conv + "' '" + q8 + "' q8_0").exit_code, 0);
  const auto g = run_kvwise("generate -m '" + q8 + "' --temp 0 -n 12");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(g.out.rfind("Once upon a time", 0), 0u) << g.out;
  const std::string rnd = test::temp_path("cli-rand.gguf");
  ASSERT_EQ(run_kvwise("make-model --shape tiny --layers 1 --type q8_0 -o '" + rnd + "'").exit_code, 0);
  const auto i = run_kvwise("inspect '" + rnd + "'");
  EXPECT_EQ(i.exit_code, 0);
  EXPECT_NE(i.out.find("Q8_0"), std::string::npos);
}

TEST(Cli, BadInputGivesClearErrors) {
  const std::string junk = test::temp_path("junk.gguf");
  test::write_file(junk, "this is not a model");
  const auto a = run_kvwise("generate -m '" + junk + "'");
  EXPECT_EQ(a.exit_code, 1);
  EXPECT_NE(a.err.find("not a GGUF file"), std::string::npos) << a.err;
  const auto b = run_kvwise("inspect /nonexistent.gguf");
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_NE(b.err.find("cannot open"), std::string::npos) << b.err;
  EXPECT_NE(run_kvwise("frobnicate").exit_code, 0);
  EXPECT_NE(run_kvwise("quantize a b q3_xs").exit_code, 0);
  const auto shape = run_kvwise("make-model --shape gpt5 -o /tmp/x.gguf");
  EXPECT_EQ(shape.exit_code, 1);
  EXPECT_NE(shape.err.find("unknown model shape"), std::string::npos);
  if (test::have_data()) {
    const auto longp =
        run_kvwise("generate " + stories() + " -c 8 -p 'a prompt that is much longer than eight tokens'");
    EXPECT_EQ(longp.exit_code, 1);
    EXPECT_NE(longp.err.find("more than the context"), std::string::npos) << longp.err;
    EXPECT_NE(run_kvwise("generate " + stories() + " --temp -1").exit_code, 0);
    const auto badfile = run_kvwise("perplexity " + stories() + " -f /nonexistent.txt");
    EXPECT_EQ(badfile.exit_code, 1);
    const std::string text = test::temp_path("one.txt");
    test::write_file(text, "Once upon a time.\n");
    const auto tiny_ctx = run_kvwise("perplexity " + stories() + " -f '" + text + "' -c 1");
    EXPECT_EQ(tiny_ctx.exit_code, 1) << "a 1-token window cannot predict anything: an error, not a hang";
  }
}

}  // namespace
}  // namespace kvwise

namespace kvwise {
namespace {

// The shipped Azure CSVs end their lines with CRLF: every line is a request (before: 1 of 19,366).
TEST(CliSim, ReadsTheShippedAzureCsvWithCrlfLineEnds) {
  KVWISE_REQUIRE_DATA();
  const auto r = test::run_kvwise("sim --trace '" + test::data_dir() +
                                  "/traces/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv' --format azure "
                                  "--policies lru --capacity 1000 --fail-on-bad-line --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["trace"]["requests"], 19366);
  EXPECT_EQ(j["trace"]["skipped_lines"], 0);
  for (const auto& run : j["runs"]) {
    EXPECT_LE(run["block_hit_ratio"].get<double>(), 1.0);
    EXPECT_LE(run["token_hit_ratio"].get<double>(), 1.0);
  }
}

// A file that is mostly not the format it is read as fails instead of replaying its few good lines.
TEST(CliSim, AMostlyBadTraceFails) {
  KVWISE_REQUIRE_DATA();
  const auto r = test::run_kvwise("sim --trace '" + test::data_dir() +
                                  "/traces/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv' --format mooncake "
                                  "--policies lru --capacity 1000");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("lines are bad"), std::string::npos) << r.err;
}

TEST(CliSim, ReplaysTheMooncakeTraceWithTiers) {
  KVWISE_REQUIRE_DATA();
  const std::string plots = test::temp_path("plots");
  const auto r = test::run_kvwise("sim --trace '" + test::data_dir() +
                                  "/traces/mooncake-fast25/conversation_trace.jsonl' --policies lru,wa,belady "
                                  "--capacity 1000,3000 --tiers host:4000:16e9 --json --plot '" +
                                  plots + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["trace"]["requests"], 12031);
  ASSERT_EQ(j["runs"].size(), 6u);
  for (const auto& run : j["runs"]) {
    ASSERT_EQ(run["tiers"].size(), 2u);
    EXPECT_EQ(run["tiers"][1]["name"], "host");
    EXPECT_EQ(run["tiers"][1]["capacity_blocks"], 4000);
    EXPECT_GT(run["hits_by_tier"][1].get<uint64_t>(), 0u) << "hits come back from the host tier";
    EXPECT_LE(run["block_hit_ratio"].get<double>(), j["infinite_capacity_block_hit_ratio"].get<double>());
  }
  EXPECT_NE(test::read_file(plots + "/hit_ratio.svg").find("<svg"), std::string::npos);
  EXPECT_NE(test::read_file(plots + "/qttft.svg").find("belady"), std::string::npos);
}

// The default policy list is every registered policy; hazard, the learned one, leads the online
// policies at 2,000 blocks on the Mooncake trace (docs/results/prefix-cache.md), on both halves too.
TEST(CliSim, AllPoliciesScoreRangesAndBlockDtypes) {
  KVWISE_REQUIRE_DATA();
  const std::string trace = test::data_dir() + "/traces/mooncake-fast25/conversation_trace.jsonl";
  for (const std::string range : {"0:1", "0.5:1"}) {
    const auto r = test::run_kvwise("sim --trace '" + trace + "' --capacity 2000 --score-range " + range + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    std::map<std::string, nlohmann::json> runs;
    for (const auto& run : j["runs"]) runs[run["policy"]] = run;
    const auto all = prefix::expand_policy_names({"all"});
    EXPECT_EQ(runs.size(), all.size());
    for (const auto& n : all) ASSERT_TRUE(runs.count(n)) << n;
    EXPECT_EQ(runs["lru"]["lru_belady_gap_closed"].get<double>(), 0.0);
    EXPECT_EQ(runs["belady"]["lru_belady_gap_closed"].get<double>(), 1.0);
    for (const auto& n : prefix::online_policy_names()) {
      EXPECT_LE(runs[n]["block_hit_ratio"].get<double>(), runs["hazard"]["block_hit_ratio"].get<double>())
          << n << " " << range;
      EXPECT_LT(runs[n]["us_per_block_access"].get<double>(), 20.0) << n;
    }
    if (range == "0.5:1") {
      EXPECT_LT(runs["lru"]["blocks"].get<uint64_t>(), 288500u);
    }
  }
  // int4 blocks (4 bits + an f16 scale and zero per 32 channels = 0.3125 of f16): 3.2x the blocks.
  const auto int4 = test::run_kvwise("sim --trace '" + trace +
                                     "' --policies lru --capacity-bytes 137438953472 --block-dtype int4 --json");
  ASSERT_EQ(int4.exit_code, 0) << int4.err;
  const auto j4 = nlohmann::json::parse(int4.out);
  EXPECT_EQ(j4["runs"][0]["capacity_blocks"], 6553);  // 128 GiB / (64 MiB x 0.3125)
  EXPECT_EQ(j4["block_dtype"], "int4");
  const auto bad = test::run_kvwise("sim --synthetic-requests 50 --score-range 0.9:0.1");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--score-range"), std::string::npos) << bad.err;
}

TEST(CliSim, DefaultWorkloadAndBadInput) {
  const auto r = test::run_kvwise("sim --synthetic-requests 500 --capacity 100 --policies lru,arc");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| arc"), std::string::npos);
  const std::string gen = test::temp_path("gen.jsonl");
  ASSERT_EQ(test::run_kvwise("sim --synthetic-requests 50 --generate '" + gen + "'").exit_code, 0);
  EXPECT_EQ(test::run_kvwise("sim --trace '" + gen + "' --capacity 10 --policies wa --json").exit_code, 0);
  // Bytes -> blocks: 16-token blocks of Llama-3-8B KV are 16 x 131,072 B = 2 MiB.
  const auto bytes = test::run_kvwise(
      "sim --synthetic-requests 50 --policies lru --capacity-bytes 1e9 "
      "--model-shape llama3-8b --json");
  ASSERT_EQ(bytes.exit_code, 0) << bytes.err;
  EXPECT_EQ(nlohmann::json::parse(bytes.out)["runs"][0]["capacity_blocks"], 476);
  const auto bad_policy = test::run_kvwise("sim --synthetic-requests 50 --policies lru,mru");
  EXPECT_EQ(bad_policy.exit_code, 1);
  EXPECT_NE(bad_policy.err.find("unknown eviction policy 'mru'"), std::string::npos) << bad_policy.err;
  const auto bad_tier = test::run_kvwise("sim --synthetic-requests 50 --tiers host:lots");
  EXPECT_EQ(bad_tier.exit_code, 1);
  EXPECT_NE(bad_tier.err.find("bad tier"), std::string::npos) << bad_tier.err;
  EXPECT_EQ(test::run_kvwise("sim --trace /nonexistent.jsonl --format mooncake").exit_code, 1);
  EXPECT_EQ(test::run_kvwise("sim --synthetic-requests 50 --capacity 0").exit_code, 2);  // a bad command line
  const std::string junk = test::temp_path("junk.jsonl");
  test::write_file(junk, "{\"timestamp\": 1}\n");
  const auto strict = test::run_kvwise("sim --trace '" + junk + "' --format mooncake --fail-on-bad-line");
  EXPECT_EQ(strict.exit_code, 1);
  EXPECT_NE(strict.err.find(":1:"), std::string::npos) << strict.err;
}

}  // namespace
}  // namespace kvwise

namespace kvwise {
namespace {

// kvwise sim as a cluster: routing x instances x shared tier on the real Mooncake trace.
TEST(CliSim, ClusterOfInstancesWithRoutingAndASharedTier) {
  KVWISE_REQUIRE_DATA();
  const std::string trace = test::data_dir() + "/traces/mooncake-fast25/conversation_trace.jsonl";
  const std::string dir = test::temp_path("cluster-plots");
  const auto r = test::run_kvwise("sim --trace '" + trace +
                                  "' --routing all --instances 1,4 --shared-tier-blocks 0,20000 --capacity 2000 "
                                  "--prefill-tps 10000 --json --plot '" +
                                  dir + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["runs"].size(), 16u);
  std::map<std::string, nlohmann::json> by;
  for (const auto& run : j["runs"])
    by[fmt::format("{}/{}/{}", run["routing"].get<std::string>(), run["instances"].get<int>(),
                   run["shared_tier_blocks"].get<size_t>())] = run;
  // One instance: routing cannot matter.
  EXPECT_EQ(by["round-robin/1/0"]["hit_ratio"], by["prefix/1/0"]["hit_ratio"]);
  // Four instances: routing by prefix keeps conversations where their blocks are.
  EXPECT_GT(by["prefix/4/0"]["local_hit_ratio"].get<double>(),
            2 * by["round-robin/4/0"]["local_hit_ratio"].get<double>());
  EXPECT_GT(by["cost/4/0"]["local_hit_ratio"].get<double>(), by["round-robin/4/0"]["local_hit_ratio"].get<double>());
  // A shared tier brings round-robin's total near prefix routing's + shared.
  EXPECT_GT(by["round-robin/4/20000"]["hit_ratio"].get<double>(), 0.25);
  for (const char* svg : {"cluster_hit_ratio.svg", "cluster_qttft_p90.svg", "cluster_imbalance.svg", "sim.json"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + svg)) << svg;
  const auto bad = test::run_kvwise("sim --trace '" + trace + "' --instances 1,2");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--routing"), std::string::npos) << bad.err;
  EXPECT_EQ(test::run_kvwise("sim --routing prefixx --synthetic-requests 50").exit_code, 1);
}

}  // namespace
}  // namespace kvwise
