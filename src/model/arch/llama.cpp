// Llama (1, 2, 3.x) and Mistral: pre-norm attention with adjacent-pair RoPE, SwiGLU. Llama 3.1+ files
// carry per-dimension RoPE factors (the rope_freqs tensor), which rope_tables applies.
#include "model/arch.h"

namespace kvwise {

KVWISE_ARCH(llama) {
  registry.add({.name = "llama",
                .gguf_names = {"llama", "mistral"},
                .summary = "pre-norm, SwiGLU, RoPE on adjacent pairs; Llama 3 RoPE factors (rope_freqs)",
                .configure = [](const GgufFile&, ModelConfig& c) { c.rope_type = RopeType::Normal; },
                .bind_layer = bind_llama_layer});
}

}  // namespace kvwise
