// Tokenizers built from GGUF metadata: SentencePiece-style BPE with byte fallback
// (tokenizer.ggml.model = "llama") and byte-level BPE ("gpt2", with the pre-tokenizer regex the
// metadata names). BOS/EOS and the SentencePiece space prefix follow llama.cpp's rules.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/gguf.h"

namespace kvwise {

enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6
};

class Tokenizer {
 public:
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& f);
  virtual ~Tokenizer() = default;

  // add_special: BOS first (and EOS last) when the model's metadata asks for them.
  // parse_special: control/user-defined token texts in `text` (e.g. "<|im_start|>") become those tokens.
  std::vector<int32_t> encode(const std::string& text, bool add_special, bool parse_special = false) const;
  // The bytes a token stands for; control tokens give "" (unless render_special).
  std::string token_to_piece(int32_t id, bool render_special = false) const;
  // Concatenated pieces; drops the space SentencePiece puts before the first word of a text.
  std::string decode(const std::vector<int32_t>& ids) const;

  int n_vocab() const { return static_cast<int>(tokens_.size()); }
  const std::string& token_text(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  TokenType token_type(int32_t id) const { return types_.at(static_cast<size_t>(id)); }
  int32_t token_id(const std::string& text) const;  // -1 when absent
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool is_end_of_generation(int32_t id) const;
  virtual std::string kind() const = 0;

 protected:
  explicit Tokenizer(const GgufFile& f);
  // Tokenizes plain text (no special tokens). first: the fragment starts the text (SentencePiece prefix).
  virtual void encode_text(const std::string& text, bool first, std::vector<int32_t>& out) const = 0;
  virtual std::string normal_piece(int32_t id) const = 0;
  virtual bool strips_leading_space() const { return false; }

  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, int32_t> index_;
  std::vector<int32_t> specials_by_length_;  // control and user-defined tokens, longest first
  int32_t bos_ = -1, eos_ = -1, eot_ = -1, unk_ = -1;
  bool add_bos_ = false, add_eos_ = false;
};

std::unique_ptr<Tokenizer> make_spm_tokenizer(const GgufFile& f);
std::unique_ptr<Tokenizer> make_bpe_tokenizer(const GgufFile& f);

}  // namespace kvwise
