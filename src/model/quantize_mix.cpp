#include "model/quantize_mix.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "base/error.h"

namespace kvwise {

namespace {

const std::vector<QuantPreset>& presets() {
  static const std::vector<QuantPreset> p = {
      {"f32", DType::F32, 0, false},     {"f16", DType::F16, 1, false},    {"bf16", DType::BF16, 32, false},
      {"q4_0", DType::Q4_0, 2, false},   {"q8_0", DType::Q8_0, 7, false},  {"q4_k_m", DType::Q4_K, 15, true},
      {"q5_k_m", DType::Q5_K, 17, true}, {"q6_k", DType::Q6_K, 18, false}, {"q4_k", DType::Q4_K, 15, false},
      {"q5_k", DType::Q5_K, 17, false},
  };
  return p;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third one between.
bool use_more_bits(int i, int n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// The layer number of "blk.N.*", or -1.
int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  const size_t dot = name.find('.', 4);
  try {
    return dot == std::string::npos ? -1 : std::stoi(name.substr(4, dot - 4));
  } catch (const std::exception&) {
    return -1;
  }
}

bool has(const std::string& name, const char* part) {
  return name.find(part) != std::string::npos;
}

}  // namespace

QuantPreset quant_preset(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const QuantPreset& p : presets())
    if (p.name == lower) return p;
  fail("unsupported quantization preset '{}' (kvwise writes {})", name, quant_preset_names());
}

std::string quant_preset_names() {
  std::string out;
  for (const QuantPreset& p : presets()) out += (out.empty() ? "" : ", ") + p.name;
  return out;
}

TensorQuantChoice choose_tensor_type(const QuantPreset& p, const QuantModelInfo& m, const std::string& name, int n_dims,
                                     int64_t cols, int index_attn_v) {
  // Only 2-D weights are quantized; norms, biases and RoPE factors stay F32.
  if (n_dims != 2 || name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0)
    return {DType::F32, n_dims == 2 ? "not a weight" : ""};
  TensorQuantChoice c{p.base, ""};
  const bool quantized = p.base != DType::F32 && p.base != DType::F16 && p.base != DType::BF16;
  if (!quantized) return c;
  const bool output = name == "output.weight" || (!m.has_output && name == "token_embd.weight");
  if (output) {
    if (cols % 256 != 0) {
      c = {DType::Q8_0, "output: rows do not fill 256-blocks"};
    } else if (p.base != DType::Q8_0) {
      c = {DType::Q6_K, "output"};
    }
  } else if (p.k_mix && (has(name, "attn_v.weight") || has(name, "attn_qkv.weight"))) {
    // A fused QKV counts as an attn_v (measured against llama-quantize on phi3: Q6_K on the same layers).
    if (use_more_bits(index_attn_v, m.n_attn_v)) c = {DType::Q6_K, "more bits (attn_v)"};
  } else if (p.k_mix && has(name, "ffn_down.weight")) {
    const int layer = layer_of(name);
    if (layer >= 0 && use_more_bits(layer, m.n_layers)) c = {DType::Q6_K, "more bits (ffn_down)"};
  }
  // A row that does not fill the type's blocks: llama.cpp's per-tensor fallback.
  const DTypeInfo& info = dtype_info(c.type);
  if (cols % info.block_elems != 0) {
    static const std::map<DType, DType> fallback = {
        {DType::Q4_K, DType::Q5_0}, {DType::Q5_K, DType::Q5_1}, {DType::Q6_K, DType::Q8_0}};
    auto it = fallback.find(c.type);
    const DType to = it != fallback.end() && cols % dtype_info(it->second).block_elems == 0 ? it->second : DType::F16;
    c = {to, fmt::format("fallback: rows of {} do not fill {} blocks of {}", cols, info.name, info.block_elems)};
  }
  return c;
}

}  // namespace kvwise
