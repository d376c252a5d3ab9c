// GGUF reading and writing: round trips of every value type, and clear errors (never crashes or
// out-of-bounds reads: the sanitizer build runs this too) for corrupt and truncated files.
#include <gtest/gtest.h>

#include <random>

#include "base/error.h"
#include "model/convert.h"
#include "model/forward.h"
#include "model/gguf_writer.h"
#include "test_support.h"

namespace kvwise {
namespace {

using test::read_file;
using test::temp_path;
using test::write_file;

TEST(Gguf, RoundTripsEveryValueType) {
  GgufWriter w;
  w.set("u8", {GgufType::U8, GgufType::U8, uint64_t{200}});
  w.set("i8", {GgufType::I8, GgufType::U8, int64_t{-100}});
  w.set("u16", {GgufType::U16, GgufType::U8, uint64_t{60000}});
  w.set("i16", {GgufType::I16, GgufType::U8, int64_t{-30000}});
  w.set("u32", GgufValue::u32(4000000000u));
  w.set("i32", GgufValue::i32(-2000000000));
  w.set("u64", {GgufType::U64, GgufType::U8, uint64_t{1} << 40});
  w.set("i64", {GgufType::I64, GgufType::U8, int64_t{-1} << 40});
  w.set("f32", GgufValue::f32(1.5f));
  w.set("f64", {GgufType::F64, GgufType::U8, 2.25});
  w.set("bool", GgufValue::boolean(true));
  w.set("str", GgufValue::str("héllo"));
  w.set("arr", GgufValue::array(GgufType::I32, {GgufValue::i32(1), GgufValue::i32(-2), GgufValue::i32(3)}));
  w.set("strs", GgufValue::array(GgufType::STRING, {GgufValue::str("a"), GgufValue::str("")}));
  std::vector<uint8_t> data(3 * 4 * 4);
  w.add_tensor("t0", {3, 4}, DType::F32, data);
  w.add_tensor("t1", {32}, DType::Q8_0, std::vector<uint8_t>(34, 1));
  const std::string path = temp_path("rt.gguf");
  w.write(path);

  auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_int("u8"), 200);
  EXPECT_EQ(f->get_int("i8"), -100);
  EXPECT_EQ(f->get_int("u16"), 60000);
  EXPECT_EQ(f->get_int("i16"), -30000);
  EXPECT_EQ(f->get_int("u32"), 4000000000LL);
  EXPECT_EQ(f->get_int("i32"), -2000000000);
  EXPECT_EQ(f->get_int("u64"), int64_t{1} << 40);
  EXPECT_EQ(f->get_int("i64"), int64_t{-1} << 40);
  EXPECT_EQ(f->get_float("f32"), 1.5);
  EXPECT_EQ(f->get_float("f64"), 2.25);
  EXPECT_EQ(f->get_bool("bool"), true);
  EXPECT_EQ(f->get_string("str"), "héllo");
  ASSERT_EQ(f->find("arr")->as_array().size(), 3u);
  EXPECT_EQ(f->find("arr")->as_array()[1].as_int(), -2);
  EXPECT_EQ(f->find("strs")->as_array()[1].as_string(), "");
  const GgufTensorInfo* t1 = f->find_tensor("t1");
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(t1->type, DType::Q8_0);
  EXPECT_EQ(t1->offset % 32, 0u);
  EXPECT_EQ(f->tensor_data(*t1)[5], 1);
  EXPECT_THROW(f->get_string("u8"), Error);  // wrong type is an error, not garbage
}

std::string make_tiny_model() {
  const std::string path = temp_path("tiny.gguf");
  make_random_model(model_shape("tiny"), path);
  return path;
}

void expect_error(const std::string& bytes, const std::string& needle) {
  const std::string path = temp_path("bad.gguf");
  write_file(path, bytes);
  try {
    Model::load(path);
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Gguf, ClearErrorsForBrokenHeaders) {
  const std::string good = read_file(make_tiny_model());
  expect_error("", "not a GGUF file");
  expect_error("GGML" + good.substr(4), "bad magic");
  std::string v1 = good;
  v1[4] = 1;
  expect_error(v1, "unsupported GGUF version 1");
  expect_error(good.substr(0, 20), "truncated");
  expect_error(good.substr(0, good.size() - 100), "outside the file");
  EXPECT_THROW(Model::load(temp_path("does-not-exist.gguf")), Error);
}

TEST(Gguf, MissingTensorIsNamed) {
  const std::string path = make_tiny_model();
  auto f = GgufFile::open(path);
  GgufWriter w;
  copy_metadata(*f, w);
  for (const auto& t : f->tensors())
    if (t.name != "blk.1.ffn_up.weight")
      w.add_tensor(t.name, t.dims, t.type, std::vector<uint8_t>(f->tensor_data(t), f->tensor_data(t) + t.bytes));
  const std::string out = temp_path("missing.gguf");
  w.write(out);
  try {
    Model::load(out);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.1.ffn_up.weight"), std::string::npos) << e.what();
  }
}

// Fuzz-style: every truncation of the header region and many random byte mutations either load
// or raise kvwise::Error. Any crash or out-of-bounds read fails the (sanitized) test binary.
TEST(Gguf, MutatedFilesNeverCrash) {
  const std::string good = read_file(make_tiny_model());
  const std::string path = temp_path("fuzz.gguf");
  int loaded = 0, rejected = 0;
  const auto attempt = [&](const std::string& bytes) {
    write_file(path, bytes);
    try {
      auto m = Model::load(path);
      EngineOptions o;
      o.ctx = 8;
      Engine e(*m, o);
      const SeqId s = e.new_sequence();
      const std::vector<int32_t> toks{1, 5, 9};
      e.prefill(s, toks);
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::bad_alloc&) {
      ++rejected;
    }
  };
  // Header and metadata region: the first 4 KiB, every 7th length.
  for (size_t n = 0; n < std::min<size_t>(good.size(), 4096); n += 7) attempt(good.substr(0, n));
  std::mt19937 rng(42);
  const size_t header = std::min<size_t>(good.size(), 16384);
  for (int i = 0; i < 400; ++i) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bad[rng() % header] = static_cast<char>(rng());
    attempt(bad);
  }
  EXPECT_GT(rejected, 500);
  EXPECT_GT(loaded, 0);  // some mutations only touch values that are still valid
}

}  // namespace
}  // namespace kvwise
