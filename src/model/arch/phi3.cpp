// Phi-3 / Phi-3.5 / Phi-4-mini: fused QKV (attn_qkv) and fused gate/up (ffn_up, gate first), neox RoPE,
// LongRoPE factors (rope_factors_long / _short) with an attention factor when the file has them. The
// config's sliding window is ignored, as llama.cpp ignores it (its conversion does not describe which
// layers use it; llama.cpp PR 13676), so that both engines compute the same function.
#include "model/arch.h"

namespace kvwise {

namespace {

void bind_phi3_layer(TensorBinder& b, const ModelConfig& c, int layer, LayerWeights& L) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  const int64_t q_dim = int64_t{c.n_heads} * c.head_dim, kv_dim = int64_t{c.n_kv_heads} * c.head_dim;
  if (!b.has(p + "attn_qkv.weight")) {
    bind_llama_layer(b, c, layer, L);
    return;
  }
  L.attn_norm = b.vec(p + "attn_norm.weight", c.dim);
  const WeightView qkv = b.matrix(p + "attn_qkv.weight", c.dim, q_dim + 2 * kv_dim);
  L.wq = TensorBinder::rows(qkv, 0, q_dim);
  L.wk = TensorBinder::rows(qkv, q_dim, kv_dim);
  L.wv = TensorBinder::rows(qkv, q_dim + kv_dim, kv_dim);
  L.wo = b.matrix(p + "attn_output.weight", q_dim, c.dim);
  L.ffn_norm = b.vec(p + "ffn_norm.weight", c.dim);
  const WeightView gate_up = b.matrix(p + "ffn_up.weight", c.dim, 2 * int64_t{c.ffn_dim});
  L.w_gate = TensorBinder::rows(gate_up, 0, c.ffn_dim);
  L.w_up = TensorBinder::rows(gate_up, c.ffn_dim, c.ffn_dim);
  L.w_down = b.matrix(p + "ffn_down.weight", c.ffn_dim, c.dim);
}

}  // namespace

KVWISE_ARCH(phi3) {
  registry.add({.name = "phi3",
                .gguf_names = {"phi3"},
                .summary = "fused QKV and gate/up, neox RoPE, LongRoPE factors; sliding window ignored as in llama.cpp",
                .configure = [](const GgufFile&, ModelConfig& c) { c.rope_type = RopeType::Neox; },
                .bind_layer = bind_phi3_layer});
}

}  // namespace kvwise
