// The six stages of a per-request KV compression policy (DESIGN.md, kv-algorithms §14.1). A policy
// is one choice per stage; the pipeline (compress/pipeline.h) drives them over a sequence's KV lists.
//
//   statistics    TokenScorer::add_taps        which attention statistics the kernel records
//   layer budgets LayerBudgeter                how many non-protected tokens each layer keeps
//   head budgets  HeadBudgeter                 how a layer's budget splits over its KV heads
//   token scores  TokenScorer::score           which tokens inside a head
//   disposition   Disposition                  what happens to the losers (drop, demote to low bits)
//   decode policy DecodePolicy                 what happens as tokens are generated
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kv/kv_store.h"
#include "kv/rope.h"

namespace kvwise {

// A KV head's keys and values as floats (keys post-RoPE, as stored), read from the store on first use:
// the scorers that look at keys or values (Knorm, KeyDiff, Expected Attention, CriticalKV) share one
// copy per KV head. Not thread-safe (one scoring thread per head).
class HeadKv {
 public:
  HeadKv(const KvStore& kv, SeqId seq, int layer, int head);
  int len() const { return len_; }
  int head_dim() const { return dim_; }
  std::span<const float> keys() const;    // len x head_dim
  std::span<const float> values() const;  // len x head_dim

 private:
  void load() const;
  const KvStore& kv_;
  SeqId seq_;
  int layer_, head_, len_, dim_;
  mutable bool loaded_ = false;
  mutable std::vector<float> k_, v_;
};

// RoPE of the model, for scorers that reason about future query positions and for re-rotation.
struct RopeInfo {
  int head_dim = 0, n_rot = 0;
  RopeType type = RopeType::Normal;
  std::vector<float> inv_freq;  // every layer's, unless layer_inv_freq has them per layer
  float pos_scale = 1.0f;
  std::vector<std::vector<float>> layer_inv_freq;  // per layer (interleaved RoPE bases, e.g. Gemma 3)
  const float* freq(int layer) const {
    return layer_inv_freq.empty() ? inv_freq.data() : layer_inv_freq[static_cast<size_t>(layer)].data();
  }
};

// Running first and second moments of one query head's pre-RoPE queries over the prompt (sinks
// excluded), for Expected Attention.
struct QueryStats {
  long n = 0;
  std::vector<double> sum;    // head_dim
  std::vector<double> outer;  // head_dim x head_dim, sum of q q^T
};

// One layer's output projection W_o as floats (rows = model dim, cols = n_heads * head_dim), for
// CriticalKV's ||W_o v|| value weighting.
struct OutputProjection {
  const float* w = nullptr;
  int64_t rows = 0, cols = 0;
};

// What a token scorer may read while scoring one query head of a KV head. Everything is read-only.
struct ScoreContext {
  const HeadTaps& taps;
  const HeadKv& kv;
  int layer = 0;
  int q_head = 0;  // -1 in TokenScorer::rescore (the KV head as a whole)
  int kv_head = 0;
  int group = 1;  // query heads per KV head
  int len = 0;    // slots of the KV head
  bool decode = false;
  int cand_lo = 0, cand_hi = 0;  // the candidate slots (outside sinks and the recent window)
  int budget = 0;                // candidates the head is expected to keep (the layer's mean budget)
  int32_t prompt_end = 0;        // first position after the prompt
  const RopeInfo* rope = nullptr;
  const QueryStats* queries = nullptr;   // the q head's statistics (needs_query_stats)
  const OutputProjection* wo = nullptr;  // the layer's W_o (needs_output_projection)
  // KVzip: per slot, the largest attention a query of the context-reconstruction pass paid it (the
  // policy's reconstruction pass; empty otherwise).
  std::span<const float> reconstruction;
};

// Per-query-head raw scores of every slot of a KV head; the pipeline reduces them over the GQA group,
// pools them along the token axis, and hands the KV head's candidate scores to rescore(). Larger = keep.
class TokenScorer {
 public:
  virtual ~TokenScorer() = default;
  virtual std::string name() const = 0;
  // Statistics needed while prefilling (decode = false) and while decoding (decode = true).
  virtual void add_taps(TapConfig& cfg, bool decode) const = 0;
  virtual void score(const ScoreContext& c, std::span<float> out) const = 0;
  // A KV-head-level pass over the reduced and pooled candidate scores (slots cand_lo..cand_hi - 1):
  // chunk aggregation (ChunkKV), value weighting (CriticalKV). The default keeps them.
  virtual void rescore(const ScoreContext& /*c*/, std::span<float> /*candidates*/) const {}
  // Pre-RoPE query moments of the prompt (Expected Attention); the W_o of the layer (CriticalKV).
  virtual bool needs_query_stats() const { return false; }
  virtual bool needs_output_projection() const { return false; }
};

// Inputs a layer budgeter may use: per-layer preference values are filled for the layers seen so far
// when preferences() is true (CAKE).
struct LayerBudgetInput {
  int n_layers = 0;
  int mean = 0;                        // mean non-protected tokens per head per layer
  int candidates = 0;                  // non-protected tokens a head holds before compression
  std::span<const double> preference;  // layers 0..seen-1
};

class LayerBudgeter {
 public:
  virtual ~LayerBudgeter() = default;
  virtual std::string name() const = 0;
  // True when budgets depend on the layers' own attention (computed with preference()); such
  // budgeters re-budget all seen layers at every layer (CAKE's cascade) or once at the end.
  virtual bool adaptive() const { return false; }
  // Statistics the budgeter reads while prefilling (CAKE: window entropy).
  virtual void add_taps(TapConfig& /*cfg*/) const {}
  virtual bool cascade() const { return false; }
  virtual double preference(const KvStore& /*kv*/, SeqId /*seq*/, int /*layer*/, int /*window*/) const { return 1.0; }
  // Budgets of layers 0..seen-1 (seen = preference.size() for adaptive budgeters, n_layers otherwise).
  virtual std::vector<int> budgets(const LayerBudgetInput& in) const = 0;
};

class HeadBudgeter {
 public:
  virtual ~HeadBudgeter() = default;
  virtual std::string name() const = 0;
  // Splits a layer's mean per-head budget over its KV heads given each head's pooled candidate scores.
  virtual std::vector<int> split(int layer, int mean, std::span<const std::vector<float>> head_scores) const = 0;
};

class Disposition {
 public:
  virtual ~Disposition() = default;
  virtual std::string name() const = 0;
  // Applies a selection: `keep` (ascending slots) stay hot; the rest get this disposition. The last
  // `tail` slots are the protected recent window (always in keep).
  virtual void apply(KvStore& kv, SeqId seq, int layer, int head, std::span<const int> keep, int tail) const = 0;
};

// What a head looks like to the decode policy: its capacity and protected regions.
struct HeadPlan {
  int cap = 0;         // slots the head may hold after a step
  int sinks = 0;       // first slots always kept
  int window = 0;      // last slots always kept
  int static_len = 0;  // FIFO policies: leading slots that never leave (sinks + selected)
};

class DecodePolicy {
 public:
  virtual ~DecodePolicy() = default;
  virtual std::string name() const = 0;
  virtual bool needs_scores() const = 0;
  virtual bool due(int step) const = 0;  // step = decode steps so far (1 after the first)
  // Slots to keep after a step (ascending); keep everything by returning all slots.
  virtual std::vector<int> select(const HeadPlan& plan, int len, std::span<const float> scores) const = 0;
};

}  // namespace kvwise
