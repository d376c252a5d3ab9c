// Architecture families. Each file under src/model/arch/ registers one family with KVWISE_ARCH(stem):
// the GGUF architecture names it runs, how it reads its hyper-parameters beyond the common ones, and
// how it binds its tensors, from the shared blocks below. The forward pass (model/forward.cpp) is one
// transformer block whose optional pieces (QK norms, post norms, GeGLU, soft-capping, sliding windows,
// RoPE variants) the family's config switches on. Adding a family is one file and its test.
// The registry is built once on first use and read-only afterwards (safe from any thread).
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/gguf.h"
#include "model/weights.h"

namespace kvwise {

// Looks up a model's tensors by name, checks their shapes and types, and counts their bytes.
class TensorBinder {
 public:
  TensorBinder(const GgufFile& f, ModelWeights& w) : f_(f), w_(w) {}
  bool has(const std::string& name) const { return f_.find_tensor(name) != nullptr; }
  // A [cols x rows] matrix (GGUF's dims order); throws naming the tensor when missing or mis-shaped.
  WeightView matrix(const std::string& name, int64_t cols, int64_t rows);
  // Rows [r0, r0 + n) of a matrix (the parts of a fused QKV or gate/up projection).
  static WeightView rows(const WeightView& m, int64_t r0, int64_t n);
  // A vector of n floats (converted to f32 when stored otherwise); null when optional and absent.
  const float* vec(const std::string& name, int64_t n, bool optional = false);
  const GgufFile& file() const { return f_; }

 private:
  const GgufTensorInfo& find(const std::string& name, const std::vector<int64_t>& dims);
  const GgufFile& f_;
  ModelWeights& w_;
};

struct ArchFamily {
  std::string name;                     // the family, as its file is named
  std::vector<std::string> gguf_names;  // general.architecture values it runs
  std::string summary;                  // what is special about it, for `kvwise info` and the docs
  // Sets the family's traits on a config that read_common_config filled in.
  void (*configure)(const GgufFile& f, ModelConfig& c) = nullptr;
  // Binds one layer's tensors.
  void (*bind_layer)(TensorBinder& b, const ModelConfig& c, int layer, LayerWeights& L) = nullptr;
};

class ArchRegistry {
 public:
  void add(ArchFamily family);
  // The family that runs a GGUF architecture name, or null.
  const ArchFamily* find(const std::string& gguf_arch) const;
  const std::vector<ArchFamily>& families() const { return families_; }

 private:
  std::vector<ArchFamily> families_;
};

const ArchRegistry& arch_registry();
// Every GGUF architecture name kvwise runs, comma separated (for error messages).
std::string supported_architectures();
// Throws a clear error for an architecture kvwise does not run, naming what it lacks (MoE, MLA, ...).
[[noreturn]] void refuse_architecture(const GgufFile& f, const std::string& arch);

// Shared blocks for the family files.
// Pre-norm attention and gated FFN tensors of a llama-shaped layer: attn_norm, attn_q/k/v/output,
// ffn_norm, ffn_gate/up/down.
void bind_llama_layer(TensorBinder& b, const ModelConfig& c, int layer, LayerWeights& L);
// The per-head Q and K norms (attn_q_norm, attn_k_norm of head_dim floats).
void bind_qk_norms(TensorBinder& b, const ModelConfig& c, int layer, LayerWeights& L);
// Refuses mixture-of-experts and latent-attention files of a family that otherwise runs (e.g. a
// mixtral GGUF declares general.architecture = llama with an expert count).
void refuse_unsupported_features(const GgufFile& f, const std::string& arch);

#define KVWISE_ARCH(stem) void kvwise_register_arch_##stem(::kvwise::ArchRegistry& registry)

}  // namespace kvwise
