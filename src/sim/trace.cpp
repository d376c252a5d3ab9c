#include "sim/trace.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "base/error.h"

namespace kvwise::sim {

uint32_t Trace::block_token_count(const TraceRequest& r, size_t j) const {
  const uint64_t full = static_cast<uint64_t>(block_tokens) * j;
  if (full >= r.input_tokens) return j + 1 == r.blocks.size() ? 1 : static_cast<uint32_t>(block_tokens);
  return static_cast<uint32_t>(std::min<uint64_t>(static_cast<uint64_t>(block_tokens), r.input_tokens - full));
}

namespace {

class BadLines {
 public:
  BadLines(const std::string& path, OnBadLine mode) : path_(path), mode_(mode) {}
  void report(size_t line, const std::string& why) {
    if (mode_ == OnBadLine::Fail) fail("{}:{}: {}", path_, line, why);
    if (count_ < 5) std::fprintf(stderr, "warning: %s:%zu: %s (line skipped)\n", path_.c_str(), line, why.c_str());
    ++count_;
  }
  size_t count() const { return count_; }

 private:
  std::string path_;
  OnBadLine mode_;
  size_t count_ = 0;
};

std::ifstream open_or_fail(const std::string& path) {
  std::ifstream in(path);
  KV_CHECK(in.good(), "{}: cannot open trace", path);
  return in;
}

// Lengths and ids are read exactly: a fraction, a negative number or one past 2^31 is a bad line,
// never cast (a cast of 2^32 + 5 is 5, of NaN undefined).
constexpr int64_t kMaxLength = (int64_t{1} << 31) - 1;

// Lines are parsed whole (simdjson's DOM API): a field can be looked up after another one failed,
// which the on-demand API does not allow (a fuzzer found the use after an error).
using JsonObject = simdjson::dom::object;

simdjson::dom::element field_of(const JsonObject& o, const char* field) {
  simdjson::dom::element v;
  if (o[field].get(v)) throw std::runtime_error(std::string("field '") + field + "' is missing");
  return v;
}

int64_t get_int(const JsonObject& o, const char* field, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) {
  const simdjson::dom::element e = field_of(o, field);
  int64_t v;
  if (e.get_int64().get(v)) {
    double d;
    if (e.get_double().get(d)) throw std::runtime_error(std::string("field '") + field + "': not a number");
    if (!std::isfinite(d) || d != std::floor(d) || std::abs(d) > 9e15)
      throw std::runtime_error(fmt::format("field '{}': {} is not an integer", field, d));
    v = static_cast<int64_t>(d);
  }
  if (v < lo || v > hi) throw std::runtime_error(fmt::format("field '{}': {} is outside [{}, {}]", field, v, lo, hi));
  return v;
}

double get_number(const JsonObject& o, const char* field) {
  double d;
  if (field_of(o, field).get_double().get(d))
    throw std::runtime_error(std::string("field '") + field + "': not a number");
  if (!std::isfinite(d) || d < 0) throw std::runtime_error(fmt::format("field '{}': {} is not a time", field, d));
  return d;
}

std::vector<prefix::BlockKey> get_blocks(const JsonObject& o) {
  simdjson::dom::array arr;
  if (field_of(o, "hash_ids").get_array().get(arr)) throw std::runtime_error("field 'hash_ids': not a list");
  std::vector<prefix::BlockKey> out;
  for (simdjson::dom::element v : arr) {
    int64_t x;
    if (v.get_int64().get(x) || x < 0)
      throw std::runtime_error("field 'hash_ids': not a list of non-negative integers");
    out.push_back(static_cast<prefix::BlockKey>(x));
  }
  return out;
}

// The fields both JSONL schemas share. A prompt of n tokens has at most ceil(n / block_tokens) blocks.
void read_lengths_and_blocks(const JsonObject& o, TraceRequest& r, int block_tokens) {
  r.input_tokens = static_cast<uint32_t>(get_int(o, "input_length", 0, kMaxLength));
  r.output_tokens = static_cast<uint32_t>(get_int(o, "output_length", 0, kMaxLength));
  r.blocks = get_blocks(o);
  const uint64_t most = (static_cast<uint64_t>(r.input_tokens) + static_cast<uint64_t>(block_tokens) - 1) /
                        static_cast<uint64_t>(block_tokens);
  if (r.blocks.size() > most)
    throw std::runtime_error(fmt::format("{} hash ids for {} input tokens (at most {} blocks of {})", r.blocks.size(),
                                         r.input_tokens, most, block_tokens));
}

// A trace most of whose lines are bad is the wrong file or the wrong format, not a trace to replay.
void check_mostly_good(const Trace& t) {
  KV_CHECK(t.skipped_lines <= t.requests.size(), "{}: {} of {} lines are bad (is --format {} right?)", t.source,
           t.skipped_lines, t.skipped_lines + t.requests.size(), t.format);
}

template <typename ParseLine>
Trace read_jsonl(const std::string& path, OnBadLine on_bad, ParseLine parse_line) {
  std::ifstream in = open_or_fail(path);
  Trace t;
  t.source = path;
  BadLines bad(path, on_bad);
  simdjson::dom::parser parser;
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    simdjson::padded_string padded(line);
    try {
      simdjson::dom::element doc;
      auto err = parser.parse(padded).get(doc);
      if (err) throw std::runtime_error(simdjson::error_message(err));
      JsonObject obj;
      err = doc.get_object().get(obj);
      if (err) throw std::runtime_error(std::string("not a JSON object: ") + simdjson::error_message(err));
      TraceRequest r = parse_line(obj);
      if (r.input_tokens == 0 && r.blocks.empty()) throw std::runtime_error("empty request");
      t.requests.push_back(std::move(r));
    } catch (const std::exception& e) {
      bad.report(n, e.what());
    }
  }
  t.skipped_lines = bad.count();
  std::stable_sort(t.requests.begin(), t.requests.end(),
                   [](const TraceRequest& a, const TraceRequest& b) { return a.time < b.time; });
  return t;
}

Trace read_mooncake(const std::string& path, OnBadLine on_bad) {
  Trace t = read_jsonl(path, on_bad, [](const JsonObject& o) {
    TraceRequest r;
    r.time = get_number(o, "timestamp") / 1000.0;  // milliseconds
    read_lengths_and_blocks(o, r, 512);
    return r;
  });
  t.format = "mooncake";
  t.block_tokens = 512;
  check_mostly_good(t);
  return t;
}

Trace read_bailian(const std::string& path, OnBadLine on_bad) {
  Trace t = read_jsonl(path, on_bad, [](const JsonObject& o) {
    TraceRequest r;
    r.chat_id = get_int(o, "chat_id");
    r.parent_chat_id = get_int(o, "parent_chat_id");
    r.time = get_number(o, "timestamp");  // seconds
    std::string_view type;
    if (field_of(o, "type").get_string().get(type)) throw std::runtime_error("field 'type': not a string");
    r.type = std::string(type);
    r.turn = static_cast<int>(get_int(o, "turn", 0, kMaxLength));
    read_lengths_and_blocks(o, r, 16);
    return r;
  });
  t.format = "bailian";
  t.block_tokens = 16;
  check_mostly_good(t);
  return t;
}

// Azure's public traces have arrival times and lengths only. Prefixes come from a documented
// synthetic model: each request opens with one of 16 shared system prompts (Zipf-popular, 2-8
// blocks each, when the prompt is long enough) followed by its own unique blocks.
Trace read_azure(const std::string& path, OnBadLine on_bad, int block_tokens, uint64_t seed) {
  std::ifstream in = open_or_fail(path);
  Trace t;
  t.source = path;
  t.format = "azure";
  t.block_tokens = block_tokens;
  BadLines bad(path, on_bad);
  std::mt19937_64 rng(seed);
  const int n_sys = 16;
  std::vector<double> weights;
  for (int i = 0; i < n_sys; ++i) weights.push_back(1.0 / (i + 1));
  std::discrete_distribution<int> pick(weights.begin(), weights.end());
  std::vector<int> sys_len(n_sys);
  for (int i = 0; i < n_sys; ++i) sys_len[static_cast<size_t>(i)] = 2 + static_cast<int>(rng() % 7);
  prefix::BlockKey next_unique = 1'000'000;
  std::string line;
  size_t n = 0;
  double t0 = -1;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // the shipped CSVs have CRLF line ends
    if (line.empty()) continue;
    if (n == 1 && line.rfind("TIMESTAMP", 0) == 0) continue;
    std::istringstream ss(line);
    std::string ts, ctx, gen;
    if (!std::getline(ss, ts, ',') || !std::getline(ss, ctx, ',') || !std::getline(ss, gen)) {
      bad.report(n, "expected TIMESTAMP,ContextTokens,GeneratedTokens");
      continue;
    }
    int Y, M, D, h, m;
    double s;
    if (std::sscanf(ts.c_str(), "%d-%d-%d %d:%d:%lf", &Y, &M, &D, &h, &m, &s) != 6) {
      bad.report(n, "bad timestamp '" + ts + "'");
      continue;
    }
    if (!std::isfinite(s) || s < 0 || s >= 61 || M < 1 || M > 12 || D < 1 || D > 31 || h < 0 || h > 23 || m < 0 ||
        m > 59) {
      bad.report(n, "bad timestamp '" + ts + "'");
      continue;
    }
    int64_t in_tok = -1, out_tok = -1;
    const auto parse_count = [](const std::string& f, int64_t& v) {
      auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
      return ec == std::errc() && p == f.data() + f.size() && !f.empty();
    };
    if (!parse_count(ctx, in_tok) || !parse_count(gen, out_tok) || in_tok <= 0 || out_tok < 0 || in_tok > kMaxLength ||
        out_tok > kMaxLength) {
      bad.report(n, "bad token counts '" + ctx + "," + gen + "'");
      continue;
    }
    const double secs = ((D * 24.0 + h) * 60.0 + m) * 60.0 + s;  // within one month: enough for offsets
    t0 = t0 < 0 ? secs : std::min(t0, secs);
    TraceRequest r;
    r.time = secs;
    r.input_tokens = static_cast<uint32_t>(in_tok);
    r.output_tokens = static_cast<uint32_t>(out_tok);
    const int n_blocks = static_cast<int>((in_tok + block_tokens - 1) / block_tokens);
    const int sys = pick(rng);
    const int shared = std::min(sys_len[static_cast<size_t>(sys)], n_blocks - 1);
    for (int b = 0; b < shared; ++b) r.blocks.push_back(static_cast<prefix::BlockKey>(sys * 100 + b));
    while (static_cast<int>(r.blocks.size()) < n_blocks) r.blocks.push_back(next_unique++);
    t.requests.push_back(std::move(r));
  }
  t.skipped_lines = bad.count();
  check_mostly_good(t);
  for (TraceRequest& r : t.requests) r.time -= t0;  // from the earliest arrival, whatever the line order
  std::stable_sort(t.requests.begin(), t.requests.end(),
                   [](const TraceRequest& a, const TraceRequest& b) { return a.time < b.time; });
  return t;
}

}  // namespace

