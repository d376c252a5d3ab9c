// BaKlaVa (kv-algorithms §9): a one-time profile of per-KV-head importance, turned into static
// per-head budget weights. The profile file is JSON:
//   {"model": ..., "n_layers": L, "n_kv_heads": H, "theta": t, "head_importance": [[...]...],
//    "layer_importance": [...], "weights": [[...]...]}
// weights[l][h] = (head_importance * layer_importance)^theta, normalised to mean 1; theta = 0 is the
// uniform allocation. The importance statistics follow the [R]-tagged realisation of the spec (value
// vs attention-output cosine per head, input vs output cosine per layer) and are configurable only
// through theta; see docs/compression.md.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/forward.h"

namespace kvwise {

struct BaklavaProfile {
  std::string model;
  int n_layers = 0, n_kv_heads = 0;
  double theta = 1.0;
  int tokens = 0;                                    // profiled tokens
  std::vector<std::vector<double>> head_importance;  // [layer][kv head], 1 - mean cos(v, o)
  std::vector<double> layer_importance;              // [layer], 1 - mean cos(x_in, x_out)
  std::vector<std::vector<double>> weights;          // [layer][kv head], mean 1

  void set_theta(double theta);  // recomputes weights
  void save(const std::string& path) const;
  static BaklavaProfile load(const std::string& path);
};

// Collects the importance statistics of one sequence while it is prefilled (attach it with
// Engine::observe before the prompt runs). Does not change the KV cache.
class BaklavaProfiler : public SequenceObserver {
 public:
  explicit BaklavaProfiler(const ModelConfig& config);
  void after_attention(KvStore& kv, SeqId seq, const Attention& a) override;
  void on_hidden(SeqId seq, int layer, const float* x, int64_t dim, int T) override;
  // Importances averaged over everything observed so far.
  BaklavaProfile profile(const std::string& model_name, double theta) const;

 private:
  ModelConfig c_;
  std::vector<double> head_cos_sum_;  // [layer * n_kv + h]
  std::vector<double> layer_cos_sum_;
  std::vector<float> prev_hidden_;
  long head_count_ = 0, layer_rows_ = 0;
};

}  // namespace kvwise
