// A KV compression policy (one choice per stage) and the per-sequence compressor that runs it:
// after each layer's final prefill chunk it scores, budgets and selects that layer's tokens (CAKE
// re-budgets every layer seen so far), and after each decode step it applies the decode policy. Pages
// of dropped tokens go back to the pool at once.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "compress/budget.h"
#include "compress/gate.h"
#include "compress/method.h"
#include "compress/reconstruction.h"
#include "compress/select.h"
#include "compress/specache.h"
#include "compress/stages.h"
#include "kv/rope.h"
#include "model/forward.h"

namespace kvwise {

struct KvPolicy {
  std::string spec;  // canonical spec (policy_spec.h grammar)
  std::string name;  // top-level policy name
  Budget budget;
  bool full = false;  // no compression at all

  // Always-kept regions of each head.
  int sinks = 0;
  int window = 0;                // last tokens kept (the observation window for window scorers)
  double window_fraction = 0;    // > 0: window = ceil(fraction * capacity) (H2O's recent share)
  bool window_fills = false;     // window = capacity - sinks (StreamingLLM)
  bool window_explicit = false;  // the window was given by the user: a window longer than the prompt is an error

  // How per-query-head scores become one vector per KV head.
  Pooling pooling = Pooling::None;
  int kernel = 1;
  GroupReduce reduce = GroupReduce::Mean;
  bool pool_first = false;  // pool each query head, then reduce (kvpress) instead of reduce then pool
  Pooling decode_pooling = Pooling::None;
  int decode_kernel = 1;
  bool rerotate = false;  // StreamingLLM: move kept keys to cache-relative positions

  // Every KV head of a layer keeps the same slots, by the mean of the heads' candidate scores
  // (TOVA's and ChunkKV's layer-level selection).
  bool share_heads = false;
  // False: the prompt is kept whole and only the decode policy compresses (decoding(X, prefill=0)).
  bool compress_prefill = true;
  // Whether the policy reads the budget (set from the method's registration, compositions inherit).
  BudgetUse budget_use = BudgetUse::Required;
  bool needs_budget() const { return !full && budget_use == BudgetUse::Required; }
  bool reads_budget() const { return !full && budget_use != BudgetUse::Ignored; }

  std::shared_ptr<const TokenScorer> scorer;
  std::shared_ptr<const LayerBudgeter> layers;
  std::shared_ptr<const HeadBudgeter> heads;
  std::shared_ptr<const Disposition> disposition;
  std::shared_ptr<const DecodePolicy> decode;

  // Low precision (issue 5).
  int residual = -1;     // >= 0: uniform quantisation keeps this many recent tokens exact; the budget is ignored
  bool balance = false;  // MiKV's key balancer: record per-channel query maxima while prefilling
  std::shared_ptr<const SpeCacheConfig> specache;  // offload with speculative prefetch
  // KVzip: the prompt is compressed only after a context-reconstruction pass has scored it.
  std::shared_ptr<const ReconstructionConfig> reconstruction;
  // Attention-Gate (issue 6): learned per-token keep/evict flags; the budget, when given, is a hard cap.
  std::shared_ptr<const GateConfig> gate;

  // The policy's prefill statistics need every prompt token's own forward pass (H2O's column sums
  // over all queries, the gate's scores of each token's hidden state), so a prompt whose prefix is in
  // the prefix cache must still be computed in full to give the same answer. Window scorers
  // (SnapKV, PyramidKV, Ada-KV, CAKE, SAGE-KV), position rules and quantisation only need the
  // observation window, which is always computed.
  bool needs_every_prompt_query = false;

  // A budget below the whole prompt was given (Budget{} is a ratio of 1: no cap).
  bool capped() const { return budget.tokens > 0 || budget.ratio < 1.0; }
  // "full", "all" (keeps every token: uniform quantisation, SpeCache) or the budget.
  std::string budget_label() const {
    if (full) return "full";
    if (residual >= 0) return "all";
    if (gate && !capped()) return "gate";
    return budget.to_string();
  }
};

// What a policy means for one prompt: capacity and protected regions per head. Throws on a bad
// combination (window longer than the prompt, budget smaller than the protected tokens).
struct SequenceShape {
  int prompt = 0;
  int capacity = 0;  // tokens per KV head on average, protected ones included
  int sinks = 0, window = 0;
  int mean = 0;        // non-protected tokens per head on average
  int candidates = 0;  // non-protected tokens before compression
  bool compress = false;
};
SequenceShape sequence_shape(const KvPolicy& policy, int prompt_tokens);

struct CompressionReport {
  std::string policy;
  SequenceShape shape;
  std::vector<int> layer_budget;                              // non-protected tokens per head on average, per layer
  std::vector<size_t> layer_bytes_before, layer_bytes_after;  // hot KV bytes around prefill compression
  std::vector<std::vector<int>> head_tokens;                  // [layer][kv head] after prefill
  std::vector<std::vector<size_t>> head_bytes;                // [layer][kv head] after prefill
  size_t bytes_before = 0, bytes_after = 0;
  double prefill_seconds = 0;  // scoring + budgeting + selection + page release after prefill
  double decode_seconds = 0;   // the same during decode
  int decode_steps = 0;
  long decode_evicted = 0;  // tokens dropped (or demoted) during decode (all heads)
  bool specache = false;
  SpeCacheStats spec;  // SpeCache only
  // Attention-Gate only: the gate's own K/V cache, its threshold, tokens it evicted, time it took.
  size_t gate_cache_bytes = 0;
  double gate_rate = -1;
  long gate_evicted = 0;
  double gate_seconds = 0;
};

class KvCompressor : public SequenceObserver {
 public:
  // prompt_begin: the sequence's first prompt position (0 unless it continues cached tokens).
  // max_tokens: the engine's context (sizes SpeCache's cold tier).
  KvCompressor(std::shared_ptr<const KvPolicy> policy, const KvLayout& layout, int32_t prompt_begin, int prompt_tokens,
               RopeInfo rope, int max_tokens = 0);

