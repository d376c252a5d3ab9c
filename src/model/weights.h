// Views of a model's tensors inside the mapped GGUF file, checked against the config's shapes.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/gguf.h"
#include "tensor/matmul.h"

namespace kvwise {

struct LayerWeights {
  const float* attn_norm = nullptr;
  WeightView wq, wk, wv, wo;  // views of one fused attn_qkv matrix where the family fuses them (phi3)
  const float* bq = nullptr;  // qwen2 only
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* q_norm = nullptr;  // per-head RMSNorm weights (head_dim floats): qwen3, gemma3
  const float* k_norm = nullptr;
  const float* post_attn_norm = nullptr;  // gemma2/3: norm of the attention output before the residual add
  const float* ffn_norm = nullptr;
  WeightView w_gate, w_up, w_down;  // gate and up may be the halves of one fused ffn_up (phi3)
  const float* post_ffn_norm = nullptr;
};

struct ModelWeights {
  WeightView tok_embd;  // rows = vocab, cols = dim
  const float* output_norm = nullptr;
  WeightView output;  // tied to tok_embd when the file has no output.weight
  bool tied_output = false;
  // RoPE frequency factors (n_rot / 2 floats; frequencies are divided by them): Llama 3's rope_freqs,
  // Phi-3's rope_factors_long / _short. Null when the file has none.
  const float* rope_freqs = nullptr;
  const float* rope_factors_long = nullptr;
  const float* rope_factors_short = nullptr;
  std::vector<LayerWeights> layers;
  // Small tensors stored in a non-f32 type are converted once and kept here.
  std::vector<std::vector<float>> owned;
  // Quantized matrices repacked into 8-row groups (tensor/packed.h); WeightView::packed points here.
  std::vector<std::vector<uint8_t>> packed;
  size_t packed_bytes = 0;
  size_t mapped_bytes = 0;
  // Matrix bytes a decode step reads (every layer matrix and the output projection): what decode's
  // effective bandwidth is measured against.
  size_t bytes_per_token = 0;
  int64_t parameters = 0;
};

// Binds the tensors of the config's family (model/arch.h). Throws kvwise::Error naming the tensor
// when one is missing, mis-shaped or of an unsupported type.
// Quantized matrices with a packed layout are repacked (their mapped pages are then released), unless
// the environment sets KVWISE_REPACK=0 (for comparisons).
ModelWeights bind_weights(const GgufFile& f, const ModelConfig& c);

}  // namespace kvwise
