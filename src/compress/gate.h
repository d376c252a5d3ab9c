// Attention-Gate (kv-algorithms §12): a small causal attention module before each layer reads the
// layer's input hidden states and emits a retention score s in (0, 1) per token and KV head; tokens
// whose score falls below a threshold are evicted from that head's cache. The gate weights live in a
// side GGUF (`<model>.gate.gguf`, written by tools/train/train_gate.py) so the model file itself
// stays loadable by llama.cpp.
//
//   xn = x / rms(x)                               (parameter-free RMS norm of the residual stream)
//   Qg, Kg, Vg = xn Wq, xn Wk, xn Wv              (h_g gate heads of width d_g, no RoPE)
//   Og = causal_softmax(Qg Kg^T / sqrt(d_g)) Vg   (the gate keeps its own K/V cache of every token)
//   s  = sigmoid(Og Wo + b)                       (one score per KV head)
//
// A cache-free variant (kind "mlp", §12.1's "even smaller MLP") scores each token from its own
// hidden state: s = sigmoid(Wo silu(W1 xn + b1) + b). Deeper layers' hidden states already carry
// context, and the gate then costs no memory per token.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"

namespace kvwise {

// The `gate` policy's settings (registry: gate(rate=, sinks=, window=, file=)).
struct GateConfig {
  double rate = -1;  // target eviction rate via the calibrated thresholds; < 0: the paper's 0.5 (or 1 - budget)
  std::string file;  // empty: GateModel::default_path(model)
};

class GateModel {
 public:
  enum class Kind { Attention, Mlp };
  struct Layer {
    std::vector<float> wq, wk, wv;  // attention: [heads * head_dim][dim], row-major (out x in)
    std::vector<float> w1, b1;      // mlp: [head_dim][dim], [head_dim]
    std::vector<float> wo;          // [n_kv][heads * head_dim] (mlp: [n_kv][head_dim])
    std::vector<float> bo;          // [n_kv]
  };

  // Loads and validates a gate file against the model's shape; throws kvwise::Error with the reason.
  static std::shared_ptr<const GateModel> load(const std::string& path, const ModelConfig& model);
  // The same, cached by path for the life of the process (a server loads it once).
  static std::shared_ptr<const GateModel> load_cached(const std::string& path, const ModelConfig& model);
  // foo.gguf -> foo.gate.gguf beside it when that exists, else the bundled gate of that name
  // (models/stories260K.gate.gguf for any stories260K.gguf), else the side path (for the error).
  static std::string default_path(const std::string& model_path);

  int n_layers() const { return n_layers_; }
  int dim() const { return dim_; }
  int n_kv() const { return n_kv_; }
  Kind kind() const { return kind_; }
  int heads() const { return heads_; }  // 0 for the mlp kind
  int head_dim() const { return head_dim_; }
  const Layer& layer(int l) const { return layers_[static_cast<size_t>(l)]; }
  double trained_rate() const { return trained_rate_; }
  const std::string& path() const { return path_; }
  // The score below which a fraction `rate` of calibration tokens of (layer, head) fell; rate < 0
  // gives the paper's fixed threshold 0.5.
  float threshold(int layer, int head, double rate) const;

 private:
  // Throws unless the gate was trained for this model's shape.
  void check_shape(const ModelConfig& model) const;
  std::string path_;
  Kind kind_ = Kind::Attention;
  int n_layers_ = 0, dim_ = 0, n_kv_ = 0, heads_ = 0, head_dim_ = 0;
  double trained_rate_ = 0;
  std::vector<Layer> layers_;
  std::vector<std::vector<float>> quantiles_;  // [layer * n_kv + head][101]: score percentiles 0..100
};

// The gate's per-sequence state: its own K/V cache per layer.
class GateState {
 public:
  explicit GateState(std::shared_ptr<const GateModel> gate);
  // Appends T tokens (rows of the residual stream entering `layer`, `stride` floats apart) and writes
  // their scores: s[t * n_kv + h]. Each token attends to itself and every earlier token.
  void step(int layer, const float* x, int64_t stride, int T, float* s);
  size_t bytes() const;  // the gate's K/V cache (0 for the mlp kind)
  const GateModel& model() const { return *gate_; }

 private:
  std::shared_ptr<const GateModel> gate_;
  std::vector<std::vector<float>> k_, v_;  // [layer][token * heads * head_dim]
};

}  // namespace kvwise
