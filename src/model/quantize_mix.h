// llama.cpp's tensor-type mix for its common quantization presets (llama_tensor_get_type in
// llama-quant.cpp, for dense models): which tensors get more bits (output, attn_v and ffn_down in the
// _M presets, a fused attn_qkv counting as attn_v), how the output / tied embedding is handled, and the per-tensor fallback
// when a row does not fill the preset type's blocks. kvwise quantize follows it so that both tools
// write the same mix (scripts/compare-llamacpp-models.sh checks it tensor by tensor).
#pragma once
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace kvwise {

struct QuantPreset {
  std::string name;  // q4_0, q8_0, q4_k_m, q5_k_m, q6_k, f16, bf16, f32 (and q4_k, q5_k: every matrix one type)
  DType base = DType::F16;
  uint32_t file_type = 1;  // llama.cpp's general.file_type
  bool k_mix = false;      // the _M presets' extra bits
};
// Throws naming the supported presets for an unknown name (case-insensitive).
QuantPreset quant_preset(const std::string& name);
std::string quant_preset_names();

// What the model's tensors look like, for the rules that count layers and tensors.
struct QuantModelInfo {
  int n_layers = 0;
  int n_attn_v = 0;  // attn_v / attn_qkv tensors in the file
  bool has_output = false;
};

struct TensorQuantChoice {
  DType type = DType::F32;
  std::string reason;  // empty: the preset's type; else why it differs ("output", "more bits", "fallback: ...")
};

// The type a tensor gets. `cols`: its row length; `index_attn_v`: how many attn_v / attn_qkv tensors
// came before it (llama.cpp counts them in file order).
TensorQuantChoice choose_tensor_type(const QuantPreset& p, const QuantModelInfo& m, const std::string& name, int n_dims,
                                     int64_t cols, int index_attn_v);

}  // namespace kvwise
