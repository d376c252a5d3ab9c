// Hyper-parameters of a model read from GGUF metadata: the part every family shares (dimensions,
// heads, RoPE) and the traits that differ between families (norm placement, activation, soft-capping,
// sliding-window layers), which the family's own file under src/model/arch/ sets.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "kv/rope.h"
#include "model/gguf.h"

namespace kvwise {

enum class Activation { Silu, GeluTanh };  // of the gate in a gated FFN: SwiGLU or GeGLU

// RoPE frequency scaling beyond the per-layer base and linear factor.
enum class RopeScaling {
  None,
  Llama3,    // per-dimension factors (Llama 3.1+): the rope_freqs tensor, or computed from the metadata
  Yarn,      // YaRN: frequencies ramped between interpolation and extrapolation, cos/sin scaled
  LongRope,  // Phi-3: rope_factors_long / rope_factors_short tensors and an attention factor
};

// What differs between layers of one model (interleaved sliding-window and global layers).
struct LayerAttention {
  int window = 0;                // a query at p sees keys at p - window < pos <= p; 0: every earlier key
  float rope_base = 10000.0f;    // RoPE base of this layer
  float rope_freq_scale = 1.0f;  // linear scaling: positions are multiplied by this (1 / factor)
};

struct ModelConfig {
  std::string arch;    // general.architecture
  std::string family;  // the architecture file that runs it (src/model/arch/<family>.cpp)
  std::string name;
  int n_vocab = 0;
  int dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int ffn_dim = 0;
  int ctx_len = 0;
  int n_rot = 0;  // rotary dimensions per head (<= head_dim)
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_linear_factor = 1.0f;  // positions are divided by this (linear RoPE scaling) on global layers
  RopeType rope_type = RopeType::Normal;

  // Family traits.
  bool qkv_bias = false;       // biases on Q, K and V (qwen2)
  bool qk_norm = false;        // per-head RMSNorm of Q and K before RoPE (qwen3, gemma3)
  bool post_norms = false;     // RMSNorm of the attention and FFN outputs before each residual add (gemma2/3)
  float embed_scale = 1.0f;    // token embeddings are multiplied by this (gemma: sqrt(dim))
  float attn_scale = 0.0f;     // scale of q.k; 0 means 1 / sqrt(head_dim)
  float attn_softcap = 0.0f;   // scores become cap * tanh(score / cap) (gemma2); 0: none
  float final_softcap = 0.0f;  // the same on the logits
  Activation ffn_act = Activation::Silu;

  RopeScaling rope_scaling = RopeScaling::None;
  int rope_orig_ctx = 0;             // the context the model was trained with before scaling
  float rope_scaling_factor = 1.0f;  // Llama3 / YaRN factor
  float llama3_low_freq = 1.0f, llama3_high_freq = 4.0f;
  float yarn_beta_fast = 32.0f, yarn_beta_slow = 1.0f;
  float rope_attn_factor = 1.0f;  // cos/sin multiplied by this (LongRope; YaRN multiplies its own mscale in)

  std::vector<LayerAttention> layers;  // n_layers entries

  static ModelConfig from_gguf(const GgufFile& f);
  float query_scale() const;
  bool has_window_layers() const;
  // K and V bytes the store holds for a sequence of `tokens` (sliding-window layers hold at most their
  // window plus two pages of `page_tokens`, see Engine::layer_slot_bound).
  size_t kv_bytes_for(int64_t tokens, size_t element_bytes, int page_tokens = 32) const;
  // K and V bytes of one token over all layers and KV heads for a KV element size.
  size_t kv_bytes_per_token(size_t element_bytes) const {
    return 2 * static_cast<size_t>(n_layers) * static_cast<size_t>(n_kv_heads) * static_cast<size_t>(head_dim) *
           element_bytes;
  }
};

// The common hyper-parameters under "<arch>." (dimensions, heads, RoPE base and linear scaling); the
// family files start from it.
ModelConfig read_common_config(const GgufFile& f);

}  // namespace kvwise
