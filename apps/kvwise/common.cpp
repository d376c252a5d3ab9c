#include "common.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/data_dir.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "eval/perplexity.h"
#include "prefix/eviction_policy.h"

namespace kvwise::cli {

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model,
                 "GGUF model (default: the bundled kvwise-retrieval model, or $KVWISE_MODEL when set)");
  app.add_option("--data-dir", o.data_dir,
                 "shared data directory (default: $KVWISE_DATA, else ../shared beside the source tree)");
  app.add_option("-t,--threads", o.threads, "threads (0: the usable cores: CPU affinity mask and cgroup quota)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kv-type", o.kv_type, "KV cache element type: f16 or f32")->check(CLI::IsMember({"f16", "f32"}));
  app.add_option("--cache-type-k", o.cache_type_k, "llama.cpp's -ctk: the same as --kv-type (f16 or f32)");
  app.add_option("--cache-type-v", o.cache_type_v, "llama.cpp's -ctv: the same as --kv-type (f16 or f32)");
  app.add_option("-c,--ctx,--ctx-size", o.ctx, "context size in tokens (0: the model's)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--page-tokens", o.page_tokens, "tokens per KV page")->check(CLI::Range(1, 4096));
  app.add_option("--prefill-chunk", o.prefill_chunk, "tokens per prefill step")->check(CLI::Range(1, 1 << 20));
  o.flash_attn_option = app.add_option("--flash-attn", o.flash_attn,
                                       "llama.cpp's -fa [on|off|auto]: accepted and ignored (kvwise's attention is "
                                       "always one fused pass)")
                            ->expected(0, 1);
}

namespace {
int stop_pipe[2] = {-1, -1};
}  // namespace

