#include "model/tokenizer.h"

#include <algorithm>

#include "base/error.h"

namespace kvwise {

Tokenizer::Tokenizer(const GgufFile& f) {
  const GgufValue* toks = f.find("tokenizer.ggml.tokens");
  KV_CHECK(toks && toks->type == GgufType::ARRAY && toks->elem_type == GgufType::STRING,
           "{}: tokenizer.ggml.tokens missing or not a string array", f.path());
  for (const auto& t : toks->as_array()) tokens_.push_back(t.as_string());
  KV_CHECK(!tokens_.empty(), "{}: empty vocabulary", f.path());
  types_.assign(tokens_.size(), TokenType::Normal);
  if (const GgufValue* ty = f.find("tokenizer.ggml.token_type")) {
    const auto& a = ty->as_array();
    KV_CHECK(a.size() == tokens_.size(), "{}: token_type has {} entries for {} tokens", f.path(), a.size(),
             tokens_.size());
    for (size_t i = 0; i < a.size(); ++i) types_[i] = static_cast<TokenType>(a[i].as_int());
  }
  for (size_t i = 0; i < tokens_.size(); ++i) index_.emplace(tokens_[i], static_cast<int32_t>(i));
  const auto id = [&](const char* key, int32_t def) {
    const auto v = f.get_int(key);
    const int64_t x = v.value_or(def);
    KV_CHECK(x >= -1 && x < static_cast<int64_t>(tokens_.size()), "{}: {} = {} is outside the vocabulary", f.path(),
             key, x);
    return static_cast<int32_t>(x);
  };
  bos_ = id("tokenizer.ggml.bos_token_id", -1);
  eos_ = id("tokenizer.ggml.eos_token_id", -1);
  eot_ = id("tokenizer.ggml.eot_token_id", -1);
  unk_ = id("tokenizer.ggml.unknown_token_id", -1);
  add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  for (size_t i = 0; i < tokens_.size(); ++i)
    if ((types_[i] == TokenType::Control || types_[i] == TokenType::UserDefined) && !tokens_[i].empty())
      specials_by_length_.push_back(static_cast<int32_t>(i));
  std::stable_sort(specials_by_length_.begin(), specials_by_length_.end(),
                   [&](int32_t a, int32_t b) { return tokens_[a].size() > tokens_[b].size(); });
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model").value_or("");
  if (model == "llama") return make_spm_tokenizer(f);
  if (model == "gpt2") return make_bpe_tokenizer(f);
  fail("{}: unsupported tokenizer '{}' (kvwise supports 'llama' SentencePiece and 'gpt2' byte-level BPE)", f.path(),
       model);
}

int32_t Tokenizer::token_id(const std::string& text) const {
  auto it = index_.find(text);
  return it == index_.end() ? -1 : it->second;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return id == eos_ || (eot_ >= 0 && id == eot_);
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
  bool first = true;
  size_t start = 0, i = 0;
  const auto flush = [&](size_t end) {
    if (end > start) encode_text(text.substr(start, end - start), first, out);
    first = false;
  };
  if (parse_special) {
    while (i < text.size()) {
      int32_t match = -1;
      for (int32_t s : specials_by_length_)
        if (text.compare(i, tokens_[static_cast<size_t>(s)].size(), tokens_[static_cast<size_t>(s)]) == 0) {
          match = s;
          break;
        }
      if (match < 0) {
        ++i;
        continue;
      }
      if (i > start) flush(i);
      out.push_back(match);
      first = true;  // as llama.cpp: text after a special token gets the SentencePiece prefix again
      i += tokens_[static_cast<size_t>(match)].size();
      start = i;
    }
  }
  if (text.size() > start) flush(text.size());
  if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  KV_CHECK(id >= 0 && id < n_vocab(), "token id {} is outside the vocabulary of {}", id, n_vocab());
  switch (types_[static_cast<size_t>(id)]) {
    case TokenType::Control:
    case TokenType::Unknown:
    case TokenType::Unused:
      return render_special ? tokens_[static_cast<size_t>(id)] : "";
    case TokenType::UserDefined:
      return tokens_[static_cast<size_t>(id)];
    default:
      return normal_piece(id);
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  bool at_start = true;
  for (int32_t id : ids) {
    std::string piece = token_to_piece(id);
    if (at_start && !piece.empty()) {
      if (strips_leading_space() && piece[0] == ' ') piece.erase(0, 1);
      at_start = false;
    }
    out += piece;
  }
  return out;
}

}  // namespace kvwise
