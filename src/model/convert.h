// Model file producers: llama2.c import, random models of real shapes, and re-quantization.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace kvwise {

// Converts a llama2.c checkpoint (tied or untied classifier) and its tokenizer.bin to GGUF (F32).
void convert_llama2c(const std::string& model_bin, const std::string& tokenizer_bin, const std::string& out_gguf);

struct ModelShape {
  std::string name;
  std::string arch = "llama";  // llama | mistral | qwen2 | qwen3 | gemma2 | gemma3 | phi3
  int dim = 64, n_layers = 2, n_heads = 4, n_kv_heads = 2, ffn_dim = 128, n_vocab = 320, ctx = 2048;
  float rope_base = 10000.0f;
  bool tied = true;
  DType type = DType::F16;
  uint64_t seed = 1;
  int head_dim = 0;  // 0: dim / n_heads (qwen3 and gemma have wider heads)
  float rms_eps = 1e-5f;
  int window = 0;            // attention.sliding_window (gemma2/3, phi3), when non-zero
  bool llama3_rope = false;  // Llama 3.1+ RoPE: a rope_freqs tensor (factor 32, low 1, high 4, original 8192)
  float embed_scale = 0;     // token embeddings drawn from [-s, s]; 0: 1 (gemma: 1 / sqrt(dim))
};
// Named shapes: the real ones (smollm2-135m, llama3.2-1b, qwen2.5-0.5b, qwen3-0.6b, gemma2-2b,
// gemma3-1b, phi3-mini, llama-1b, llama-8b, ...) and tiny test shapes of every family. Throws for
// unknown names.
ModelShape model_shape(const std::string& name);
std::string model_shape_names();
// Writes a model with random weights (and a byte-fallback SentencePiece vocabulary) of that shape,
// with the metadata keys and tensors a converted checkpoint of its family has (llama.cpp loads it).
void make_random_model(const ModelShape& shape, const std::string& out_gguf);

// Re-quantizes a GGUF file with one of llama.cpp's presets (model/quantize_mix.h: q4_0, q8_0, q4_k_m,
// q5_k_m, q6_k, ...), choosing each tensor's type as llama-quantize does, fallbacks included; norms,
// biases and RoPE factors stay F32. Returns every tensor's choice and the count per written type;
// on_tensor(done, total) reports progress.
struct QuantizedTensor {
  std::string name;
  std::string from, to;  // type names
  std::string reason;    // empty: the preset's type
};
struct QuantizeSummary {
  std::map<std::string, int> tensors_per_type;
  std::vector<QuantizedTensor> tensors;
  std::vector<std::string> fell_back;  // tensors whose rows did not fit the type they were meant to get
};
QuantizeSummary quantize_model(const std::string& in_gguf, const std::string& out_gguf, const std::string& type,
                               const std::function<void(size_t, size_t)>& on_tensor = {});

}  // namespace kvwise
