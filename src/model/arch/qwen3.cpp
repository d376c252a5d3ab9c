// Qwen3 (dense): the llama block without biases, a per-head RMSNorm on Q and K before RoPE, neox RoPE,
// and heads wider than dim / n_heads (attention.key_length).
#include "model/arch.h"

namespace kvwise {

KVWISE_ARCH(qwen3) {
  registry.add({.name = "qwen3",
                .gguf_names = {"qwen3"},
                .summary = "llama block with per-head Q/K RMSNorm, neox RoPE",
                .configure =
                    [](const GgufFile&, ModelConfig& c) {
                      c.rope_type = RopeType::Neox;
                      c.qk_norm = true;
                    },
                .bind_layer =
                    [](TensorBinder& b, const ModelConfig& c, int layer, LayerWeights& L) {
                      bind_llama_layer(b, c, layer, L);
                      bind_qk_norms(b, c, layer, L);
                    }});
}

}  // namespace kvwise
