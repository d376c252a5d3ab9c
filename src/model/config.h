// Hyper-parameters of a llama-family model (llama, mistral, qwen2) read from GGUF metadata.
#pragma once
#include <cstddef>
#include <string>

#include "kv/rope.h"
#include "model/gguf.h"

namespace kvwise {

struct ModelConfig {
  std::string arch;
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
  float rope_linear_factor = 1.0f;  // positions are divided by this (linear RoPE scaling)
  RopeType rope_type = RopeType::Normal;
  bool qkv_bias = false;

  static ModelConfig from_gguf(const GgufFile& f);
  // K and V bytes of one token over all layers and KV heads for a KV element size.
  size_t kv_bytes_per_token(size_t element_bytes) const {
    return 2 * static_cast<size_t>(n_layers) * static_cast<size_t>(n_kv_heads) * static_cast<size_t>(head_dim) *
           element_bytes;
  }
};

}  // namespace kvwise
