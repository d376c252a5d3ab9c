// SpeCache (kv-algorithms §11) on CPU: the full F16 KV of a sequence lives in a cold tier (a file read
// with pread, or a separate host pool); the hot tier keeps a low-bit copy of every token (the first
// low-precision segment of each head), the recent residual in the pages, and the exact F16 pairs of
// the current top-k slots per KV head. Every decode step also runs a speculative next token
// (Engine::decode); its attention over the low-bit copy picks the top-k pairs each layer needs at the
// next step, which a background thread reads from the cold tier while the step computes.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/thread_pool.h"
#include "kv/kv_store.h"

namespace kvwise {

struct SpeCacheConfig {
  QuantFormat low{KvPrecision::Int2, KvPrecision::Int2, true, 64};
  int residual = 64;  // recent tokens kept exact in the pages
  int top_k = 64;     // exact pairs per KV head per layer
  bool cold_in_file = true;
  // The cold-tier file is created (O_EXCL|O_NOFOLLOW) in a fresh mode-0700 directory inside `dir`, or
  // in the process's private directory under $TMPDIR (or /tmp) when dir is empty.
  std::string dir;
  std::string path;  // an exact file the CLI user names instead (tests: /dev/full); never from a request
  // Read the prefetch on a background thread overlapped with compute (the method), or synchronously at
  // the end of each layer, split over the engine's threads (on a machine whose cores the compute
  // already fills, a third thread only takes turns with them). Auto: the thread when the machine has a
  // core beyond the engine's threads.
  enum class Prefetch { Auto, Thread, Sync };
  Prefetch prefetch = Prefetch::Auto;
  // The hit rate needs the real token's own top-k, a second selection per head: measured on every
  // hit_every-th step (1 = all).
  int hit_every = 8;
};

// The full-precision copy of one sequence: row pair i of (layer, head) = the i-th token that head
// stores, in the order tokens enter its low-bit segment. File: one region of max_tokens pairs per
// (layer, head), sparse until written. Errors (disk full, file removed) throw kvwise::Error.
class ColdTier {
 public:
  ColdTier(const SpeCacheConfig& cfg, int n_layers, int n_kv_heads, size_t row_bytes, int max_tokens);
  ~ColdTier();
  ColdTier(const ColdTier&) = delete;
  ColdTier& operator=(const ColdTier&) = delete;

  // Rows index0 .. index0 + n - 1 of (layer, head): n K rows and n V rows (one write call).
  void write(int layer, int head, int index0, int n, const uint8_t* k, const uint8_t* v);
  // Reads the pairs of ascending indices into k and v (row_bytes each per index); adjacent indices
  // are read with one call.
  void read(int layer, int head, std::span<const int> indices, uint8_t* k, uint8_t* v);
  void check_present() const;  // throws if the file was removed
  size_t bytes() const { return written_ * 2 * row_bytes_; }
  size_t bytes_read() const { return read_bytes_; }
  const std::string& path() const { return path_; }

 private:
  size_t offset(int layer, int head, int index) const;
  int n_kv_;
  size_t row_bytes_;
  int max_tokens_;
  std::string path_;
  std::string own_dir_;  // a private directory made inside SpeCacheConfig::dir, removed with the tier
  int fd_ = -1;
  bool remove_ = false;
  std::vector<std::vector<uint8_t>> memory_;  // host-pool tier: per (layer, head) pairs
  size_t written_ = 0;
  std::atomic<size_t> read_bytes_{0};
  mutable std::mutex mu_;
};

struct SpeCacheStats {
  long guesses = 0, guess_hits = 0;  // speculative tokens that equalled the real next token
  double overlap_sum = 0;            // prefetched-set overlap with the real token's top-k, summed
  long overlap_count = 0;            // (layer, head, step) samples
  size_t cold_bytes = 0, cold_bytes_read = 0;
  int steps = 0;                 // two-token decode steps
  long inline_reads = 0;         // prefetches the main thread read itself (the worker had not started)
  bool thread_prefetch = false;  // whether the background thread read the prefetches (prefetch=auto decides)
  double hit_rate() const { return overlap_count ? overlap_sum / static_cast<double>(overlap_count) : 0.0; }
};

class SpeCache {
 public:
  SpeCache(const SpeCacheConfig& cfg, const KvLayout& layout, int max_tokens);
  ~SpeCache();

  // Writes the head's tokens that the cold tier does not hold yet (call before they are demoted).
  void capture(KvStore& kv, SeqId seq, int layer);
  // After the layer's attention and demotion: measures the overlap (two-token steps) and queues the
  // prefetch of the next step's top-k from the last query row. The KV heads' selections (and, without
  // the prefetch thread, their reads) run as tasks of `pool` when one is given.
  void after_layer(KvStore& kv, SeqId seq, int layer, int T, int speculative, ThreadPool* pool = nullptr);
  // Before the layer's next attention: waits for its prefetch and installs the exact rows.
  void install(KvStore& kv, SeqId seq, int layer);
  void on_guess(bool hit);
  const SpeCacheStats& stats();

 private:
  struct Job {
    std::vector<std::vector<int>> slots;  // per head
    std::vector<std::vector<uint8_t>> k, v;
    bool queued = false, reading = false, done = false;
    long gen = 0;  // which queueing the worker's result belongs to
  };
  void worker();
  // Whether this step's prefetch goes to the background thread (started on first use).
  bool use_thread(const ThreadPool* pool);
  // Reads a job's pairs from the cold tier (worker thread, or the main thread when it gets there first).
  void read_job(int layer, const std::vector<std::vector<int>>& slots, std::vector<std::vector<uint8_t>>& k,
                std::vector<std::vector<uint8_t>>& v);
  // The top-k slots of head h for the next step (pick) and, on sampled steps, the overlap of the real
  // token's own top-k with the set prefetched for it (overlap; left alone otherwise).
  void select_head(const KvStore& kv, SeqId seq, int layer, int h, int G, int T, int speculative,
                   std::vector<int>& pick, double& overlap) const;
  void read_head(int layer, int head, const std::vector<int>& slots, std::vector<uint8_t>& k, std::vector<uint8_t>& v);

  SpeCacheConfig cfg_;
  KvLayout layout_;
  ColdTier cold_;
  std::vector<std::vector<int>> written_;  // [layer][head] pairs in the cold tier
  std::vector<std::vector<int>> seen_;     // [layer][head] segment size when the last query row was taken
  std::vector<Job> jobs_;                  // per layer
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> queue_;
  long gen_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
  SpeCacheStats stats_;
};

}  // namespace kvwise
