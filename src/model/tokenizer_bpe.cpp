// Byte-level BPE (GPT-2 family: llama-3, qwen2, ...): text splits into words with the regex of the
// pre-tokenizer named in tokenizer.ggml.pre, each word's bytes map to printable code points, and
// adjacent symbols merge by lowest merge rank. The regexes run on PCRE2 (Unicode properties).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdio>
#include <map>

#include "base/error.h"
#include "model/tokenizer.h"

namespace kvwise {

namespace {

// Pre-tokenizer regexes as llama.cpp uses them.
const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* kLlama3Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string encode_utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Decodes one code point at s[i]; returns its byte length (1 for invalid bytes, cp = 0xFFFD).
size_t decode_utf8(const std::string& s, size_t i, uint32_t* cp) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *cp = 0xFFFD;
    return 1;
  }
  uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc >> 6) != 2) {
      *cp = 0xFFFD;
      return 1;
    }
    v = (v << 6) | (cc & 0x3F);
  }
  *cp = v;
  return n;
}

class Regex {
 public:
  explicit Regex(const char* pattern) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
    KV_ASSERT(code_ != nullptr, "pre-tokenizer regex does not compile (code {})", err);
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Splits text into consecutive matches; bytes no alternative matches become pieces of their own.
  std::vector<std::string> split(const std::string& text) const {
    std::vector<std::string> out;
    // Match data per call: one tokenizer may serve several threads.
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
    pcre2_match_data* data_ = md.get();
    size_t pos = 0;
    while (pos < text.size()) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos, 0, data_, nullptr);
      if (rc < 0) {
        out.push_back(text.substr(pos));
        break;
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
      if (ov[0] > pos) out.push_back(text.substr(pos, ov[0] - pos));
      if (ov[1] == ov[0]) {  // empty match: step one byte to guarantee progress
        out.push_back(text.substr(ov[0], 1));
        pos = ov[0] + 1;
        continue;
      }
      out.push_back(text.substr(ov[0], ov[1] - ov[0]));
      pos = ov[1];
    }
    return out;
  }

 private:
  pcre2_code* code_ = nullptr;
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(const GgufFile& f) : Tokenizer(f) {
    add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token").value_or(false);
    pre_ = f.get_string("tokenizer.ggml.pre").value_or("default");
    const char* pattern = kGpt2Regex;
    if (pre_ == "llama3" || pre_ == "llama-bpe" || pre_ == "llama-v3" || pre_ == "smaug-bpe")
      pattern = kLlama3Regex;
    else if (pre_ == "qwen2" || pre_ == "deepseek-r1-qwen")
      pattern = kQwen2Regex;
    else if (pre_ != "default" && pre_ != "gpt2" && pre_ != "gpt-2")
      std::fprintf(stderr, "warning: pre-tokenizer '%s' is not known to kvwise; using the GPT-2 regex\n", pre_.c_str());
    regex_ = std::make_unique<Regex>(pattern);
    const GgufValue* merges = f.find("tokenizer.ggml.merges");
    KV_CHECK(merges != nullptr, "{}: byte-level BPE needs tokenizer.ggml.merges", f.path());
    const auto& a = merges->as_array();
    for (size_t i = 0; i < a.size(); ++i) {
      const std::string& m = a[i].as_string();
      const size_t sp = m.find(' ', 1);
      KV_CHECK(sp != std::string::npos, "{}: malformed merge '{}'", f.path(), m);
      ranks_.emplace(std::make_pair(m.substr(0, sp), m.substr(sp + 1)), static_cast<int>(i));
    }
    // GPT-2's reversible byte <-> printable code point map.
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
      byte_to_unit_[b] = encode_utf8(cp);
      unit_to_byte_[cp] = static_cast<uint8_t>(b);
    }
  }
  std::string kind() const override { return "bpe:" + pre_; }

 protected:
  std::string normal_piece(int32_t id) const override {
    const std::string& t = tokens_[static_cast<size_t>(id)];
    std::string out;
    for (size_t i = 0; i < t.size();) {
      uint32_t cp;
      const size_t n = decode_utf8(t, i, &cp);
      auto it = unit_to_byte_.find(cp);
      if (it != unit_to_byte_.end())
        out += static_cast<char>(it->second);
      else
        out += t.substr(i, n);
      i += n;
    }
    return out;
  }

  void encode_text(const std::string& text, bool, std::vector<int32_t>& out) const override {
    for (const std::string& word : regex_->split(text)) {
      std::vector<std::string> sym;
      for (unsigned char c : word) sym.push_back(byte_to_unit_[c]);
      // Merge the lowest-ranked adjacent pair until none is in the merge table (words are short).
      for (;;) {
        int best = -1, best_rank = 0;
        for (size_t i = 0; i + 1 < sym.size(); ++i) {
          auto it = ranks_.find({sym[i], sym[i + 1]});
          if (it != ranks_.end() && (best < 0 || it->second < best_rank)) {
            best = static_cast<int>(i);
            best_rank = it->second;
          }
        }
        if (best < 0) break;
        sym[static_cast<size_t>(best)] += sym[static_cast<size_t>(best) + 1];
        sym.erase(sym.begin() + best + 1);
      }
      for (const std::string& s : sym) {
        const int32_t id = token_id(s);
        if (id >= 0) {
          out.push_back(id);
          continue;
        }
        for (size_t i = 0; i < s.size();) {  // unknown merged symbol: its code points one by one
          uint32_t cp;
          const size_t n = decode_utf8(s, i, &cp);
          const int32_t cid = token_id(s.substr(i, n));
          if (cid >= 0)
            out.push_back(cid);
          else if (unk_ >= 0)
            out.push_back(unk_);
          i += n;
        }
      }
    }
  }

 private:
  std::string pre_;
  std::unique_ptr<Regex> regex_;
  std::map<std::pair<std::string, std::string>, int> ranks_;
  std::string byte_to_unit_[256];
  std::map<uint32_t, uint8_t> unit_to_byte_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(const GgufFile& f) {
  return std::make_unique<BpeTokenizer>(f);
}

}  // namespace kvwise
