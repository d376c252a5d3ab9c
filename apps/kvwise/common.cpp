#include "common.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/data_dir.h"
#include "base/error.h"
#include "eval/perplexity.h"

namespace kvwise::cli {

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model,
                 "GGUF model (default: the bundled kvwise-retrieval model, or $KVWISE_MODEL when set)");
  app.add_option("--data-dir", o.data_dir, "shared data directory (default: $KVWISE_DATA or ../shared)");
  app.add_option("-t,--threads", o.threads, "threads (default: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--kv-type", o.kv_type, "KV cache element type: f16 or f32")->check(CLI::IsMember({"f16", "f32"}));
  app.add_option("-c,--ctx", o.ctx, "context size in tokens (default: the model's)")->check(CLI::NonNegativeNumber);
  app.add_option("--page-tokens", o.page_tokens, "tokens per KV page")->check(CLI::Range(1, 4096));
  app.add_option("--prefill-chunk", o.prefill_chunk, "tokens per prefill step")->check(CLI::Range(1, 1 << 20));
}

void add_policy_options(CLI::App& app, PolicyOptions& o) {
  app.add_option("--kv-policy", o.spec,
                 "KV compression policy spec, e.g. snapkv, adakv(pyramidkv), h2o(recent=0.3):\n" + policy_help());
  app.add_option("--kv-budget", o.budget,
                 "KV budget per head: a ratio of the prompt (0.25, 25%) or tokens (256); window/sinks count inside");
}

std::shared_ptr<const KvPolicy> resolve_policy(const PolicyOptions& o) {
  auto p = make_policy(o.spec, o.budget.empty() ? Budget{} : Budget::parse(o.budget));
  // Uniform quantisation and SpeCache keep every token and the gate decides by itself; only the
  // other eviction policies need a budget.
  KV_CHECK(p->full || p->residual >= 0 || p->gate || !o.budget.empty(),
           "--kv-policy {} needs --kv-budget (a ratio like 0.25 or tokens like 256)", o.spec);
  return p;
}

std::string describe(const CompressionReport& r, size_t bytes_per_token) {
  const SequenceShape& s = r.shape;
  std::string out =
      fmt::format("KV policy {} @ {} tokens/head ({} sinks + {} window): ", r.policy, s.capacity, s.sinks, s.window);
  if (r.specache)
    out = fmt::format(
              "SpeCache: prefetch hit rate {:.1f}% (sampled) over {} steps, speculative tokens right {}/{}, cold tier "
              "{} ({} "
              "read, {} per step)\n",
              100.0 * r.spec.hit_rate(), r.spec.steps, r.spec.guess_hits, r.spec.guesses,
              human_bytes(static_cast<double>(r.spec.cold_bytes)),
              human_bytes(static_cast<double>(r.spec.cold_bytes_read)),
              human_bytes(static_cast<double>(r.spec.cold_bytes_read) / std::max(1, r.spec.steps))) +
          out;
  if (!s.compress) return out + fmt::format("prompt of {} tokens fits, nothing evicted at prefill", s.prompt);
  return out +
         fmt::format(
             "hot KV {} -> {} ({:.1f}% of {} prompt tokens' {}), selection {:.2f} ms, decode "
             "evictions {} tokens in {:.2f} ms",
             human_bytes(static_cast<double>(r.bytes_before)), human_bytes(static_cast<double>(r.bytes_after)),
             100.0 * static_cast<double>(r.bytes_after) / static_cast<double>(std::max<size_t>(1, r.bytes_before)),
             s.prompt, human_bytes(static_cast<double>(bytes_per_token) * s.prompt), r.prefill_seconds * 1e3,
             r.decode_evicted, r.decode_seconds * 1e3);
}

nlohmann::json to_json(const CompressionReport& r) {
  const SequenceShape& s = r.shape;
  return {{"policy", r.policy},
          {"prompt_tokens", s.prompt},
          {"capacity_per_head", s.capacity},
          {"sinks", s.sinks},
          {"window", s.window},
          {"compressed", s.compress},
          {"layer_budget", r.layer_budget},
          {"head_tokens", r.head_tokens},
          {"head_bytes", r.head_bytes},
          {"layer_bytes_before", r.layer_bytes_before},
          {"layer_bytes_after", r.layer_bytes_after},
          {"bytes_before", r.bytes_before},
          {"bytes_after", r.bytes_after},
          {"prefill_seconds", r.prefill_seconds},
          {"decode_seconds", r.decode_seconds},
          {"decode_steps", r.decode_steps},
          {"decode_evicted", r.decode_evicted},
          {"specache", r.specache ? nlohmann::json{{"prefetch_hit_rate", r.spec.hit_rate()},
                                                   {"steps", r.spec.steps},
                                                   {"guesses", r.spec.guesses},
                                                   {"guess_hits", r.spec.guess_hits},
                                                   {"cold_bytes", r.spec.cold_bytes},
                                                   {"cold_bytes_read", r.spec.cold_bytes_read},
                                                   {"inline_reads", r.spec.inline_reads},
                                                   {"prefetch", r.spec.thread_prefetch ? "thread" : "sync"}}
                                  : nlohmann::json(nullptr)},
          {"gate", r.gate_rate >= -1.0 && r.gate_cache_bytes > 0 ? nlohmann::json{{"rate", r.gate_rate},
                                                                                  {"evicted", r.gate_evicted},
                                                                                  {"cache_bytes", r.gate_cache_bytes},
                                                                                  {"seconds", r.gate_seconds}}
                                                                 : nlohmann::json(nullptr)}};
}

std::string read_corpus(const std::string& path) {
  std::ifstream in(path);
  KV_CHECK(in.good(), "{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string out;
  for (const std::string& d : split_documents(ss.str(), "<|endoftext|>")) out += d + "\n";
  return out;
}

std::string default_corpus(const ModelOptions& o) {
  return resolve_data_dir(o.data_dir) + "/data/tinystories_valid_sample/tinystories_valid_first_stories.txt";
}

std::string bundled_model_path() {
  if (const char* env = std::getenv("KVWISE_MODEL"); env != nullptr && *env != '\0') return env;
  // Installed layout first (bin/kvwise -> share/kvwise/), then the source tree the binary was built from.
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto installed = exe.parent_path().parent_path() / "share" / "kvwise" / kBundledModelName;
    if (std::filesystem::exists(installed, ec)) return installed.string();
  }
  return KVWISE_BUNDLED_MODEL;
}

std::string resolve_model_path(const ModelOptions& o) {
  if (!o.model.empty()) return o.model;
  const std::string path = bundled_model_path();
  KV_CHECK(access(path.c_str(), R_OK) == 0,
           "no model given and the default (bundled) model {} is missing (pass -m MODEL or set KVWISE_MODEL)", path);
  return path;
}

int default_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

EngineOptions engine_options(const ModelOptions& o) {
  EngineOptions e;
  e.threads = o.threads > 0 ? o.threads : default_threads();
  e.kv_type = o.kv_type == "f32" ? DType::F32 : DType::F16;
  e.ctx = o.ctx;
  e.page_tokens = o.page_tokens;
  e.prefill_chunk = o.prefill_chunk;
  return e;
}

size_t resident_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return static_cast<size_t>(std::stoull(line.substr(6))) * 1024;
  return 0;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (b >= 1024 && u < 3) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.2f} {}", b, units[u]);
}

bool stdout_is_tty() {
  return isatty(STDOUT_FILENO) != 0;
}

}  // namespace kvwise::cli
