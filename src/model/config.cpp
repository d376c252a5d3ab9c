#include "model/config.h"

#include "base/error.h"

namespace kvwise {

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  c.arch = f.get_string("general.architecture").value_or("");
  KV_CHECK(c.arch == "llama" || c.arch == "mistral" || c.arch == "qwen2",
           "{}: unsupported architecture '{}' (kvwise runs llama, mistral and qwen2)", f.path(), c.arch);
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
  c.n_heads = need("attention.head_count");
  c.n_kv_heads = f.get_int(a + "attention.head_count_kv") ? need("attention.head_count_kv") : c.n_heads;
  c.ffn_dim = need("feed_forward_length");
  c.ctx_len = f.get_int(a + "context_length") ? need("context_length") : 2048;
  KV_CHECK(c.n_heads % c.n_kv_heads == 0, "{}: {} query heads are not a multiple of {} KV heads", f.path(), c.n_heads,
           c.n_kv_heads);
  c.head_dim = f.get_int(a + "attention.key_length") ? need("attention.key_length") : c.dim / c.n_heads;
  KV_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "{}: head dimension {} must be even", f.path(), c.head_dim);
  c.n_rot = f.get_int(a + "rope.dimension_count") ? need("rope.dimension_count") : c.head_dim;
  KV_CHECK(c.n_rot <= c.head_dim && c.n_rot % 2 == 0, "{}: rope dimension {} invalid for head dim {}", f.path(),
           c.n_rot, c.head_dim);
  c.rms_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_freq_base = static_cast<float>(f.get_float(a + "rope.freq_base").value_or(10000.0));
  KV_CHECK(c.rope_freq_base > 0, "{}: rope.freq_base must be positive", f.path());
  const std::string scaling = f.get_string(a + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    c.rope_linear_factor = static_cast<float>(f.get_float(a + "rope.scaling.factor").value_or(1.0));
    KV_CHECK(c.rope_linear_factor > 0, "{}: rope.scaling.factor must be positive", f.path());
  } else {
    KV_CHECK(scaling == "none", "{}: unsupported RoPE scaling '{}' (kvwise supports none and linear)", f.path(),
             scaling);
  }
  c.rope_type = c.arch == "qwen2" ? RopeType::Neox : RopeType::Normal;
  c.qkv_bias = c.arch == "qwen2";
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  KV_CHECK(tokens && tokens->type == GgufType::ARRAY, "{}: missing tokenizer.ggml.tokens", f.path());
  c.n_vocab = static_cast<int>(tokens->as_array().size());
  if (auto v = f.get_int(a + "vocab_size")) c.n_vocab = static_cast<int>(*v);
  return c;
}

}  // namespace kvwise
