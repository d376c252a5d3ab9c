// What a new user meets first: the demo and its report, llama.cpp's flags, errors that name what was
// wrong (exit 2 for a bad command line), defaults that serve well, and nothing truncated silently.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "base/data_dir.h"
#include "base/error.h"
#include "compress/budget.h"
#include "compress/gate.h"
#include "serve/request_fields.h"
#include "test_support.h"

namespace kvwise {
namespace {

using json = nlohmann::json;
using test::run_kvwise;

std::string q(const std::string& s) {
  return "'" + s + "'";
}

TEST(Demo, ShowsTheComparisonAndWritesTheReport) {
  const std::string out = test::temp_path("demo");
  const auto r = run_kvwise("demo -t 2 --out " + q(out) +
                            " --cases 2 --policies full,streamingllm,kv-int4 --capacity 500,2000 "
                            "--eviction lru,s3fifo,belady");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* s : {"keys found", "hot KV", "streamingllm 25%", "kv-int4", "belady", "infinite", "report.html"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  const json j = json::parse(test::read_file(out + "/demo.json"));
  const json& rows = j["passkey"]["rows"];
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["policy"], "full");
  EXPECT_EQ(rows[0]["accuracy"], 1.0);  // the bundled model retrieves with the full cache
  EXPECT_LT(rows[1]["hot_kv_bytes"].get<double>(), rows[0]["hot_kv_bytes"].get<double>() * 0.5);
  EXPECT_LT(rows[2]["hot_kv_share_of_full"].get<double>(), 0.5);  // int4 keys and values
  const json& prefix = j["prefix_cache"]["rows"];
  ASSERT_EQ(prefix.size(), 3u);
  // Belady is the optimum: no online policy beats it at any capacity.
  for (const char* cap : {"hit_ratio_at_500", "hit_ratio_at_2000"})
    for (const json& p : prefix) EXPECT_LE(p[cap].get<double>(), prefix[2][cap].get<double>() + 1e-12) << cap;
  const std::string html = test::read_file(out + "/report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("<td>streamingllm 25%</td>"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(out + "/qttft.svg"));  // uncalibrated latency is not shown
}

TEST(Report, RendersJsonTablesAndPlotsAndRefusesAnEmptyDirectory) {
  const std::string dir = test::temp_path("report");
  std::filesystem::create_directories(dir);
  test::write_file(
      dir + "/bench.json",
      json{{"model", "m<1>.gguf"}, {"results", {{{"test", "pp64"}, {"tokens_per_second", 123.5}}}}}.dump());
  test::write_file(dir + "/plot.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"><rect/></svg>");
  test::write_file(dir + "/broken.json", "{not json");
  const auto r = run_kvwise("report " + q(dir) + " --title T");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string html = test::read_file(dir + "/report.html");
  EXPECT_NE(html.find("<td>pp64</td>"), std::string::npos) << html;
  EXPECT_NE(html.find("123.5"), std::string::npos);
  EXPECT_NE(html.find("m&lt;1&gt;.gguf"), std::string::npos);  // escaped
  EXPECT_NE(html.find("<rect/>"), std::string::npos);          // the plot inlined
  EXPECT_NE(html.find("not readable as JSON"), std::string::npos);
  const std::string empty = test::temp_path("report-empty");
  std::filesystem::create_directories(empty);
  const auto e = run_kvwise("report " + q(empty));
  EXPECT_EQ(e.exit_code, 1);
  EXPECT_NE(e.err.find("no .json results"), std::string::npos) << e.err;
  EXPECT_EQ(run_kvwise("report /nonexistent-dir").exit_code, 1);
}

TEST(CommandLine, UnknownFlagsAndCommandsExit2WithAHint) {
  const auto a = run_kvwise("generate --ctx-sise 64");
  EXPECT_EQ(a.exit_code, 2);
  EXPECT_NE(a.err.find("'--ctx-sise'"), std::string::npos) << a.err;
  EXPECT_NE(a.err.find("did you mean --ctx-size"), std::string::npos) << a.err;
  const auto b = run_kvwise("genrate -p hi");
  EXPECT_EQ(b.exit_code, 2);
  EXPECT_NE(b.err.find("unknown command 'genrate'"), std::string::npos) << b.err;
  EXPECT_NE(b.err.find("'generate'"), std::string::npos) << b.err;
  const auto c = run_kvwise("eval niah --lenghts 100");
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_NE(c.err.find("kvwise eval niah"), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("--lengths"), std::string::npos) << c.err;
  EXPECT_EQ(run_kvwise("generate -n notanumber").exit_code, 2);
  EXPECT_EQ(run_kvwise("--help").exit_code, 0);
  EXPECT_EQ(run_kvwise("--version").exit_code, 0);
}

TEST(CommandLine, HelpShowsEveryDefault) {
  const auto s = run_kvwise("serve --help");
  ASSERT_EQ(s.exit_code, 0);
  for (const char* d : {"=8080", "=64", "=lru", "=0.1", "=127.0.0.1", "=32", "=30"})
    EXPECT_NE(s.out.find(d), std::string::npos) << d << "\n" << s.out;
  const auto g = run_kvwise("generate --help");
  EXPECT_NE(g.out.find("-n,--n-predict INT:INT in [0 - 16777216]=64"), std::string::npos) << g.out;
  EXPECT_NE(g.out.find("--temperature"), std::string::npos);
}

TEST(CommandLine, LlamaCppFlagsWork) {
  const std::string prompt = test::temp_path("prompt.txt");
  test::write_file(prompt, "Once upon a time");
  const auto r =
      run_kvwise("generate -f " + q(prompt) + " -c 256 -ctk f16 -ctv f16 -fa --temperature 0 -n 4 -t 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["prompt"], "Once upon a time");
  EXPECT_EQ(j["tokens"].size(), 4u);
  EXPECT_NE(r.err.find("-fa/--flash-attn is ignored"), std::string::npos) << r.err;
  const auto t = run_kvwise("generate -ctk f32 -n 2 -p hi --json");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_EQ(json::parse(t.out)["kv"]["type"], "f32");
  const auto k = run_kvwise("generate -ctk q8_0 -n 2 -p hi");
  EXPECT_EQ(k.exit_code, 1);
  EXPECT_NE(k.err.find("kv-int8"), std::string::npos) << k.err;
  const auto d = run_kvwise("generate -ctk f16 -ctv f32 -n 2 -p hi");
  EXPECT_EQ(d.exit_code, 1);
  EXPECT_NE(d.err.find("one type"), std::string::npos) << d.err;
  const auto both = run_kvwise("generate -f " + q(prompt) + " -p hi");
  EXPECT_EQ(both.exit_code, 2);
  const auto ngl = run_kvwise("generate -ngl 99 -n 2 -p hi");
  EXPECT_EQ(ngl.exit_code, 2);
  EXPECT_NE(ngl.err.find("CPU only"), std::string::npos) << ngl.err;
  EXPECT_EQ(run_kvwise("generate -ngl 0 -n 2 -p hi").exit_code, 0);
}

// The default thread count is what the process may use (affinity mask, cgroup quota), not the
// host's core count.
TEST(CommandLine, DefaultThreadsFollowTheAffinityMask) {
  const auto r = test::run_command("taskset -c 0 " + std::string(KVWISE_BINARY) + " generate -n 2 -p hi --json");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(json::parse(r.out)["threads"], 1);
}

TEST(NothingSilent, GenerationBeyondTheContextWarns) {
  const auto r = run_kvwise("generate -c 32 -n 100 -p 'Once upon a time' --temp 0 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("more than the context leaves"), std::string::npos) << r.err;
  const json j = json::parse(r.out);
  EXPECT_TRUE(j["stopped_at_context"].get<bool>() || j["stopped_at_eos"].get<bool>());
  EXPECT_LT(j["tokens"].size(), 100u);
}

TEST(NothingSilent, BudgetsThatCannotMeanAnythingAreErrors) {
  const auto a = run_kvwise("generate --kv-budget 0.5 -n 2 -p hi");
  EXPECT_EQ(a.exit_code, 1);
  EXPECT_NE(a.err.find("no effect on the full cache"), std::string::npos) << a.err;
  const auto b = run_kvwise("generate --kv-policy snapkv --kv-budget 150% -n 2 -p hi");
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_NE(b.err.find("at most 100%"), std::string::npos) << b.err;
  const auto c = run_kvwise("generate --kv-policy kv-int4 --kv-budget 0.5 -n 2 -p hi");
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.err.find("ignores --kv-budget"), std::string::npos) << c.err;
  EXPECT_THROW(Budget::parse("101%"), Error);
  EXPECT_DOUBLE_EQ(Budget::parse("100%").ratio, 1.0);
  EXPECT_EQ(Budget::parse("256").tokens, 256);
}

TEST(NothingSilent, PerplexitySkipsWindowsTooShortForTheBudget) {
  KVWISE_REQUIRE_DATA();
  // One long document (many stories joined) and one short one; snapkv's 32-token window needs a
  // compressed part of at least 32 tokens, which 10% of a short document's half is not.
  std::string text =
      test::read_file(test::data_dir() + "/data/tinystories_valid_sample/tinystories_valid_first_stories.txt");
  std::string joined;
  const std::string sep = "<|endoftext|>";
  for (size_t at = 0; at < std::min<size_t>(text.size(), 6000);) {
    const size_t next = text.find(sep, at);
    joined += text.substr(at, (next == std::string::npos ? text.size() : next) - at) + " ";
    if (next == std::string::npos) break;
    at = next + sep.size();
  }
  const std::string file = test::temp_path("ppl-docs.txt");
  test::write_file(file, joined + "\n<|endoftext|>\nOnce upon a time there was a cat.\n");
  const auto r = run_kvwise("perplexity -f " + q(file) + " --kv-policy snapkv --kv-budget 0.1 -t 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_GE(j["skipped_windows"].get<int>(), 1);
  EXPECT_EQ(j["skipped_documents"].back(), 1);
  EXPECT_GT(j["tokens"].get<int>(), 500);
  EXPECT_NE(r.err.find("too short for the budget"), std::string::npos) << r.err;
  // When nothing can be scored, that is an error, not a perplexity of nothing.
  const std::string short_file = test::temp_path("ppl-short.txt");
  test::write_file(short_file, "Once upon a time there was a cat.\n");
  const auto e = run_kvwise("perplexity -f " + q(short_file) + " --kv-policy snapkv --kv-budget 0.1");
  EXPECT_EQ(e.exit_code, 1);
  EXPECT_NE(e.err.find("no window could be scored"), std::string::npos) << e.err;
}

TEST(Paths, TheStories260KGateIsFoundForTheSharedModel) {
  const std::string shared_model = "/anywhere/models/stories260K/stories260K.gguf";
  EXPECT_EQ(GateModel::default_path(shared_model), bundled_file("stories260K.gate.gguf"));
  EXPECT_TRUE(std::filesystem::exists(GateModel::default_path(shared_model)));
  // Without a bundled one the side path is named (for the error message).
  EXPECT_EQ(GateModel::default_path("/x/other.gguf"), "/x/other.gate.gguf");
  KVWISE_REQUIRE_DATA();
  const auto r = run_kvwise("generate -m " + q(test::stories_gguf()) + " --kv-policy gate -n 4 -p 'Once' --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Paths, DataAndBundledFilesResolveFromAnyWorkingDirectory) {
  KVWISE_REQUIRE_DATA();
  if (std::getenv("KVWISE_DATA")) GTEST_SKIP() << "KVWISE_DATA overrides the default";
  const std::string trace = test::temp_path("cwd-trace.jsonl");
  // From / (where ../shared does not exist) the default data directory still finds the Mooncake trace.
  const auto r = test::run_command("cd / && " + std::string(KVWISE_BINARY) +
                                   " loadgen --dry-run --ctx 1024 --vocab 512 --requests 5 --write-trace " + q(trace) +
                                   " 2>&1; echo rc=$?");
  EXPECT_NE(r.out.find("rc=0"), std::string::npos) << r.out;
  EXPECT_NE(test::read_file(trace).find("hash_ids"), std::string::npos);
  const auto g = test::run_command("cd / && " + std::string(KVWISE_BINARY) +
                                   " generate --kv-policy gate -n 2 -p hi > /dev/null 2>&1; echo rc=$?");
  EXPECT_NE(g.out.find("rc=0"), std::string::npos) << g.out;
}

TEST(NothingSilent, LoadgenSaysWhenTheTraceIsShorterThanRequests) {
  const std::string trace = test::temp_path("short-trace.jsonl");
  ASSERT_EQ(run_kvwise("sim --generate " + q(trace) + " --synthetic-requests 30").exit_code, 0);
  const auto r = run_kvwise("loadgen --trace " + q(trace) + " --dry-run --ctx 512 --vocab 512 --requests 1000 " +
                            "--write-trace " + q(test::temp_path("short-out.jsonl")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("--requests 1000 but the trace has only 30"), std::string::npos) << r.err;
}

TEST(Sim, DefaultsSayWhatIsAssumedAndSizeInstancesToTheLoad) {
  const auto r = run_kvwise("sim --synthetic-requests 500 --capacity 100 --policies lru");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("the prefill cost is assumed"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("sized to the trace's load"), std::string::npos) << r.out;
  const auto j = run_kvwise("sim --synthetic-requests 500 --capacity 100 --policies lru --json");
  ASSERT_EQ(j.exit_code, 0);
  const json s = json::parse(j.out);
  EXPECT_TRUE(s["prefill_cost_assumed"].get<bool>());
  EXPECT_TRUE(s["instances_sized_to_load"].get<bool>());
  // A cost measured now on a model: not assumed, and its KV bytes per token replace the shape's.
  const auto m = run_kvwise("sim --synthetic-requests 200 --capacity 100 --policies lru --cost-from " +
                            q(bundled_file("kvwise-retrieval.gguf")) + " -t 2");
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_NE(m.out.find("measured now on"), std::string::npos) << m.out;
  EXPECT_EQ(m.err.find("assumed"), std::string::npos) << m.err;
}

TEST(Sim, NegativeOrZeroCapacityIsACommandLineError) {
  for (const char* bad : {"-5", "0", "x"}) {
    const auto r = run_kvwise(std::string("sim --capacity ") + bad);
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_NE(r.err.find("--capacity"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("vector::reserve"), std::string::npos) << r.err;
  }
}

TEST(Quantize, SaysWhichTensorsCouldNotTakeTheType) {
  KVWISE_REQUIRE_DATA();
  const std::string out = test::temp_path("q4k.gguf");
  const auto r = run_kvwise("quantize " + q(test::stories_gguf()) + " " + q(out) + " q4_k");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // stories260K's rows of 64 < 256: llama.cpp's fallback (Q5_0), said per tensor, never F16 silently.
  EXPECT_NE(r.err.find("fallback type"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("-> Q5_0   fallback: rows of 64 do not fill Q4_K blocks of 256"), std::string::npos) << r.err;
  // Rows of 172 (ffn_down) fit neither: F16, as llama.cpp does, and said so.
  EXPECT_NE(r.err.find("-> F16    fallback: rows of 172"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("wrote"), std::string::npos);
}

TEST(RequestFields, UnsupportedFieldsAre400sUnlessTheyAreOff) {
  const RequestLimits limits{512, 512};
  const auto parse = [&](json body) { return parse_request_fields(body.dump(), false, limits, 1); };
  const auto status = [&](json body) {
    try {
      parse(std::move(body));
      return 200;
    } catch (const HttpError& e) {
      return e.status;
    }
  };
  json base = {{"prompt", "hi"}, {"max_tokens", 4}};
  EXPECT_EQ(status(base), 200);
  for (const auto& [k, v] : std::vector<std::pair<std::string, json>>{{"frequency_penalty", 0},
                                                                      {"presence_penalty", 0.0},
                                                                      {"logprobs", false},
                                                                      {"echo", false},
                                                                      {"logit_bias", json::object()},
                                                                      {"user", "alice"},
                                                                      {"model", "x"},
                                                                      {"best_of", 1},
                                                                      {"logprobs", 5},
                                                                      {"echo", true},
                                                                      {"return_tokens", true},
                                                                      {"suffix", nullptr}}) {
    json b = base;
    b[k] = v;
    EXPECT_EQ(status(b), 200) << k;
  }
  for (const auto& [k, v] : std::vector<std::pair<std::string, json>>{{"frequency_penalty", 0.5},
                                                                      {"logprobs", true},
                                                                      {"logprobs", 21},
                                                                      {"top_logprobs", 3},
                                                                      {"logit_bias", {{"5", 10}}},
                                                                      {"tools", json::array()},
                                                                      {"n_predict", 5},
                                                                      {"messages", json::array()}}) {
    json b = base;
    b[k] = v;
    EXPECT_EQ(status(b), 400) << k;
    try {
      parse(b);
    } catch (const HttpError& e) {
      EXPECT_NE(e.message.find("'" + k + "'"), std::string::npos) << e.message;
    }
  }
  json so = base;
  so["stream_options"] = {{"include_usage", true}, {"continuous_usage_stats", true}};
  EXPECT_EQ(status(so), 400);
}

httplib::Result get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30, 0);
  return c.Get(path.c_str());
}

// The same 300-character prompt twice: the second is served from the prefix cache.
void expect_repeated_prompt_cached(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  const std::string prompt(300, 'a');
  for (int i = 0; i < 2; ++i) {
    auto r = c.Post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 2}}.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    if (i == 1) {
      EXPECT_GT(json::parse(r->body)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);
    }
  }
}

// The same bytes hold more int4 blocks: capacity = bytes / (block bytes in that dtype), and the
// server still serves cached prefixes with --eviction hazard.
TEST(ServeDefaults, PrefixCacheDtypeSizesTheCapacity) {
  std::map<std::string, double> capacity, block;
  for (const std::string dtype : {"f16", "int4"}) {
    test::ServerProcess s =
        test::start_server("-t 1 --prefix-cache-bytes 4194304 --eviction hazard --prefix-cache-dtype " + dtype);
    ASSERT_GT(s.port, 0);
    expect_repeated_prompt_cached(s.port);
    auto m = get(s.port, "/metrics");
    ASSERT_TRUE(m);
    const auto gauge = [&](const std::string& name) {
      const size_t at = m->body.find("\n" + name + " ");
      return at == std::string::npos ? -1.0 : std::stod(m->body.substr(at + name.size() + 2));
    };
    capacity[dtype] = gauge("kvwise_prefix_capacity_blocks{tier=\"memory\"}");
    block[dtype] = gauge("kvwise_prefix_block_bytes");
    EXPECT_NE(m->body.find("kvwise_prefix_block_info{dtype=\"" + dtype + "\"} 1"), std::string::npos);
    EXPECT_EQ(test::stop_server(s), 0);
  }
  ASSERT_GT(block["int4"], 0);
  EXPECT_LT(block["int4"], block["f16"]);
  EXPECT_EQ(capacity["f16"], std::floor(4194304 / block["f16"]));
  EXPECT_EQ(capacity["int4"], std::floor(4194304 / block["int4"]));
}

TEST(ServeDefaults, PrefixCacheIsOnByDefaultAndCanBeTurnedOff) {
  test::ServerProcess on = test::start_server("-t 1");
  ASSERT_GT(on.port, 0);
  auto m = get(on.port, "/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("kvwise_prefix_capacity_blocks{tier=\"memory\"}"), std::string::npos) << m->body;
  expect_repeated_prompt_cached(on.port);
  EXPECT_EQ(test::stop_server(on), 0);
  test::ServerProcess off = test::start_server("-t 1 --no-prefix-cache");
  ASSERT_GT(off.port, 0);
  m = get(off.port, "/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body.find("kvwise_prefix_capacity_blocks"), std::string::npos);
  EXPECT_EQ(test::stop_server(off), 0);
}

TEST(ServeDefaults, EvictionMistakesStopTheStart) {
  const auto a = run_kvwise("serve --port 0 --eviction lruu");
  EXPECT_EQ(a.exit_code, 1);
  EXPECT_NE(a.err.find("unknown policy"), std::string::npos) << a.err;
  EXPECT_NE(a.err.find("s3fifo"), std::string::npos) << a.err;
  const auto b = run_kvwise("serve --port 0 --eviction belady");
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_NE(b.err.find("needs the future"), std::string::npos) << b.err;
  const auto zero = run_kvwise("serve --port 0 --prefix-cache-blocks 0");  // once "no cache": now said
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.err.find("--prefix-cache-blocks"), std::string::npos) << zero.err;
  const auto c = run_kvwise("serve --port 0 --no-prefix-cache --eviction lru");
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_NE(c.err.find("excludes"), std::string::npos) << c.err;
}

TEST(ServeDefaults, MaxQueueZeroServesAnIdleServer) {
  test::ServerProcess s = test::start_server("-t 1 --max-queue 0 -np 2");
  ASSERT_GT(s.port, 0);
  httplib::Client c("127.0.0.1", s.port);
  c.set_read_timeout(60, 0);
  for (int i = 0; i < 3; ++i) {
    auto r =
        c.Post("/v1/completions", json{{"prompt", "Once upon a time"}, {"max_tokens", 2}}.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  EXPECT_EQ(test::stop_server(s), 0);
}

}  // namespace
}  // namespace kvwise

namespace kvwise {
namespace {

// The README's "What to try next" blocks, run as written in a scratch directory whose `build` and
// `models` point at this build and the bundled files (so `$PWD/build/...` and `models/...` resolve as
// in a checkout); only the server's port is swapped for a free one and the server is stopped after.
TEST(ReadmeCommands, WhatToTryNextRunsAsWritten) {
  const std::string readme = test::read_file(std::string(KVWISE_SOURCE_DIR) + "/README.md");
  const size_t begin = readme.find("## What to try next");
  ASSERT_NE(begin, std::string::npos);
  const size_t end = readme.find("\n## ", begin + 1);
  const std::string section = readme.substr(begin, end - begin);
  std::string script;
  for (size_t at = 0; (at = section.find("```sh\n", at)) != std::string::npos;) {
    at += 6;
    const size_t close = section.find("```", at);
    script += section.substr(at, close - at);
    at = close + 3;
  }
  ASSERT_NE(script.find("kvwise serve"), std::string::npos);
  ASSERT_NE(script.find("kvwise sim"), std::string::npos);
  ASSERT_NE(script.find("kvwise eval niah"), std::string::npos);
  // A free port instead of 8080.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  close(fd);
  for (size_t at = 0; (at = script.find("8080", at)) != std::string::npos;) script.replace(at, 4, port);
  const std::string dir = test::temp_path("readme");
  std::filesystem::create_directories(dir);
  const std::string build = std::filesystem::path(KVWISE_BINARY).parent_path().parent_path().parent_path().string();
  test::write_file(dir + "/try.sh", "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script +
                                        "\necho README-OK\n");
  std::filesystem::create_directory_symlink(build, dir + "/build");
  std::filesystem::create_directory_symlink(std::string(KVWISE_SOURCE_DIR) + "/models", dir + "/models");
  const auto r = test::run_command("cd '" + dir + "' && bash try.sh 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("README-OK"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"choices\""), std::string::npos) << r.out;  // the server answered
  EXPECT_TRUE(std::filesystem::exists(dir + "/sim-plots/report.html"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/niah-plots/report.html"));
  EXPECT_NE(test::read_file(dir + "/sim-plots/report.html").find("belady"), std::string::npos);
}

}  // namespace
}  // namespace kvwise

namespace kvwise {
namespace {

// Long commands draw a progress bar on a terminal (script(1) gives them one) and none in a log.
TEST(Progress, LongCommandsShowItOnATerminalOnly) {
  KVWISE_REQUIRE_DATA();
  const std::string bin = KVWISE_BINARY;
  const std::string q4 = test::temp_path("tty-q4.gguf");
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"sim --synthetic-requests 3000 --capacity 100,200,300 --policies lru,fifo,arc", "sim ["},
      {"quantize '" + test::stories_gguf() + "' '" + q4 + "' q8_0", "quantize ["},
      {"perplexity -m '" + test::stories_gguf() + "' -f '" + test::data_dir() +
           "/data/tinystories_valid_sample/tinystories_valid_first_stories.txt' --truncate",
       "perplexity ["},
  };
  for (const auto& [args, bar] : commands) {
    const auto tty = test::run_command("script -qec \"" + bin + " " + args + "\" /dev/null");
    EXPECT_EQ(tty.exit_code, 0) << args << "\n" << tty.out;
    EXPECT_NE(tty.out.find(bar), std::string::npos) << args << "\n" << tty.out;
    const auto log = run_kvwise(args);
    EXPECT_EQ(log.exit_code, 0) << log.err;
    EXPECT_EQ(log.err.find(bar), std::string::npos) << log.err;
  }
}

}  // namespace
}  // namespace kvwise