std::string detect_format(const std::string& path) {
  if (path.size() >= 4 && path.substr(path.size() - 4) == ".csv") return "azure";
  std::ifstream in = open_or_fail(path);
  std::string first;
  std::getline(in, first);
  return first.find("\"chat_id\"") != std::string::npos ? "bailian" : "mooncake";
}

Trace read_trace(const std::string& path, const std::string& format, OnBadLine on_bad, int azure_block_tokens,
                 uint64_t seed) {
  const std::string f = format.empty() || format == "auto" ? detect_format(path) : format;
  if (f == "mooncake") return read_mooncake(path, on_bad);
  if (f == "bailian") return read_bailian(path, on_bad);
  if (f == "azure") return read_azure(path, on_bad, azure_block_tokens, seed);
  fail("unknown trace format '{}' (mooncake, bailian, azure)", f);
}

void write_bailian(const Trace& trace, const std::string& path) {
  std::ofstream out(path);
  KV_CHECK(out.good(), "{}: cannot create", path);
  for (const auto& r : trace.requests) {
    out << "{\"chat_id\": " << r.chat_id << ", \"parent_chat_id\": " << r.parent_chat_id
        << ", \"timestamp\": " << fmt::format("{:.3f}", r.time) << ", \"input_length\": " << r.input_tokens
        << ", \"output_length\": " << r.output_tokens << ", \"type\": \"" << r.type << "\", \"turn\": " << r.turn
        << ", \"hash_ids\": [";
    for (size_t i = 0; i < r.blocks.size(); ++i) out << (i ? ", " : "") << r.blocks[i];
    out << "]}\n";
  }
  KV_CHECK(out.good(), "{}: write failed", path);
}

}  // namespace kvwise::sim
