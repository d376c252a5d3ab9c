// SentencePiece-style BPE (llama): spaces become U+2581, a space is prefixed to the text, adjacent
// pieces merge greedily by highest score, and characters outside the vocabulary fall back to
// <0xXX> byte tokens. Same algorithm as llama.cpp's llm_tokenizer_spm.
#include <charconv>
#include <queue>

#include "base/error.h"
#include "base/utf8.h"
#include "model/tokenizer.h"

namespace kvwise {

namespace {

const std::string kSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;  // invalid lead byte: treat as one byte (it will fall back to a byte token)
}

class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(const GgufFile& f) : Tokenizer(f) {
    add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
    add_space_prefix_ = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    scores_.assign(tokens_.size(), 0.0f);
    if (const GgufValue* s = f.find("tokenizer.ggml.scores")) {
      const auto& a = s->as_array();
      KV_CHECK(a.size() == tokens_.size(), "{}: {} scores for {} tokens", f.path(), a.size(), tokens_.size());
      for (size_t i = 0; i < a.size(); ++i) scores_[i] = static_cast<float>(a[i].as_float());
    }
    for (int b = 0; b < 256; ++b) byte_token_[b] = token_id(fmt::format("<0x{:02X}>", b));
    // Byte tokens are "<0xHH>"; anything else typed Byte is a broken vocabulary, named here rather
    // than failing when the token is first decoded.
    byte_value_.assign(tokens_.size(), -1);
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (types_[i] != TokenType::Byte) continue;
      const std::string& t = tokens_[i];
      unsigned v = 0;
      const bool ok = t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>' &&
                      std::from_chars(t.data() + 3, t.data() + 5, v, 16).ptr == t.data() + 5;
      KV_CHECK(ok, "{}: token {} is typed as a byte but is \"{}\", not <0xHH>", f.path(), i, utf8_sanitize(t));
      byte_value_[i] = static_cast<int16_t>(v);
    }
  }
  std::string kind() const override { return "spm"; }

 protected:
  bool strips_leading_space() const override { return add_space_prefix_; }

  std::string normal_piece(int32_t id) const override {
    if (byte_value_[static_cast<size_t>(id)] >= 0)
      return std::string(1, static_cast<char>(byte_value_[static_cast<size_t>(id)]));
    const std::string& t = tokens_[static_cast<size_t>(id)];
    std::string s;
    for (size_t i = 0; i < t.size();) {
      if (t.compare(i, kSpace.size(), kSpace) == 0) {
        s += ' ';
        i += kSpace.size();
      } else {
        s += t[i++];
      }
    }
    return s;
  }

  void encode_text(const std::string& raw, bool first, std::vector<int32_t>& out) const override {
    std::string text;
    if (add_space_prefix_ && first) text = kSpace;
    for (char c : raw) {
      if (c == ' ')
        text += kSpace;
      else
        text += c;
    }
    struct Symbol {
      int prev, next;
      size_t start, len;
    };
    std::vector<Symbol> sym;
    for (size_t i = 0; i < text.size();) {
      const size_t n = std::min(utf8_len(static_cast<unsigned char>(text[i])), text.size() - i);
      sym.push_back({static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1, i, n});
      i += n;
    }
    if (sym.empty()) return;
    sym.back().next = -1;
    struct Bigram {
      float score;
      int left, right;
      size_t len;
      bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
    };
    std::priority_queue<Bigram> queue;
    const auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const size_t len = sym[static_cast<size_t>(l)].len + sym[static_cast<size_t>(r)].len;
      const int32_t id = token_id(text.substr(sym[static_cast<size_t>(l)].start, len));
      if (id >= 0) queue.push({scores_[static_cast<size_t>(id)], l, r, len});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));
    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = sym[static_cast<size_t>(b.left)];
      Symbol& r = sym[static_cast<size_t>(b.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale entry
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    for (int i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
      const Symbol& s = sym[static_cast<size_t>(i)];
      const int32_t id = token_id(text.substr(s.start, s.len));
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      for (size_t j = 0; j < s.len; ++j) {  // byte fallback
        const int32_t bt = byte_token_[static_cast<unsigned char>(text[s.start + j])];
        if (bt >= 0)
          out.push_back(bt);
        else if (unk_ >= 0)
          out.push_back(unk_);
      }
    }
  }

 private:
  std::vector<float> scores_;
  int32_t byte_token_[256];
  std::vector<int16_t> byte_value_;  // per token: its byte for "<0xHH>" byte tokens, else -1
  bool add_space_prefix_ = true;
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(const GgufFile& f) {
  return std::make_unique<SpmTokenizer>(f);
}

}  // namespace kvwise
