// Hostile and careless input below the server: policy specs that recurse or name files, text that is
// not UTF-8, tasks that throw, planted symlinks, broken vocabularies and malformed trace lines. Each
// must end in a clear kvwise::Error (or a safe result), never a crash, a cast or a followed link.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "base/error.h"
#include "base/private_files.h"
#include "base/thread_pool.h"
#include "base/utf8.h"
#include "compress/policy_spec.h"
#include "compress/registry.h"
#include "compress/specache.h"
#include "model/convert.h"
#include "model/forward.h"
#include "sim/trace.h"
#include "test_support.h"

namespace kvwise {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A fresh private directory for one test, removed at the end.
struct TempDir {
  std::string path = make_private_dir("", "kvwise-test");
  ~TempDir() { std::filesystem::remove_all(path); }
};

// A failed invariant is a bug, not the user's error: the server maps Error to 400 and anything else
// (InternalError included) to 500.
TEST(InternalErrors, AreNotUserErrors) {
  try {
    KV_ASSERT(1 + 1 == 3, "arithmetic of {} broke", "kvwise");
    FAIL();
  } catch (const Error&) {
    FAIL() << "an InternalError must not be caught as a user Error";
  } catch (const InternalError& e) {
    EXPECT_STREQ(e.what(), "internal error: arithmetic of kvwise broke");
  }
}

TEST(PolicySpecLimits, DeepNestingIsAnErrorNotAStackOverflow) {
  std::string deep;
  for (int i = 0; i < 30000; ++i) deep += "a(";
  EXPECT_NE(error_of([&] { parse_policy_spec(deep); }).find("at most"), std::string::npos);
  std::string nested = "snapkv";
  for (int i = 0; i < 20; ++i) nested = "adakv(" + nested + ")";
  EXPECT_NE(error_of([&] { parse_policy_spec(nested); }).find("nested deeper"), std::string::npos);
  // Within the limits a composition still parses.
  EXPECT_EQ(parse_policy_spec("mikv(adakv(snapkv(window=8)))").to_string(), "mikv(adakv(snapkv(window=8)))");
}

TEST(PolicySpecLimits, LongSpecsAreCutInMessages) {
  const std::string junk = "snapkv(" + std::string(900, 'x') + "=1,)";
  const std::string e = error_of([&] { parse_policy_spec(junk); });
  ASSERT_FALSE(e.empty());
  EXPECT_LT(e.size(), 300u) << e;
}

TEST(UntrustedPolicies, ParametersThatNameFilesAreRefusedWithoutEchoingThem) {
  PolicySource request{false, {}, {}, {}};
  for (const std::string spec : {"specache(path=/tmp/kvwise-secret)", "specache(dir=/tmp/kvwise-secret)",
                                 "gate(file=/tmp/kvwise-secret)", "mikv(specache(path=/tmp/kvwise-secret))"}) {
    const std::string e = error_of([&] { make_policy(spec, Budget::parse("0.5"), request); });
    EXPECT_NE(e.find("names a file"), std::string::npos) << spec << ": " << e;
    EXPECT_EQ(e.find("kvwise-secret"), std::string::npos) << spec << ": " << e;
  }
  const std::string e =
      error_of([&] { make_policy("baklava(profile=/tmp/kvwise-secret)", Budget::parse("0.5"), request); });
  EXPECT_NE(e.find("no BaKlaVa profile"), std::string::npos) << e;
  EXPECT_EQ(e.find("kvwise-secret"), std::string::npos) << e;
  // The CLI (trusted) still takes paths.
  EXPECT_NO_THROW(make_policy("specache(dir=/tmp)", Budget{}));
}

TEST(UntrustedPolicies, RegisteredNamesResolveToTheOperatorsFiles) {
  PolicySource request{false, {{"small", "/srv/gates/small.gate.gguf"}}, {}, "/srv/cold"};
  const auto gate = make_policy("gate(name=small)", Budget{}, request);
  ASSERT_TRUE(gate->gate);
  EXPECT_EQ(gate->gate->file, "/srv/gates/small.gate.gguf");
  const std::string e = error_of([&] { make_policy("gate(name=big)", Budget{}, request); });
  EXPECT_NE(e.find("no gate named 'big'"), std::string::npos) << e;
  EXPECT_NE(e.find("known: small"), std::string::npos) << e;
  const auto spe = make_policy("specache", Budget{}, request);
  EXPECT_EQ(spe->specache->dir, "/srv/cold");
}

TEST(Utf8, HoldsBackOnlyUnfinishedCharacters) {
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix("ab\xE4\xB8"), 2u);      // 中 cut after two of three bytes
  EXPECT_EQ(utf8_complete_prefix("ab\xE4\xB8\xAD"), 5u);  // complete
  EXPECT_EQ(utf8_complete_prefix("ab\xF0\x9F\x98"), 2u);  // an emoji cut short
  EXPECT_EQ(utf8_complete_prefix("ab\xFF"), 3u);          // never valid: not held back
  EXPECT_EQ(utf8_complete_prefix("ab\xE4"
                                 "a"),
            4u);  // broken by what follows
  EXPECT_EQ(utf8_sanitize("a\xFF"
                          "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(utf8_sanitize("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
  EXPECT_EQ(utf8_sanitize("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(utf8_sanitize("\xE4\xB8\xAD"), "\xE4\xB8\xAD");
  EXPECT_TRUE(utf8_valid("\xE4\xB8\xAD"));
  EXPECT_FALSE(utf8_valid("\xE4\xB8"));
  // Sanitizing at the split points utf8_complete_prefix chooses equals sanitizing the whole text.
  const std::string text = "x\xE4\xB8\xAD\xFF\xF0\x9F\x98\x80y\xE4z";
  std::string pieces;
  size_t emitted = 0;
  for (size_t end = 1; end <= text.size(); ++end) {
    const size_t safe = emitted + utf8_complete_prefix(std::string_view(text).substr(emitted, end - emitted));
    pieces += utf8_sanitize(std::string_view(text).substr(emitted, safe - emitted));
    emitted = safe;
  }
  pieces += utf8_sanitize(std::string_view(text).substr(emitted));
  EXPECT_EQ(pieces, utf8_sanitize(text));
  EXPECT_TRUE(utf8_valid(pieces));
}

TEST(ThreadPoolErrors, AnExceptionInATaskReachesTheCaller) {
  ThreadPool pool(3);
  std::atomic<int> ran{0};
  EXPECT_THROW(pool.parallel_tasks(64,
                                   [&](size_t i, int) {
                                     ++ran;
                                     if (i == 5) throw std::runtime_error("task 5 failed");
                                   }),
               std::runtime_error);
  // The pool is usable afterwards and the error does not leak into the next job.
  std::atomic<int> sum{0};
  pool.parallel_for(100, [&](size_t b, size_t e, int) { sum += static_cast<int>(e - b); });
  EXPECT_EQ(sum.load(), 100);
  EXPECT_THROW(pool.parallel_for(10, [](size_t, size_t, int) { throw Error("every chunk"); }), Error);
}

TEST(PrivateFiles, CreateExclusiveNeverFollowsOrReusesAFile) {
  TempDir d;
  const std::string target = d.path + "/target", link = d.path + "/link";
  test::write_file(target, "keep");
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  EXPECT_LT(create_exclusive(link), 0);    // a planted symlink is not followed
  EXPECT_LT(create_exclusive(target), 0);  // an existing file is not reused
  EXPECT_EQ(test::read_file(target), "keep");
  const int fd = create_exclusive(d.path + "/new");
  ASSERT_GE(fd, 0);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ::close(fd);
}

TEST(PrivateFiles, OperatorDirectoriesAreChecked) {
  TempDir d;
  struct stat st {};
  ASSERT_EQ(::stat(d.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  const std::string fresh = d.path + "/fresh";
  EXPECT_EQ(checked_private_dir(fresh), fresh);  // made with 0700
  ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  const std::string open_dir = d.path + "/open";
  ASSERT_EQ(::mkdir(open_dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(open_dir.c_str(), 0777), 0);
  EXPECT_NE(error_of([&] { checked_private_dir(open_dir); }).find("writable by group or others"), std::string::npos);
  const std::string link = d.path + "/link";
  ASSERT_EQ(::symlink(fresh.c_str(), link.c_str()), 0);
  EXPECT_NE(error_of([&] { checked_private_dir(link); }).find("symbolic link"), std::string::npos);
}

TEST(PrivateFiles, SpeCacheColdFilesLiveInAPrivateDirectory) {
  TempDir d;
  SpeCacheConfig cfg;
  cfg.dir = d.path;
  {
    ColdTier tier(cfg, 2, 2, 64, 16);
    const std::string dir = std::filesystem::path(tier.path()).parent_path();
    EXPECT_NE(dir, d.path);  // a fresh directory inside the given one
    struct stat st {};
    ASSERT_EQ(::lstat(dir.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0700u);
  }
  EXPECT_TRUE(std::filesystem::is_empty(d.path));  // removed with the tier
}

TEST(BadVocabulary, AByteTokenThatIsNotHexIsNamed) {
  const std::string path = test::temp_path("bad-byte-vocab.gguf");
  make_random_model(model_shape("tiny"), path);
  std::string bytes = test::read_file(path);
  const size_t at = bytes.find("<0x41>");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 6, "<0xZZ>");  // same length: the file stays well-formed
  test::write_file(path, bytes);
  const std::string e = error_of([&] { Model::load(path); });
  EXPECT_NE(e.find("<0xZZ>"), std::string::npos) << e;
  EXPECT_NE(e.find("token 68"), std::string::npos) << e;  // 3 specials, then bytes: 0x41 is token 68
}

// Trace lines: CRLF ends, lengths that do not fit, times that are not numbers, too many hash ids.
TEST(TraceInput, AzureCsvWithCrlfLineEnds) {
  const std::string path = test::temp_path("crlf.csv");
  test::write_file(path,
                   "TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:15:46.6805900,374,44\r\n"
                   "2023-11-16 18:15:50.9951690,396,109\r\n2023-11-16 18:15:51.2,879,29\r\n");
  const sim::Trace t = sim::read_trace(path, "azure", sim::OnBadLine::Fail);
  ASSERT_EQ(t.requests.size(), 3u);
  EXPECT_EQ(t.requests[2].input_tokens, 879u);
  EXPECT_EQ(t.requests[2].output_tokens, 29u);
}

TEST(TraceInput, OutOfRangeValuesAreBadLinesNotCasts) {
  const std::string ok = R"({"timestamp": 0, "input_length": 600, "output_length": 4, "hash_ids": [1, 2]})";
  for (const std::string line :
       {R"({"timestamp": 0, "input_length": -3, "output_length": 4, "hash_ids": []})",
        R"({"timestamp": 0, "input_length": 4294967301, "output_length": 4, "hash_ids": [1]})",
        R"({"timestamp": 0, "input_length": 512.5, "output_length": 4, "hash_ids": [1]})",
        R"({"timestamp": -1, "input_length": 5, "output_length": 4, "hash_ids": [1]})",
        R"({"timestamp": 1e400, "input_length": 5, "output_length": 4, "hash_ids": [1]})",
        R"({"timestamp": 0, "input_length": 1, "output_length": 4, "hash_ids": [1, 2, 3, 4]})"}) {
    const std::string path = test::temp_path("bad.jsonl");
    test::write_file(path, ok + "\n" + line + "\n");
    const std::string e = error_of([&] { sim::read_trace(path, "mooncake", sim::OnBadLine::Fail); });
    EXPECT_NE(e.find(":2:"), std::string::npos) << line << " -> " << e;
    const sim::Trace t = sim::read_trace(path, "mooncake", sim::OnBadLine::Skip);
    EXPECT_EQ(t.requests.size(), 1u) << line;
    EXPECT_EQ(t.skipped_lines, 1u) << line;
  }
}

// Times count from the earliest arrival whatever the line order (a fuzzer found negative times).
TEST(TraceInput, AzureTimesStartAtTheEarliestLine) {
  const std::string path = test::temp_path("unordered.csv");
  test::write_file(path, "2023-11-16 18:15:50.5,396,109\n2023-11-16 18:15:46.5,374,44\n");
  const sim::Trace t = sim::read_trace(path, "azure", sim::OnBadLine::Fail);
  ASSERT_EQ(t.requests.size(), 2u);
  EXPECT_DOUBLE_EQ(t.requests[0].time, 0.0);
  EXPECT_DOUBLE_EQ(t.requests[1].time, 4.0);
}

TEST(TraceInput, ARunThatSkipsMostLinesFails) {
  const std::string path = test::temp_path("mostly-bad.csv");
  test::write_file(path, "2023-11-16 18:15:46.68,374,44\nnonsense\nmore nonsense\n");
  EXPECT_NE(error_of([&] { sim::read_trace(path, "azure"); }).find("2 of 3 lines are bad"), std::string::npos);
}

}  // namespace
}  // namespace kvwise
