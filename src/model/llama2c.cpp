#include <cstdio>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "model/convert.h"
#include "model/gguf_writer.h"

namespace kvwise {

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  KV_CHECK(f != nullptr, "{}: cannot open: {}", path, std::strerror(errno));
  std::vector<uint8_t> data;
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  std::fclose(f);
  return data;
}

struct Reader {
  const std::vector<uint8_t>& d;
  const std::string& path;
  size_t pos = 0;
  template <typename T>
  T get() {
    KV_CHECK(pos + sizeof(T) <= d.size(), "{}: truncated at byte {}", path, pos);
    T v;
    std::memcpy(&v, d.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::vector<uint8_t> floats(size_t n) {
    KV_CHECK(n <= (d.size() - pos) / 4, "{}: truncated: needs {} more floats at byte {}", path, n, pos);
    std::vector<uint8_t> out(d.begin() + static_cast<std::ptrdiff_t>(pos),
                             d.begin() + static_cast<std::ptrdiff_t>(pos + n * 4));
    pos += n * 4;
    return out;
  }
};

}  // namespace

void convert_llama2c(const std::string& model_bin, const std::string& tokenizer_bin, const std::string& out_gguf) {
  const std::vector<uint8_t> m = read_file(model_bin);
  Reader r{m, model_bin};
  const int32_t dim = r.get<int32_t>(), hidden = r.get<int32_t>(), n_layers = r.get<int32_t>();
  const int32_t n_heads = r.get<int32_t>(), n_kv = r.get<int32_t>(), vocab_signed = r.get<int32_t>();
  const int32_t seq_len = r.get<int32_t>();
  const bool shared = vocab_signed > 0;
  const int32_t vocab = shared ? vocab_signed : -vocab_signed;
  KV_CHECK(dim > 0 && hidden > 0 && n_layers > 0 && n_heads > 0 && n_kv > 0 && vocab > 0 && seq_len > 0 &&
               dim % n_heads == 0 && n_heads % n_kv == 0 && dim <= 1 << 16 && n_layers <= 1024 && vocab <= 1 << 20,
           "{}: not a llama2.c checkpoint (implausible header)", model_bin);
  const int64_t hd = dim / n_heads, kv_dim = hd * n_kv, L = n_layers;

  GgufWriter w;
  w.set("general.architecture", GgufValue::str("llama"));
  w.set("general.name", GgufValue::str("llama2.c import"));
  w.set("llama.context_length", GgufValue::u32(static_cast<uint32_t>(seq_len)));
  w.set("llama.embedding_length", GgufValue::u32(static_cast<uint32_t>(dim)));
  w.set("llama.block_count", GgufValue::u32(static_cast<uint32_t>(n_layers)));
  w.set("llama.feed_forward_length", GgufValue::u32(static_cast<uint32_t>(hidden)));
  w.set("llama.rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(hd)));
  w.set("llama.attention.head_count", GgufValue::u32(static_cast<uint32_t>(n_heads)));
  w.set("llama.attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(n_kv)));
  w.set("llama.attention.layer_norm_rms_epsilon", GgufValue::f32(1e-5f));
  w.set("general.file_type", GgufValue::u32(0));

  // Tokenizer: llama2.c pieces use plain spaces; GGUF SentencePiece vocabularies use U+2581.
  const std::vector<uint8_t> t = read_file(tokenizer_bin);
  Reader tr{t, tokenizer_bin};
  tr.get<int32_t>();  // max token length
  std::vector<GgufValue> tokens, scores, types;
  for (int32_t i = 0; i < vocab; ++i) {
    const float score = tr.get<float>();
    const int32_t len = tr.get<int32_t>();
    KV_CHECK(len >= 0 && static_cast<size_t>(len) <= t.size() - tr.pos, "{}: truncated token {}", tokenizer_bin, i);
    std::string piece(reinterpret_cast<const char*>(t.data() + tr.pos), static_cast<size_t>(len));
    tr.pos += static_cast<size_t>(len);
    int type = 1;
    if (i == 0) {
      type = 2;
    } else if (i == 1 || i == 2) {
      type = 3;
    } else if (piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece.back() == '>') {
      type = 6;
    } else {
      std::string out;
      for (char c : piece) out += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
      piece = out;
    }
    tokens.push_back(GgufValue::str(piece));
    scores.push_back(GgufValue::f32(score));
    types.push_back(GgufValue::i32(type));
  }
  w.set("tokenizer.ggml.model", GgufValue::str("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::array(GgufType::STRING, std::move(tokens)));
  w.set("tokenizer.ggml.scores", GgufValue::array(GgufType::F32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", GgufValue::array(GgufType::I32, std::move(types)));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(1));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(2));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(0));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
  w.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(false));

  // Weights, in llama2.c's order: each field holds that tensor for all layers.
  const auto per_layer = [&](const std::string& name, std::vector<int64_t> dims) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    for (int64_t l = 0; l < L; ++l)
      w.add_tensor("blk." + std::to_string(l) + "." + name, dims, DType::F32, r.floats(static_cast<size_t>(n)));
  };
  w.add_tensor("token_embd.weight", {dim, vocab}, DType::F32, r.floats(static_cast<size_t>(int64_t{vocab} * dim)));
  per_layer("attn_norm.weight", {dim});
  per_layer("attn_q.weight", {dim, dim});
  per_layer("attn_k.weight", {dim, kv_dim});
  per_layer("attn_v.weight", {dim, kv_dim});
  per_layer("attn_output.weight", {dim, dim});
  per_layer("ffn_norm.weight", {dim});
  per_layer("ffn_gate.weight", {dim, hidden});
  per_layer("ffn_down.weight", {hidden, dim});
  per_layer("ffn_up.weight", {dim, hidden});
  w.add_tensor("output_norm.weight", {dim}, DType::F32, r.floats(static_cast<size_t>(dim)));
  r.floats(static_cast<size_t>(seq_len) * static_cast<size_t>(hd));  // legacy RoPE tables, unused
  if (!shared)
    w.add_tensor("output.weight", {dim, vocab}, DType::F32, r.floats(static_cast<size_t>(int64_t{vocab} * dim)));
  KV_CHECK(r.pos == m.size(), "{}: {} unexpected trailing bytes (wrong header?)", model_bin, m.size() - r.pos);
  w.write(out_gguf);
}

}  // namespace kvwise