void install_stop_signals() {
  if (stop_pipe[0] >= 0) return;
  KV_CHECK(pipe(stop_pipe) == 0, "cannot create a pipe");
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    const char c = 's';
    (void)!write(stop_pipe[1], &c, 1);
  };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void serve_until_signal(const std::function<void()>& serve, const std::function<void()>& stop) {
  install_stop_signals();
  std::thread waiter([&] {
    char c = 0;
    while (read(stop_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    stop();
  });
  serve();
  const char c = 'x';  // serve() may also end on its own: wake the waiter
  (void)!write(stop_pipe[1], &c, 1);
  waiter.join();
}

void add_prefix_routing_options(CLI::App& app, prefix::RoutingOptions& o) {
  app.add_option("--prefix-min-match", o.prefix_min_match,
                 "prefix routing: least share of the prompt's blocks an instance must hold to be preferred")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--balance-abs", o.balance_abs,
                 "prefix routing: requests in flight (max - min) beyond which load decides (with --balance-rel)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--balance-rel", o.balance_rel,
                 "prefix routing: max / min requests in flight beyond which load decides")
      ->check(CLI::Range(1.0, 1000.0));
}

void add_policy_options(CLI::App& app, PolicyOptions& o) {
  app.add_option("--kv-policy", o.spec,
                 "KV compression policy spec, e.g. snapkv, adakv(pyramidkv), h2o(recent=0.3):\n" + policy_help());
  app.add_option("--kv-budget", o.budget,
                 "KV budget per head: a ratio of the prompt (0.25, 25%) or tokens (256); window/sinks count inside");
}

std::shared_ptr<const KvPolicy> resolve_policy(const PolicyOptions& o) {
  auto p = make_policy(o.spec, o.budget.empty() ? Budget{} : Budget::parse(o.budget));
  // A budget that nothing reads is a mistake the user should hear about, not a silent no-op.
  KV_CHECK(!p->full || o.budget.empty(),
           "--kv-budget {} has no effect on the full cache: give a --kv-policy that evicts (snapkv, pyramidkv, ...)",
           o.budget);
  if (!o.budget.empty() && !p->full && !p->reads_budget())
    std::fprintf(stderr,
                 "kvwise: warning: --kv-policy %s keeps every token (in low precision) and ignores --kv-budget\n",
                 o.spec.c_str());
  // Uniform quantisation and SpeCache keep every token and the gate decides by itself; the policy
  // says whether it needs a budget.
  KV_CHECK(!p->needs_budget() || !o.budget.empty(),
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

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  KV_CHECK(in.good(), "{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  KV_CHECK(!in.bad(), "{}: read error", path);
  return ss.str();
}

std::string read_corpus(const std::string& path) {
  std::string out;
  for (const std::string& d : split_documents(read_text_file(path), "<|endoftext|>")) out += d + "\n";
  return out;
}

std::string default_corpus(const ModelOptions& o) {
  return resolve_data_dir(o.data_dir) + "/data/tinystories_valid_sample/tinystories_valid_first_stories.txt";
}

std::string bundled_model_path() {
  if (const char* env = std::getenv("KVWISE_MODEL"); env != nullptr && *env != '\0') return env;
  return bundled_file(kBundledModelName);
}

std::string resolve_model_path(const ModelOptions& o) {
  if (!o.model.empty()) return o.model;
  const std::string path = bundled_model_path();
  KV_CHECK(access(path.c_str(), R_OK) == 0,
           "no model given and the default (bundled) model {} is missing (pass -m MODEL or set KVWISE_MODEL)", path);
  return path;
}

int default_threads() {
  return usable_cores();  // the affinity mask and cgroup quota, not the host's core count
}

// -ctk/-ctv as llama.cpp users type them: only the types kvwise's paged store holds; quantized KV is a
// policy here, said so rather than ignored.
std::string kv_type_of(const ModelOptions& o) {
  std::string t = o.kv_type;
  for (const auto& [flag, v] : {std::pair{"-ctk", o.cache_type_k}, std::pair{"-ctv", o.cache_type_v}}) {
    if (v.empty()) continue;
    KV_CHECK(v == "f16" || v == "f32",
             "{} {}: kvwise's KV store holds f16 or f32; low-precision KV is a policy here: --kv-policy kv-int8 "
             "(or kv-int4, mikv(snapkv)) with --kv-budget",
             flag, v);
    t = v;
  }
  KV_CHECK(o.cache_type_k.empty() || o.cache_type_v.empty() || o.cache_type_k == o.cache_type_v,
           "-ctk {} and -ctv {} differ: kvwise keeps K and V in one type", o.cache_type_k, o.cache_type_v);
  return t;
}

EngineOptions engine_options(const ModelOptions& o) {
  if (o.flash_attn_given())
    std::fprintf(stderr,
                 "kvwise: note: -fa/--flash-attn is ignored: attention here is always computed in one fused pass "
                 "(online softmax over KV pages), there is nothing to switch\n");
  EngineOptions e;
  e.threads = o.threads > 0 ? o.threads : default_threads();
  // KVWISE_OVERSUBSCRIBE=1 runs every thread asked for (benchmarks of the pool's oversubscribed path).
  const char* over = std::getenv("KVWISE_OVERSUBSCRIBE");
  e.cap_threads_to_cores = over == nullptr || std::string(over) != "1";
  if (e.cap_threads_to_cores && e.threads > usable_cores()) {
    // More threads than the process may run at once add no throughput (the pool would run only
    // usable_cores() anyway): say so, and report the number that works.
    std::fprintf(
        stderr, "kvwise: note: -t %d is more than the %d usable cores (affinity mask, cgroup quota); %d threads work\n",
        e.threads, usable_cores(), usable_cores());
    e.threads = usable_cores();
  }
  e.kv_type = kv_type_of(o) == "f32" ? DType::F32 : DType::F16;
  e.ctx = o.ctx;
  e.page_tokens = o.page_tokens;
  e.prefill_chunk = o.prefill_chunk;
  return e;
}

size_t machine_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  size_t bytes = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : size_t{1} << 32;
  for (const char* limit : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream f(limit);
    unsigned long long v = 0;
    if (f >> v && v > 0 && v < bytes) bytes = static_cast<size_t>(v);  // "max" (no limit) fails to parse
  }
  return bytes;
}

void check_eviction_name(const std::string& name) {
  std::string known;
  for (const std::string& n : prefix::online_policy_names()) {
    if (n == name) return;
    known += (known.empty() ? "" : ", ") + n;
  }
  fail("--eviction {}: {} (online policies: {})", name,
       prefix::is_offline_policy(name) ? "an offline policy needs the future and exists only in kvwise sim"
                                       : "unknown policy",
       known);
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

namespace kvwise::cli {

std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                           const std::vector<bool>& right) {
  std::vector<size_t> w(header.size());
  for (size_t c = 0; c < header.size(); ++c) w[c] = header[c].size();
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], r[c].size());
  const auto line = [&](const std::vector<std::string>& cells) {
    std::string out = "|";
    for (size_t c = 0; c < w.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      const std::string pad(w[c] - std::min(w[c], cell.size()), ' ');
      out += " " + (c < right.size() && right[c] ? pad + cell : cell + pad) + " |";
    }
    return out + "\n";
  };
  std::string out = line(header) + "|";
  for (size_t c = 0; c < w.size(); ++c) out += std::string(w[c] + 2, '-') + "|";
  out += "\n";
  for (const auto& r : rows) out += line(r);
  return out;
}

}  // namespace kvwise::cli
