#include "sim/trace.h"

#include <simdjson.h>

#include <algorithm>
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

int64_t get_int(simdjson::ondemand::object& o, const char* field) {
  int64_t v;
  auto err = o[field].get_int64().get(v);
  if (err) {
    double d;
    if (o[field].get_double().get(d) == simdjson::SUCCESS) return static_cast<int64_t>(d);
    throw std::runtime_error(std::string("field '") + field + "': " + simdjson::error_message(err));
  }
  return v;
}

double get_number(simdjson::ondemand::object& o, const char* field) {
  double d;
  auto err = o[field].get_double().get(d);
  if (err) throw std::runtime_error(std::string("field '") + field + "': " + simdjson::error_message(err));
  return d;
}

std::vector<prefix::BlockKey> get_blocks(simdjson::ondemand::object& o) {
  simdjson::ondemand::array arr;
  auto err = o["hash_ids"].get_array().get(arr);
  if (err) throw std::runtime_error(std::string("field 'hash_ids': ") + simdjson::error_message(err));
  std::vector<prefix::BlockKey> out;
  for (auto v : arr) {
    int64_t x;
    if (v.get_int64().get(x) || x < 0)
      throw std::runtime_error("field 'hash_ids': not a list of non-negative integers");
    out.push_back(static_cast<prefix::BlockKey>(x));
  }
  return out;
}

// The fields both JSONL schemas share.
void read_lengths_and_blocks(simdjson::ondemand::object& o, TraceRequest& r) {
  r.input_tokens = static_cast<uint32_t>(get_int(o, "input_length"));
  r.output_tokens = static_cast<uint32_t>(get_int(o, "output_length"));
  r.blocks = get_blocks(o);
}

template <typename ParseLine>
Trace read_jsonl(const std::string& path, OnBadLine on_bad, ParseLine parse_line) {
  std::ifstream in = open_or_fail(path);
  Trace t;
  t.source = path;
  BadLines bad(path, on_bad);
  simdjson::ondemand::parser parser;
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    simdjson::padded_string padded(line);
    try {
      simdjson::ondemand::document doc;
      auto err = parser.iterate(padded).get(doc);
      if (err) throw std::runtime_error(simdjson::error_message(err));
      simdjson::ondemand::object obj;
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
  Trace t = read_jsonl(path, on_bad, [](simdjson::ondemand::object& o) {
    TraceRequest r;
    r.time = get_number(o, "timestamp") / 1000.0;  // milliseconds
    read_lengths_and_blocks(o, r);
    return r;
  });
  t.format = "mooncake";
  t.block_tokens = 512;
  return t;
}

Trace read_bailian(const std::string& path, OnBadLine on_bad) {
  Trace t = read_jsonl(path, on_bad, [](simdjson::ondemand::object& o) {
    TraceRequest r;
    r.chat_id = get_int(o, "chat_id");
    r.parent_chat_id = get_int(o, "parent_chat_id");
    r.time = get_number(o, "timestamp");  // seconds
    std::string_view type;
    if (o["type"].get_string().get(type)) throw std::runtime_error("field 'type': not a string");
    r.type = std::string(type);
    r.turn = static_cast<int>(get_int(o, "turn"));
    read_lengths_and_blocks(o, r);
    return r;
  });
  t.format = "bailian";
  t.block_tokens = 16;
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
    char* end1;
    char* end2;
    const long in_tok = std::strtol(ctx.c_str(), &end1, 10), out_tok = std::strtol(gen.c_str(), &end2, 10);
    if (*end1 != '\0' || *end2 != '\0' || in_tok <= 0 || out_tok < 0) {
      bad.report(n, "bad token counts");
      continue;
    }
    const double secs = ((D * 24.0 + h) * 60.0 + m) * 60.0 + s;  // within one month: enough for offsets
    if (t0 < 0) t0 = secs;
    TraceRequest r;
    r.time = secs - t0;
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
