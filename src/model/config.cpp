#include "model/config.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "model/arch.h"

namespace kvwise {

ModelConfig read_common_config(const GgufFile& f) {
  ModelConfig c;
  c.arch = f.get_string("general.architecture").value_or("");
  c.name = f.get_string("general.name").value_or("");
  const std::string a = c.arch + ".";
  const auto need = [&](const std::string& key) {
    auto v = f.get_int(a + key);
    KV_CHECK(v.has_value(), "{}: missing required metadata '{}{}'", f.path(), a, key);
    KV_CHECK(*v > 0 && *v < (int64_t{1} << 31), "{}: metadata '{}{}' = {} is out of range", f.path(), a, key, *v);
    return static_cast<int>(*v);
  };
  c.dim = need("embedding_length");
  c.n_layers = need("block_count");
  KV_CHECK(c.n_layers <= 1024, "{}: {} layers is more than kvwise accepts (1024)", f.path(), c.n_layers);
  c.n_heads = need("attention.head_count");
  c.n_kv_heads = f.get_int(a + "attention.head_count_kv") ? need("attention.head_count_kv") : c.n_heads;
  c.ffn_dim = need("feed_forward_length");
  c.ctx_len = f.get_int(a + "context_length") ? need("context_length") : 2048;
  KV_CHECK(c.n_heads % c.n_kv_heads == 0, "{}: {} query heads are not a multiple of {} KV heads", f.path(), c.n_heads,
           c.n_kv_heads);
  c.head_dim = f.get_int(a + "attention.key_length") ? need("attention.key_length") : c.dim / c.n_heads;
  KV_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0 && c.head_dim <= 512, "{}: head dimension {} must be even and <= 512",
           f.path(), c.head_dim);
  if (f.get_int(a + "attention.value_length"))
    KV_CHECK(need("attention.value_length") == c.head_dim,
             "{}: value heads of {} dimensions differ from key heads of {} (not supported)", f.path(),
             need("attention.value_length"), c.head_dim);
  c.n_rot = f.get_int(a + "rope.dimension_count") ? need("rope.dimension_count") : c.head_dim;
  KV_CHECK(c.n_rot <= c.head_dim && c.n_rot % 2 == 0, "{}: rope dimension {} invalid for head dim {}", f.path(),
           c.n_rot, c.head_dim);
  c.rms_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_freq_base = static_cast<float>(f.get_float(a + "rope.freq_base").value_or(10000.0));
  KV_CHECK(c.rope_freq_base > 0, "{}: rope.freq_base must be positive", f.path());
  c.rope_orig_ctx = static_cast<int>(f.get_int(a + "rope.scaling.original_context_length").value_or(c.ctx_len));
  // As llama.cpp: a scaling factor without a type is linear scaling.
  const std::string scaling =
      f.get_string(a + "rope.scaling.type").value_or(f.get_float(a + "rope.scaling.factor") ? "linear" : "none");
  const auto factor = [&] {
    const float v = static_cast<float>(f.get_float(a + "rope.scaling.factor").value_or(1.0));
    KV_CHECK(v > 0 && std::isfinite(v), "{}: rope.scaling.factor must be positive", f.path());
    return v;
  };
  if (scaling == "linear") {
    c.rope_linear_factor = factor();
  } else if (scaling == "yarn") {
    c.rope_scaling = RopeScaling::Yarn;
    c.rope_scaling_factor = factor();
    c.yarn_beta_fast = static_cast<float>(f.get_float(a + "rope.scaling.yarn_beta_fast").value_or(32.0));
    c.yarn_beta_slow = static_cast<float>(f.get_float(a + "rope.scaling.yarn_beta_slow").value_or(1.0));
  } else if (scaling == "llama3") {
    c.rope_scaling = RopeScaling::Llama3;
    c.rope_scaling_factor = factor();
  } else if (scaling == "longrope") {
    c.rope_scaling = RopeScaling::LongRope;
  } else {
    KV_CHECK(scaling == "none",
             "{}: unsupported RoPE scaling '{}' (kvwise supports none, linear, yarn, llama3 and longrope)", f.path(),
             scaling);
  }
  c.rope_attn_factor = static_cast<float>(f.get_float(a + "rope.scaling.attn_factor").value_or(1.0));
  // What the RoPE tables divide by or take logarithms of: a bad value would be silent garbage.
  KV_CHECK(c.rope_orig_ctx > 0, "{}: rope.scaling.original_context_length must be positive", f.path());
  for (const auto& [key, v] : {std::pair<const char*, float>{"rope.scaling.attn_factor", c.rope_attn_factor},
                               {"rope.scaling.yarn_beta_fast", c.yarn_beta_fast},
                               {"rope.scaling.yarn_beta_slow", c.yarn_beta_slow}})
    KV_CHECK(std::isfinite(v) && v > 0, "{}: {}{} = {} must be a positive number", f.path(), a, key, v);
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  KV_CHECK(tokens && tokens->type == GgufType::ARRAY, "{}: missing tokenizer.ggml.tokens", f.path());
  c.n_vocab = static_cast<int>(tokens->as_array().size());
  if (auto v = f.get_int(a + "vocab_size")) c.n_vocab = static_cast<int>(*v);
  c.layers.assign(static_cast<size_t>(c.n_layers), LayerAttention{0, c.rope_freq_base, 1.0f / c.rope_linear_factor});
  return c;
}

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture").value_or("");
  const ArchFamily* family = arch_registry().find(arch);
  if (family == nullptr) refuse_architecture(f, arch);
  refuse_unsupported_features(f, arch);
  ModelConfig c = read_common_config(f);
  c.family = family->name;
  if (family->configure) family->configure(f, c);
  for (const LayerAttention& l : c.layers)
    KV_CHECK(l.window >= 0 && l.rope_base > 0 && l.rope_freq_scale > 0, "{}: invalid layer attention settings",
             f.path());
  return c;
}

float ModelConfig::query_scale() const {
  return attn_scale > 0 ? attn_scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

size_t ModelConfig::kv_bytes_for(int64_t tokens, size_t element_bytes, int page_tokens) const {
  size_t total = 0;
  for (const LayerAttention& l : layers) {
    const int64_t held = l.window > 0 ? std::min<int64_t>(tokens, l.window + 2 * int64_t{page_tokens}) : tokens;
    total +=
        2 * static_cast<size_t>(held) * static_cast<size_t>(n_kv_heads) * static_cast<size_t>(head_dim) * element_bytes;
  }
  return total;
}

bool ModelConfig::has_window_layers() const {
  for (const LayerAttention& l : layers)
    if (l.window > 0) return true;
  return false;
}

}  // namespace kvwise