  // The taps the policy needs while prefilling (enable them on the sequence before the prompt runs).
  TapConfig prefill_taps() const;
  // Sliding-window layers (non-zero entries): the policy leaves them alone, since the engine already
  // keeps only their window; budgets are computed as for any model and applied to the global layers.
  void set_window_layers(std::vector<char> window_layers) { window_layers_ = std::move(window_layers); }

  void after_attention(KvStore& kv, SeqId seq, const Attention& a) override;
  void after_forward(KvStore& kv, SeqId seq) override;
  void before_attention(KvStore& kv, SeqId seq, int layer) override;
  bool speculative() const override { return spec_ != nullptr && prefill_done_; }
  void on_guess(bool hit) override;
  void on_hidden(SeqId seq, int layer, const float* x, int64_t dim, int T) override;
  void on_tokens(SeqId seq, std::span<const int32_t> tokens, int32_t first_pos) override;
  std::vector<int32_t> scoring_pass(KvStore& kv, SeqId seq) override;
  // KVzip: the tokenized text that precedes the repeated context (attach_policy tokenizes it); ignored
  // when the prompt is short enough to need no compression.
  void set_reconstruction_prompt(std::vector<int32_t> tokens);
  // CriticalKV: where the layer's W_o comes from as floats (attach_policy reads the model's).
  using OutputProjectionSource = std::function<std::vector<float>(int layer, int64_t& rows, int64_t& cols)>;
  void set_output_projection(OutputProjectionSource source);
  // Attention-Gate policies: the gate model (attach_policy loads it next to the model).
  void set_gate(std::shared_ptr<const GateModel> gate);

  const CompressionReport& report() const { return report_; }
  const SequenceShape& shape() const { return shape_; }
  bool prefill_done() const { return prefill_done_; }
  const HeadPlan& plan(int layer, int head) const { return plans_[static_cast<size_t>(layer * n_kv_ + head)]; }

 private:
  void prefill_layer(KvStore& kv, SeqId seq, int layer);
  void apply_layer_budget(KvStore& kv, SeqId seq, int layer, int budget);
  void decode_layer(KvStore& kv, SeqId seq, int layer);
  // Reduced and pooled scores of slots [lo, hi) of one KV head.
  // `budget`: the candidates the head is expected to keep (for scorers whose rule depends on it).
  std::vector<float> candidate_scores(const KvStore& kv, SeqId seq, int layer, int head, bool decode, int lo, int hi,
                                      int budget);
  // share_heads policies: every head of the layer gets the heads' mean scores (equal lengths only).
  void share_across_heads(std::vector<std::vector<float>>& scores);
  void accumulate_queries(const Attention& a);
  const OutputProjection* output_projection(int layer);
  void rerotate(KvStore& kv, SeqId seq);
  // From the prefill statistics to the decode-time ones (once the prompt is compressed).
  void switch_taps(KvStore& kv, SeqId seq);
  void gate_layer(KvStore& kv, SeqId seq, int layer, int32_t last_pos);

  std::shared_ptr<const KvPolicy> policy_;
  KvLayout layout_;
  int n_kv_, group_;
  int32_t prompt_end_;
  RopeInfo rope_;
  std::vector<char> window_layers_;
  void report_window_layers(KvStore& kv, SeqId seq);
  bool window_layer(int layer) const {
    return static_cast<size_t>(layer) < window_layers_.size() && window_layers_[static_cast<size_t>(layer)] != 0;
  }
  SequenceShape shape_;
  std::vector<HeadPlan> plans_;
  std::vector<double> preference_;
  // Pooled candidate scores of each (layer, head), computed once at the layer's prefill and gathered
  // along with the kept tokens, so CAKE's later cascade rounds re-select from the same scores.
  std::vector<std::vector<float>> prefill_scores_;
  std::vector<int> static_budgets_;
  bool prefill_done_ = false, taps_switched_ = false;
  int step_ = 0;
  CompressionReport report_;
  std::unique_ptr<SpeCache> spec_;
  // Attention-Gate: per-sequence gate cache, scores by position [layer * n_kv + head][pos - begin],
  // thresholds per (layer, head), hidden rows seen per layer.
  std::unique_ptr<GateState> gate_;
  std::vector<std::vector<float>> gate_scores_;
  std::vector<float> gate_threshold_;
  std::vector<int> gate_seen_;
  int32_t prompt_begin_ = 0;
  // Expected Attention: pre-RoPE query moments per (layer, query head), from the prompt.
  std::vector<QueryStats> qstats_;
  // KVzip: the reconstruction pass and the layers that have seen the prompt's end.
  std::unique_ptr<ReconstructionPass> recon_;
  int recon_layers_ = 0;
  // CriticalKV: the current layer's W_o.
  OutputProjectionSource wo_source_;
  int wo_layer_ = -1;
  std::vector<float> wo_;
  OutputProjection wo_view_;
};

// The gate file of a `gate` policy: its file=, else <model>.gate.gguf beside the model.
std::string gate_file(const KvPolicy& policy, const std::string& model_path);

// Builds a compressor for a sequence about to prefill `prompt_tokens` tokens, enables its taps and
// attaches it to the engine. Returns null for `full` (nothing to do, nothing attached).
std::shared_ptr<KvCompressor> attach_policy(Engine& engine, SeqId seq, std::shared_ptr<const KvPolicy> policy,
                                            int prompt_tokens);

}  // namespace kvwise
