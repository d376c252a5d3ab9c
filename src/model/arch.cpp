#include "model/arch.h"

#include <map>

#include "base/error.h"

namespace kvwise {

void kvwise_register_all_archs(ArchRegistry& registry);  // generated from src/model/arch/*.cpp

void ArchRegistry::add(ArchFamily family) {
  KV_CHECK(!family.name.empty() && !family.gguf_names.empty() && family.bind_layer != nullptr,
           "architecture family '{}' is incomplete", family.name);
  for (const std::string& n : family.gguf_names)
    KV_CHECK(find(n) == nullptr, "architecture '{}' is registered twice", n);
  families_.push_back(std::move(family));
}

const ArchFamily* ArchRegistry::find(const std::string& gguf_arch) const {
  for (const ArchFamily& f : families_)
    for (const std::string& n : f.gguf_names)
      if (n == gguf_arch) return &f;
  return nullptr;
}

const ArchRegistry& arch_registry() {
  static const ArchRegistry r = [] {
    ArchRegistry reg;
    kvwise_register_all_archs(reg);
    return reg;
  }();
  return r;
}

std::string supported_architectures() {
  std::string out;
  for (const ArchFamily& f : arch_registry().families())
    for (const std::string& n : f.gguf_names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

void refuse_architecture(const GgufFile& f, const std::string& arch) {
  // Architectures people meet in GGUF files that kvwise knows it does not run, with the reason.
  static const std::map<std::string, std::string> known = {
      {"deepseek2", "multi-head latent attention (MLA) and mixture of experts"},
      {"deepseek", "mixture of experts"},
      {"qwen2moe", "mixture of experts"},
      {"qwen3moe", "mixture of experts"},
      {"qwen3next", "mixture of experts and linear attention"},
      {"phimoe", "mixture of experts"},
      {"mixtral", "mixture of experts"},
      {"dbrx", "mixture of experts"},
      {"grok", "mixture of experts"},
      {"olmoe", "mixture of experts"},
      {"granitemoe", "mixture of experts"},
      {"gpt-oss", "mixture of experts and attention sinks"},
      {"llama4", "mixture of experts and chunked attention"},
      {"gemma3n", "per-layer embeddings and altered attention (Gemma 3n)"},
      {"mamba", "a state-space model (no attention, no KV cache)"},
      {"mamba2", "a state-space model (no attention, no KV cache)"},
      {"rwkv6", "a recurrent model (no KV cache)"},
      {"rwkv7", "a recurrent model (no KV cache)"},
      {"jamba", "hybrid state-space layers and mixture of experts"},
      {"bert", "an encoder (no causal generation)"},
      {"t5", "an encoder-decoder"},
      {"clip", "a vision encoder"},
  };
  if (arch.empty()) fail("{}: the file has no general.architecture (not a model file?)", f.path());
  auto it = known.find(arch);
  if (it != known.end())
    fail("{}: unsupported architecture '{}': {} is not supported (kvwise runs {})", f.path(), arch, it->second,
         supported_architectures());
  fail("{}: unsupported architecture '{}' (kvwise runs {})", f.path(), arch, supported_architectures());
}

void refuse_unsupported_features(const GgufFile& f, const std::string& arch) {
  const std::string a = arch + ".";
  if (auto n = f.get_int(a + "expert_count"); n && *n > 0)
    fail("{}: a mixture-of-experts model ({}.expert_count = {}) is not supported", f.path(), arch, *n);
  if (f.get_int(a + "attention.kv_lora_rank"))
    fail("{}: multi-head latent attention ({}.attention.kv_lora_rank) is not supported", f.path(), arch);
  if (f.find_tensor("blk.0.ffn_gate_inp.weight"))
    fail("{}: a mixture-of-experts model (tensor blk.0.ffn_gate_inp.weight) is not supported", f.path());
}

void bind_llama_layer(TensorBinder& b, const ModelConfig& c, int layer, LayerWeights& L) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  const int64_t q_dim = int64_t{c.n_heads} * c.head_dim, kv_dim = int64_t{c.n_kv_heads} * c.head_dim;
  L.attn_norm = b.vec(p + "attn_norm.weight", c.dim);
  L.wq = b.matrix(p + "attn_q.weight", c.dim, q_dim);
  L.wk = b.matrix(p + "attn_k.weight", c.dim, kv_dim);
  L.wv = b.matrix(p + "attn_v.weight", c.dim, kv_dim);
  L.wo = b.matrix(p + "attn_output.weight", q_dim, c.dim);
  L.ffn_norm = b.vec(p + "ffn_norm.weight", c.dim);
  L.w_gate = b.matrix(p + "ffn_gate.weight", c.dim, c.ffn_dim);
  L.w_up = b.matrix(p + "ffn_up.weight", c.dim, c.ffn_dim);
  L.w_down = b.matrix(p + "ffn_down.weight", c.ffn_dim, c.dim);
}

void bind_qk_norms(TensorBinder& b, const ModelConfig& c, int layer, LayerWeights& L) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  L.q_norm = b.vec(p + "attn_q_norm.weight", c.head_dim);
  L.k_norm = b.vec(p + "attn_k_norm.weight", c.head_dim);
}

}  // namespace kvwise
