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

namespace kvwise {

// Per-query-head raw scores of every slot of a KV head; the pipeline reduces them over the GQA group
// and pools them along the token axis. Larger = keep.
class TokenScorer {
 public:
  virtual ~TokenScorer() = default;
  virtual std::string name() const = 0;
  // Statistics needed while prefilling (decode = false) and while decoding (decode = true).
  virtual void add_taps(TapConfig& cfg, bool decode) const = 0;
  virtual void score(const HeadTaps& taps, int layer, int q_head, int len, bool decode, std::span<float> out) const = 0;
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
