// Gemma 2 and Gemma 3: embeddings scaled by sqrt(dim), RMSNorm before and after attention and FFN,
// GeGLU (tanh GELU), neox RoPE, a query scale of 1/sqrt(head_dim) (27B: 1/sqrt(dim / heads)), and
// interleaved sliding-window and global layers. Gemma 2: every other layer (from the first) slides,
// attention scores and logits are soft-capped. Gemma 3: five sliding layers to one global, per-head
// Q/K norms, sliding layers with their own RoPE base (10000, unscaled), no attention soft-capping.
// (GGUF converters already add Gemma's +1 to the norm weights, so the norms are plain RMSNorm.)
#include <cmath>

#include "base/error.h"
#include "model/arch.h"

namespace kvwise {

namespace {

void configure_gemma(const GgufFile& f, ModelConfig& c, bool gemma3) {
  const std::string a = c.arch + ".";
  c.rope_type = RopeType::Neox;
  c.embed_scale = std::sqrt(static_cast<float>(c.dim));
  c.post_norms = true;
  c.ffn_act = Activation::GeluTanh;
  c.qk_norm = gemma3;
  const bool big = c.n_layers == (gemma3 ? 62 : 46);  // the 27B models scale queries by dim / heads
  c.attn_scale =
      big ? 1.0f / std::sqrt(static_cast<float>(c.dim / c.n_heads)) : 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const auto window = f.get_int(a + "attention.sliding_window");
  KV_CHECK(!window || (*window >= 0 && *window < (int64_t{1} << 30)), "{}: {}attention.sliding_window out of range",
           f.path(), a);
  if (gemma3) {
    c.final_softcap = static_cast<float>(f.get_float(a + "final_logit_softcapping").value_or(0.0));
    if (window && *window > 0)
      for (int l = 0; l < c.n_layers; ++l)
        if (l % 6 < 5) c.layers[static_cast<size_t>(l)] = {static_cast<int>(*window), 10000.0f, 1.0f};
  } else {
    c.attn_softcap = static_cast<float>(f.get_float(a + "attn_logit_softcapping").value_or(50.0));
    c.final_softcap = static_cast<float>(f.get_float(a + "final_logit_softcapping").value_or(30.0));
    const int w = window ? static_cast<int>(*window) : 4096;
    for (int l = 0; l < c.n_layers; l += 2) c.layers[static_cast<size_t>(l)].window = w;
  }
  KV_CHECK(c.attn_softcap >= 0 && c.final_softcap >= 0, "{}: negative soft-capping", f.path());
}

void bind_gemma_layer(TensorBinder& b, const ModelConfig& c, int layer, LayerWeights& L) {
  bind_llama_layer(b, c, layer, L);
  const std::string p = "blk." + std::to_string(layer) + ".";
  L.post_attn_norm = b.vec(p + "post_attention_norm.weight", c.dim);
  L.post_ffn_norm = b.vec(p + "post_ffw_norm.weight", c.dim);
  if (c.qk_norm) bind_qk_norms(b, c, layer, L);
}

}  // namespace

KVWISE_ARCH(gemma) {
  registry.add({.name = "gemma2",
                .gguf_names = {"gemma2"},
                .summary = "scaled embeddings, pre+post norms, GeGLU, soft-capping, sliding window on even layers",
                .configure = [](const GgufFile& f, ModelConfig& c) { configure_gemma(f, c, false); },
                .bind_layer = bind_gemma_layer});
  registry.add({.name = "gemma3",
                .gguf_names = {"gemma3"},
                .summary = "gemma2 block with Q/K norms, 5 sliding : 1 global layers with their own RoPE base",
                .configure = [](const GgufFile& f, ModelConfig& c) { configure_gemma(f, c, true); },
                .bind_layer = bind_gemma_layer});
}

}  // namespace kvwise
