// Tokenizers: SentencePiece (stories260K's real vocabulary) and byte-level BPE (a hand-made
// vocabulary with merges, under the gpt2, llama3 and qwen2 pre-tokenizers).
#include <gtest/gtest.h>

#include "model/gguf_writer.h"
#include "model/tokenizer.h"
#include "test_support.h"

namespace kvwise {
namespace {

class SpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KVWISE_REQUIRE_DATA();
    file_ = GgufFile::open(test::stories_gguf());
    tok_ = Tokenizer::from_gguf(*file_);
  }
  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(SpmTest, EncodesWithBosAndSpacePrefix) {
  const auto ids = tok_->encode("Once upon a time", true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 1);  // BOS
  EXPECT_EQ(tok_->token_text(ids[1]).rfind("\xE2\x96\x81", 0), 0u) << "first piece carries the SentencePiece space";
  EXPECT_EQ(tok_->decode(ids), "Once upon a time");
  EXPECT_EQ(tok_->encode("Once", false)[0], tok_->encode("Once", true)[1]);
}

TEST_F(SpmTest, RoundTripsSpacesNewlinesAndUnicode) {
  for (const std::string s :
       {"hello world", "  two  spaces ", "line one\nline two\n\n", "tabs\tand\rreturns",
        "caf\xC3\xA9 na\xC3\xAFve \xE2\x82\xAC 100", "\xF0\x9F\x98\x80 emoji", "Lily's \"ball\"!", "12345 67.89"}) {
    const auto ids = tok_->encode(s, true);
    EXPECT_EQ(tok_->decode(ids), s) << s;
  }
}

TEST_F(SpmTest, UsesByteFallbackOutsideTheVocabulary) {
  // U+4E2D is not among stories260K's 512 pieces: it must become its three UTF-8 bytes.
  const auto ids = tok_->encode("\xE4\xB8\xAD", false);
  std::vector<int32_t> bytes;
  for (int32_t id : ids)
    if (tok_->token_type(id) == TokenType::Byte) bytes.push_back(id);
  ASSERT_EQ(bytes.size(), 3u);
  EXPECT_EQ(tok_->token_text(bytes[0]), "<0xE4>");
  EXPECT_EQ(tok_->token_text(bytes[2]), "<0xAD>");
  EXPECT_EQ(tok_->decode(ids), "\xE4\xB8\xAD");
}

TEST_F(SpmTest, MergesFollowScores) {
  // " the" is a single piece (id 265 in tok512): merging must reach it rather than stop at " t" + "he".
  const auto ids = tok_->encode("the", false);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(tok_->token_text(ids[0]), "\xE2\x96\x81the");
}

TEST_F(SpmTest, EndOfGeneration) {
  EXPECT_TRUE(tok_->is_end_of_generation(2));
  EXPECT_FALSE(tok_->is_end_of_generation(100));
  EXPECT_EQ(tok_->token_to_piece(1), "");  // control tokens render as nothing
}

// A byte-level BPE vocabulary: the 256 byte units, a few merges, and two special tokens.
std::string make_bpe_gguf(const std::string& pre) {
  std::vector<std::string> units;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    units.push_back(s);
  }
  const std::string G = "\xC4\xA0";  // the unit of the space byte
  std::vector<std::string> merges = {"h e",      "l l",       "he ll",      "hell o", G + " w", "o r",
                                     G + "w or", G + "wor l", G + "worl d", "1 2",    "12 3"};
  std::vector<GgufValue> tokens, types, mg;
  for (const auto& u : units) tokens.push_back(GgufValue::str(u));
  for (const auto& m : merges) {
    const size_t sp = m.find(' ');
    tokens.push_back(GgufValue::str(m.substr(0, sp) + m.substr(sp + 1)));
    mg.push_back(GgufValue::str(m));
  }
  tokens.push_back(GgufValue::str("<|start|>"));
  tokens.push_back(GgufValue::str("<|end|>"));
  for (size_t i = 0; i < tokens.size(); ++i) types.push_back(GgufValue::i32(i + 2 >= tokens.size() ? 3 : 1));
  GgufWriter w;
  w.set("general.architecture", GgufValue::str("llama"));
  w.set("tokenizer.ggml.model", GgufValue::str("gpt2"));
  w.set("tokenizer.ggml.pre", GgufValue::str(pre));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(tokens.size() - 2)));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(tokens.size() - 1)));
  w.set("tokenizer.ggml.tokens", GgufValue::array(GgufType::STRING, tokens));
  w.set("tokenizer.ggml.token_type", GgufValue::array(GgufType::I32, types));
  w.set("tokenizer.ggml.merges", GgufValue::array(GgufType::STRING, mg));
  const std::string path = test::temp_path("bpe-" + pre + ".gguf");
  w.write(path);
  return path;
}

TEST(Bpe, MergesByRankAndRoundTrips) {
  auto f = GgufFile::open(make_bpe_gguf("gpt2"));
  auto tok = Tokenizer::from_gguf(*f);
  const auto ids = tok->encode("hello world", false);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(tok->token_text(ids[0]), "hello");
  EXPECT_EQ(tok->token_text(ids[1]), "\xC4\xA0world");
  EXPECT_EQ(tok->decode(ids), "hello world");
  for (const std::string s : {"hello\n\nworld  ", "caf\xC3\xA9 \xE2\x82\xAC", "a\tb\r\nc", "\xFF\xFE raw bytes"})
    EXPECT_EQ(tok->decode(tok->encode(s, false)), s) << s;
  EXPECT_FALSE(tok->add_bos());  // byte-level BPE adds no BOS unless the metadata says so
}

TEST(Bpe, DigitGroupingFollowsThePreTokenizer) {
  // llama3 splits digits in runs of up to three ("123" merges), qwen2 one by one.
  auto f3 = GgufFile::open(make_bpe_gguf("llama-bpe"));
  auto llama3 = Tokenizer::from_gguf(*f3);
  EXPECT_EQ(llama3->encode("1234", false).size(), 2u);  // "123" + "4"
  auto fq = GgufFile::open(make_bpe_gguf("qwen2"));
  auto qwen2 = Tokenizer::from_gguf(*fq);
  EXPECT_EQ(qwen2->encode("1234", false).size(), 4u);
  EXPECT_EQ(qwen2->decode(qwen2->encode("x 1234 y", false)), "x 1234 y");
}

TEST(Bpe, SpecialTokensOnlyWhenAsked) {
  auto f = GgufFile::open(make_bpe_gguf("gpt2"));
  auto tok = Tokenizer::from_gguf(*f);
  const auto parsed = tok->encode("<|start|>hello<|end|>", false, true);
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed[0], tok->bos());
  EXPECT_EQ(parsed[2], tok->eos());
  const auto plain = tok->encode("<|start|>", false, false);
  EXPECT_GT(plain.size(), 1u);  // spelled out as text
}

}  // namespace
}  // namespace kvwise
