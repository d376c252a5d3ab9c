// Continuous batching: one thread owns the engine; requests are admitted while the batch and the KV
// memory allow, prefilled in chunks interleaved with the decode steps of running sequences, and every
// step's tokens of all sequences go through one forward pass (shared GEMMs). A cancelled request's
// sequence is freed at the next step.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "compress/pipeline.h"
#include "model/forward.h"
#include "model/sampler.h"
#include "serve/live_prefix_cache.h"

namespace kvwise {

// A token's log-probability under the distribution it was generated (or read) from, and the most
// likely tokens of that distribution.
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  bool has_logprob = true;  // false for the first prompt token (nothing predicts it)
  std::vector<std::pair<int32_t, float>> top;
};

struct Completion {
  std::vector<int32_t> tokens;
  std::vector<int32_t> prompt;
  std::vector<TokenLogprob> logprobs;         // per generated token (ServeRequest::logprobs >= 0)
  std::vector<TokenLogprob> prompt_logprobs;  // per prompt token (ServeRequest::prompt_logprobs)
  std::string text;
  std::string finish_reason;  // stop | length | cancelled | error
  std::string error;
  int prompt_tokens = 0;
  int cached_tokens = 0;           // prompt tokens loaded from the prefix cache instead of computed
  double queue_seconds = 0;        // submit -> admitted
  double ttft_seconds = 0;         // submit -> first token
  double seconds = 0;              // submit -> done
  size_t kv_bytes_peak = 0;        // hot KV bytes of the sequence after prefill (compression included)
  double compression_seconds = 0;  // the policy's scoring, budgeting and selection
};

struct ServeRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 16;      // 0 only with prompt_logprobs (scoring a text, as lm-eval-harness does)
  bool ignore_eos = false;  // generate max_tokens tokens even past end-of-generation (benchmarks)
  int logprobs = -1;        // >= 0: each generated token's logprob and its `logprobs` likeliest alternatives
  // The prompt tokens' logprobs (OpenAI's echo): the whole prompt is computed (no prefix-cache blocks).
  bool prompt_logprobs = false;
  SamplerParams sampling;
  std::shared_ptr<const KvPolicy> policy;  // null or full: no compression
  // Generation ends before the first occurrence of any of these (not included in the text). Text
  // that could still become a stop string is held back from on_token until it cannot.
  std::vector<std::string> stop;
  std::string cache_salt;   // isolates a tenant's prefix blocks from everyone else's
  std::string kv_category;  // workload category for the WA eviction policy (empty: inferred)
  // Run on the scheduler thread; keep them short. on_token gets each token and the text it makes final
  // (token -1: text held back for a stop string, released when the request ends).
  std::function<void(int32_t token, const std::string& piece)> on_token;
  std::function<void(const Completion&)> on_done;
};

struct SchedulerOptions {
  int max_batch = 8;                              // running sequences
  int max_queue = 64;                             // requests waiting for a busy batch; more are refused
  int prefill_chunk = 256;                        // prompt tokens per step over all prefilling sequences
  size_t max_kv_bytes = 0;                        // admission limit on hot KV bytes (0: none)
  std::shared_ptr<LivePrefixCache> prefix_cache;  // null: every prompt is computed in full
};

struct SchedulerStats {
  int queued = 0, running = 0;
  long requests = 0, completed = 0, cancelled = 0, failed = 0, rejected = 0;
  long prompt_tokens = 0, generated_tokens = 0;
  long steps = 0;
  size_t kv_bytes = 0;  // hot KV bytes of all sequences (pages, segments, exact rows) after the last step or finish
  double compression_seconds = 0;
};

class QueueFull : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Scheduler {
 public:
  Scheduler(Engine& engine, const SchedulerOptions& options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Validates and enqueues; throws kvwise::Error for a bad request, QueueFull when the queue is full.
  uint64_t submit(ServeRequest request);
  // The request ends with finish_reason "cancelled" and its sequence is freed at the next step.
  void cancel(uint64_t id);
  SchedulerStats stats() const;
  const LivePrefixCache* prefix_cache() const { return opt_.prefix_cache.get(); }
  void wait_idle();  // until nothing is queued or running

 private:
  struct Active;
  void run();
  void step(std::vector<std::shared_ptr<Active>>& running);
  void score_prompt(Active& a, const float* rows, size_t n);
  void advance(Active& a, const float* logits, size_t prefill_len);
  void admit_cached_prefix(Active& a);
  void finish(Active& a, const std::string& reason, const std::string& error = {});
  void refresh_kv_bytes();

  Engine& engine_;
  SchedulerOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::shared_ptr<Active>> queue_;
  std::map<uint64_t, std::shared_ptr<Active>> live_;  // queued or running, by id
  SchedulerStats stats_;
  uint64_t next_id_ = 1;
  bool stop_ = false;
  int running_count_ = 0;
  std::thread thread_;
};

}  // namespace kvwise
