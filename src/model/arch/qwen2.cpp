// Qwen2 / Qwen2.5: the llama block with biases on Q, K and V and RoPE on halves (neox). Its
// sliding-window option is off in the released checkpoints and in llama.cpp, so every layer is global.
#include "model/arch.h"

namespace kvwise {

KVWISE_ARCH(qwen2) {
  registry.add({.name = "qwen2",
                .gguf_names = {"qwen2"},
                .summary = "llama block with Q/K/V biases, neox RoPE",
                .configure =
                    [](const GgufFile&, ModelConfig& c) {
                      c.rope_type = RopeType::Neox;
                      c.qkv_bias = true;
                    },
                .bind_layer =
                    [](TensorBinder& b, const ModelConfig& c, int layer, LayerWeights& L) {
                      bind_llama_layer(b, c, layer, L);
                      const std::string p = "blk." + std::to_string(layer) + ".";
                      L.bq = b.vec(p + "attn_q.bias", int64_t{c.n_heads} * c.head_dim);
                      L.bk = b.vec(p + "attn_k.bias", int64_t{c.n_kv_heads} * c.head_dim);
                      L.bv = b.vec(p + "attn_v.bias", int64_t{c.n_kv_heads} * c.head_dim);
                    }});
}

}  // namespace kvwise
