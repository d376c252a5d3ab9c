#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "base/error.h"
#include "model/convert.h"
#include "model/gguf_writer.h"
#include "model/rope_tables.h"
#include "tensor/quant.h"

namespace kvwise {

namespace {

const std::map<std::string, ModelShape>& shapes() {
  static const std::map<std::string, ModelShape> s = [] {
    std::map<std::string, ModelShape> m;
    const auto add = [&](ModelShape x) { m[x.name] = x; };
    // SmolLM-135M: 576 wide, 30 layers, 9 heads over 3 KV heads, SwiGLU 1536, tied output, 49152 vocab.
    add({"smollm-135m", "llama", 576, 30, 9, 3, 1536, 49152, 32768, 10000.0f, true, DType::F16, 1});
    add({"smollm2-135m", "llama", 576, 30, 9, 3, 1536, 49152, 8192, 100000.0f, true, DType::F16, 1});
    // Llama-3.2-1B: 2048 wide, 16 layers, 32 heads over 8 KV heads, SwiGLU 8192, tied, 128256 vocab.
    add({"llama-1b", "llama", 2048, 16, 32, 8, 8192, 128256, 32768, 500000.0f, true, DType::F16, 1});
    add({"llama3.2-1b", "llama", 2048, 16, 32, 8, 8192, 128256, 131072, 500000.0f, true, DType::F16, 1, 0, 1e-5f, 0,
         true});
    // Llama-3.1-8B: 4096 wide, 32 layers, 32 heads over 8 KV heads, SwiGLU 14336, untied, 128256 vocab.
    add({"llama-8b", "llama", 4096, 32, 32, 8, 14336, 128256, 131072, 500000.0f, false, DType::F16, 1});
    add({"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1000000.0f, true, DType::F16, 1, 0, 1e-6f});
    add({"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 3072, 151936, 40960, 1000000.0f, true, DType::F16, 1, 128, 1e-6f});
    add({"gemma2-2b", "gemma2", 2304, 26, 8, 4, 9216, 256000, 8192, 10000.0f, true, DType::F16, 1, 256, 1e-6f, 4096});
    add({"gemma3-1b", "gemma3", 1152, 26, 4, 1, 6912, 262144, 32768, 1000000.0f, true, DType::F16, 1, 256, 1e-6f, 512});
    add({"phi3-mini", "phi3", 3072, 32, 32, 32, 8192, 32064, 4096, 10000.0f, false, DType::F16, 1, 0, 1e-5f, 2047});
    // Small shapes for tests: GQA llama, qwen2 (biases, neox RoPE), untied output, and one of every
    // family with a short sliding window so that tests cross it.
    add({"tiny", "llama", 64, 2, 4, 2, 160, 384, 1024, 10000.0f, true, DType::F32, 1});
    add({"tiny-qwen2", "qwen2", 64, 2, 4, 2, 160, 384, 1024, 1000000.0f, false, DType::F32, 1});
    add({"tiny-k", "llama", 256, 2, 4, 1, 512, 384, 1024, 10000.0f, false, DType::F32, 1});
    add({"tiny-llama3", "llama", 64, 2, 4, 2, 160, 384, 1024, 500000.0f, true, DType::F32, 1, 0, 1e-5f, 0, true});
    add({"tiny-qwen3", "qwen3", 64, 2, 4, 2, 160, 384, 1024, 1000000.0f, true, DType::F32, 1, 32, 1e-6f});
    add({"tiny-gemma2", "gemma2", 64, 3, 4, 2, 160, 384, 1024, 10000.0f, true, DType::F32, 1, 32, 1e-6f, 9});
    add({"tiny-gemma3", "gemma3", 64, 6, 4, 1, 160, 384, 1024, 1000000.0f, true, DType::F32, 1, 32, 1e-6f, 9});
    add({"tiny-phi3", "phi3", 64, 2, 4, 4, 160, 384, 1024, 10000.0f, false, DType::F32, 1, 0, 1e-5f, 11});
    return m;
  }();
  return s;
}

// xorshift64*: fast enough to fill a billion weights.
struct Rng {
  uint64_t s;
  float uniform() {  // in [-1, 1)
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<float>((s * 2685821657736338717ULL) >> 40) / static_cast<float>(1 << 23) - 1.0f;
  }
};

std::vector<uint8_t> random_tensor(Rng& rng, int64_t cols, int64_t rows, DType type, float scale, float offset = 0) {
  std::vector<uint8_t> out(row_bytes(type, cols) * static_cast<size_t>(rows));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& x : row) x = offset + scale * rng.uniform();
    quantize_row(type, row.data(), out.data() + static_cast<size_t>(r) * row_bytes(type, cols), cols);
  }
  return out;
}

}  // namespace

ModelShape model_shape(const std::string& name) {
  auto it = shapes().find(name);
  KV_CHECK(it != shapes().end(), "unknown model shape '{}' (known: {})", name, model_shape_names());
  return it->second;
}

std::string model_shape_names() {
  std::string out;
  for (const auto& [k, v] : shapes()) out += (out.empty() ? "" : ", ") + k;
  return out;
}

void make_random_model(const ModelShape& s, const std::string& out_gguf) {
  static const std::vector<std::string> archs = {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"};
  KV_CHECK(std::find(archs.begin(), archs.end(), s.arch) != archs.end(), "unknown architecture '{}' (known: {})",
           s.arch, fmt::join(archs, ", "));
  KV_CHECK(s.dim > 0 && s.n_heads > 0 && s.n_kv_heads > 0 && s.n_layers > 0 && s.ffn_dim > 0 &&
               (s.head_dim > 0 || s.dim % s.n_heads == 0) && s.n_heads % s.n_kv_heads == 0,
           "invalid head layout: dim {} with {} heads over {} KV heads", s.dim, s.n_heads, s.n_kv_heads);
  KV_CHECK(s.n_vocab >= 259 + 96, "vocabulary must hold at least 355 tokens (specials, bytes, ASCII)");
  const int64_t hd = s.head_dim > 0 ? s.head_dim : s.dim / s.n_heads, q_dim = hd * s.n_heads,
                kv_dim = hd * s.n_kv_heads;
  const bool gemma = s.arch == "gemma2" || s.arch == "gemma3";
  const std::string a = s.arch + ".";
  GgufWriter w;
  const auto u32 = [&](const std::string& key, int64_t v) { w.set(a + key, GgufValue::u32(static_cast<uint32_t>(v))); };
  w.set("general.architecture", GgufValue::str(s.arch));
  w.set("general.name", GgufValue::str("kvwise random " + s.name));
  u32("context_length", s.ctx);
  u32("embedding_length", s.dim);
  u32("block_count", s.n_layers);
  u32("feed_forward_length", s.ffn_dim);
  u32("rope.dimension_count", hd);
  w.set(a + "rope.freq_base", GgufValue::f32(s.rope_base));
  u32("attention.head_count", s.n_heads);
  u32("attention.head_count_kv", s.n_kv_heads);
  u32("attention.key_length", hd);
  u32("attention.value_length", hd);
  w.set(a + "attention.layer_norm_rms_epsilon", GgufValue::f32(s.rms_eps));
  if (s.arch == "llama" || s.arch == "mistral") u32("vocab_size", s.n_vocab);
  if (s.window > 0) u32("attention.sliding_window", s.window);
  if (s.arch == "gemma2") {
    w.set(a + "attn_logit_softcapping", GgufValue::f32(50.0f));
    w.set(a + "final_logit_softcapping", GgufValue::f32(30.0f));
  }
  if (s.arch == "phi3") u32("rope.scaling.original_context_length", s.ctx);

  // Vocabulary: <unk> <s> </s>, 256 byte tokens, printable ASCII pieces, then filler pieces.
  std::vector<GgufValue> tokens, scores, types;
  const auto add = [&](std::string t, int type) {
    scores.push_back(GgufValue::f32(-static_cast<float>(tokens.size())));
    tokens.push_back(GgufValue::str(std::move(t)));
    types.push_back(GgufValue::i32(type));
  };
  add("<unk>", 2);
  add("<s>", 3);
  add("</s>", 3);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 6);
  add("\xE2\x96\x81", 1);
  for (char c = 33; c < 127; ++c) add(std::string(1, c), 1);
  // The family's chat control tokens close the vocabulary, as in the real checkpoints (llama.cpp's
  // vocabulary loader looks some of them up by text, e.g. Phi-3's).
  std::vector<std::string> specials;
  if (s.arch == "phi3")
    specials = {"<|endoftext|>",    "<|assistant|>",    "<|placeholder1|>", "<|placeholder2|>",
                "<|placeholder3|>", "<|placeholder4|>", "<|system|>",       "<|end|>",
                "<|placeholder5|>", "<|placeholder6|>", "<|user|>"};
  else if (s.arch == "qwen2" || s.arch == "qwen3")
    specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  else if (s.arch == "gemma2" || s.arch == "gemma3")
    specials = {"<start_of_turn>", "<end_of_turn>"};
  else if (s.llama3_rope)
    specials = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
  KV_CHECK(s.n_vocab >= 259 + 96 + static_cast<int>(specials.size()), "vocabulary too small for the special tokens");
  while (static_cast<int>(tokens.size()) < s.n_vocab - static_cast<int>(specials.size()))
    add(fmt::format("\xE2\x96\x81w{}", tokens.size()), 1);
  for (const std::string& t : specials) add(t, 3);
  w.set("tokenizer.ggml.model", GgufValue::str("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::array(GgufType::STRING, std::move(tokens)));
  w.set("tokenizer.ggml.scores", GgufValue::array(GgufType::F32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", GgufValue::array(GgufType::I32, std::move(types)));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(1));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(2));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(0));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));

  Rng rng{s.seed * 0x9E3779B97F4A7C15ULL + 1};
  const DType t = s.type;
  const auto mat = [&](const std::string& name, int64_t cols, int64_t rows) {
    w.add_tensor(name, {cols, rows}, t, random_tensor(rng, cols, rows, t, std::sqrt(3.0f / static_cast<float>(cols))));
  };
  const auto vec = [&](const std::string& name, int64_t n, float scale, float offset) {
    w.add_tensor(name, {n}, DType::F32, random_tensor(rng, n, 1, DType::F32, scale, offset));
  };
  // Gemma scales embeddings up by sqrt(dim): its random embeddings are drawn that much smaller.
  const float embd_scale = s.embed_scale > 0 ? s.embed_scale
                           : gemma           ? 1.0f / std::sqrt(static_cast<float>(s.dim))
                                             : 1.0f;
  w.add_tensor("token_embd.weight", {s.dim, s.n_vocab}, t, random_tensor(rng, s.dim, s.n_vocab, t, embd_scale));
  vec("output_norm.weight", s.dim, 0.1f, 1.0f);
  if (!s.tied) mat("output.weight", s.dim, s.n_vocab);
  if (s.llama3_rope) {
    // Llama 3.1's RoPE factors (factor 32, low 1, high 4, original context 8192), as its converter writes them.
    const std::vector<float> f = llama3_rope_factors(static_cast<int>(hd), s.rope_base, 32.0, 1.0, 4.0, 8192);
    std::vector<uint8_t> bytes(f.size() * 4);
    std::memcpy(bytes.data(), f.data(), bytes.size());
    w.add_tensor("rope_freqs.weight", {hd / 2}, DType::F32, std::move(bytes));
  }
  for (int l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vec(p + "attn_norm.weight", s.dim, 0.1f, 1.0f);
    if (s.arch == "phi3") {
      mat(p + "attn_qkv.weight", s.dim, q_dim + 2 * kv_dim);
    } else {
      mat(p + "attn_q.weight", s.dim, q_dim);
      mat(p + "attn_k.weight", s.dim, kv_dim);
      mat(p + "attn_v.weight", s.dim, kv_dim);
    }
    if (s.arch == "qwen2") {
      vec(p + "attn_q.bias", q_dim, 0.5f, 0.0f);
      vec(p + "attn_k.bias", kv_dim, 0.5f, 0.0f);
      vec(p + "attn_v.bias", kv_dim, 0.5f, 0.0f);
    }
    if (s.arch == "qwen3" || s.arch == "gemma3") {
      vec(p + "attn_q_norm.weight", hd, 0.1f, 1.0f);
      vec(p + "attn_k_norm.weight", hd, 0.1f, 1.0f);
    }
    mat(p + "attn_output.weight", q_dim, s.dim);
    if (gemma) vec(p + "post_attention_norm.weight", s.dim, 0.1f, 1.0f);
    vec(p + "ffn_norm.weight", s.dim, 0.1f, 1.0f);
    if (s.arch == "phi3") {
      mat(p + "ffn_up.weight", s.dim, 2 * int64_t{s.ffn_dim});
    } else {
      mat(p + "ffn_gate.weight", s.dim, s.ffn_dim);
      mat(p + "ffn_up.weight", s.dim, s.ffn_dim);
    }
    mat(p + "ffn_down.weight", s.ffn_dim, s.dim);
    if (gemma) vec(p + "post_ffw_norm.weight", s.dim, 0.1f, 1.0f);
  }
  // llama.cpp's general.file_type for a file whose matrices are all of type t (14: Q4_K "small").
  const std::map<DType, uint32_t> file_types = {{DType::F32, 0},  {DType::F16, 1},   {DType::Q4_0, 2},
                                                {DType::Q8_0, 7}, {DType::Q4_K, 14}, {DType::Q6_K, 18},
                                                {DType::BF16, 32}};
  w.set("general.file_type", GgufValue::u32(file_types.count(t) ? file_types.at(t) : 7));
  w.set("general.quantization_version", GgufValue::u32(2));
  w.write(out_gguf);
}

}  // namespace kvwise
