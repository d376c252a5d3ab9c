// Pieces shared by the subcommands: model/data-dir options, engine options, memory readings.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "compress/registry.h"
#include "model/forward.h"
#include "prefix/routing.h"

namespace kvwise::cli {

struct ModelOptions {
  std::string model;  // empty: the bundled model (resolve_model_path)
  std::string data_dir;
  int threads = 0;  // 0: usable_cores()
  std::string kv_type = "f16";
  int ctx = 0;
  int page_tokens = 32;
  int prefill_chunk = 512;
  // llama.cpp's spellings: -ctk/-ctv (K and V share one type here) and -fa (always on here).
  std::string cache_type_k, cache_type_v;
  std::string flash_attn;
  const CLI::Option* flash_attn_option = nullptr;  // given at least once: noted, then ignored
  bool flash_attn_given() const { return flash_attn_option != nullptr && flash_attn_option->count() > 0; }
};

void add_model_options(CLI::App& app, ModelOptions& o);

// --kv-policy SPEC --kv-budget B (compress/registry.h lists the policies).
struct PolicyOptions {
  std::string spec = "full";
  std::string budget;
};
void add_policy_options(CLI::App& app, PolicyOptions& o);
std::shared_ptr<const KvPolicy> resolve_policy(const PolicyOptions& o);
std::string describe(const CompressionReport& r, size_t bytes_per_token);
nlohmann::json to_json(const CompressionReport& r);
// -m, else the bundled model: $KVWISE_MODEL, else share/kvwise/ beside an installed binary, else
// models/ of the source tree the binary was built from (base/data_dir.h: bundled_file).
std::string resolve_model_path(const ModelOptions& o);
std::string bundled_model_path();
inline constexpr const char* kBundledModelName = "kvwise-retrieval.gguf";
EngineOptions engine_options(const ModelOptions& o);
std::string kv_type_of(const ModelOptions& o);  // --kv-type, or -ctk/-ctv when given
int default_threads();

// A text file with the documents' separator lines ("<|endoftext|>") removed: documents joined by
// newlines (evaluation text must not contain the separator spelled out as characters).
std::string read_corpus(const std::string& path);
std::string read_text_file(const std::string& path);  // whole, or an error naming the path
std::string default_corpus(const ModelOptions& o);    // the TinyStories sample under the data directory

// The machine's memory, or less when a cgroup limits this process (cgroup v2 memory.max, v1 limit).
size_t machine_memory_bytes();
// An online prefix-cache eviction policy name (prefix/eviction_policy.h), or an error listing them.
void check_eviction_name(const std::string& name);

// Resident set size of this process in bytes (from /proc/self/status).
size_t resident_bytes();
std::string human_bytes(double bytes);
bool stdout_is_tty();
// A Markdown table with columns padded to their widest cell; numeric columns (right[i]) right-aligned.
std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                           const std::vector<bool>& right = {});

void add_demo(CLI::App& app);
void add_report(CLI::App& app);
void add_policies(CLI::App& app);
void add_generate(CLI::App& app);
void add_perplexity(CLI::App& app);
void add_bench(CLI::App& app);
void add_model_tools(CLI::App& app);
void add_sim(CLI::App& app);
void add_eval(CLI::App& app);
void add_profile(CLI::App& app);
void add_serve(CLI::App& app);
void add_route(CLI::App& app);
// Calls serve() (which blocks) and calls stop() from another thread on SIGINT/SIGTERM. A handler
// (not a blocked mask: OpenBLAS starts threads before main, and any of them may get the signal)
// writes to a pipe that a thread waits on. Install before anything slow, so that a signal during
// start-up is not lost: the handler is set at the first call of install_stop_signals().
void install_stop_signals();
void serve_until_signal(const std::function<void()>& serve, const std::function<void()>& stop);
// --prefix-min-match, --balance-abs, --balance-rel of prefix routing (kvwise route and sim).
void add_prefix_routing_options(CLI::App& app, prefix::RoutingOptions& o);
void add_loadgen(CLI::App& app);

}  // namespace kvwise::cli
