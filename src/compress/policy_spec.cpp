#include "compress/policy_spec.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "base/error.h"

namespace kvwise {

namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  PolicySpec parse() {
    PolicySpec spec = parse_spec();
    skip_space();
    if (i_ != s_.size()) fail_at("unexpected '" + std::string(1, s_[i_]) + "'");
    return spec;
  }

 private:
  [[noreturn]] void fail_at(const std::string& what) const {
    const std::string shown = s_.size() > 80 ? std::string(s_.substr(0, 80)) + "..." : std::string(s_);
    fail("policy spec \"{}\": {} at column {}", shown, what, i_ + 1);
  }
  void skip_space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  static bool word_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '/' || c == '+';
  }
  std::string word() {
    skip_space();
    const size_t start = i_;
    while (i_ < s_.size() && word_char(s_[i_])) ++i_;
    if (i_ == start)
      fail_at(i_ < s_.size() ? "expected a name, found '" + std::string(1, s_[i_]) + "'" : "expected a name");
    return std::string(s_.substr(start, i_ - start));
  }
  PolicySpec parse_spec() {
    if (++depth_ > kMaxPolicySpecDepth) fail_at(fmt::format("nested deeper than {} levels", kMaxPolicySpecDepth));
    PolicySpec spec;
    spec.name = word();
    for (char& c : spec.name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    skip_space();
    if (i_ < s_.size() && s_[i_] == '(') {
      ++i_;
      for (;;) {
        const size_t item_start = i_;
        std::string w = word();
        skip_space();
        if (i_ < s_.size() && s_[i_] == '=') {
          ++i_;
          std::string value = word();
          for (char& c : w) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          if (!spec.params.emplace(w, value).second) fail_at("parameter '" + w + "' given twice");
        } else {
          i_ = item_start;
          spec.inner.push_back(parse_spec());
        }
        skip_space();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ')') {
          ++i_;
          break;
        }
        fail_at("expected ',' or ')'");
      }
    }
    --depth_;
    return spec;
  }

  std::string_view s_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

std::string PolicySpec::to_string() const {
  std::string out = name;
  if (inner.empty() && params.empty()) return out;
  out += '(';
  bool first = true;
  for (const PolicySpec& s : inner) {
    if (!first) out += ',';
    out += s.to_string();
    first = false;
  }
  for (const auto& [k, v] : params) {
    if (!first) out += ',';
    out += k + "=" + v;
    first = false;
  }
  out += ')';
  return out;
}

PolicySpec parse_policy_spec(std::string_view text) {
  KV_CHECK(!text.empty(), "empty KV policy spec");
  KV_CHECK(text.size() <= kMaxPolicySpecLength, "KV policy spec is {} bytes long; at most {} are allowed", text.size(),
           kMaxPolicySpecLength);
  return Parser(text).parse();
}

std::vector<std::string> split_policy_list(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    KV_CHECK(depth >= 0, "policy list: unbalanced parentheses");
    if (c == ',' && depth == 0) {
      out.push_back(cur);
      cur.clear();
    } else if (!std::isspace(static_cast<unsigned char>(c))) {
      cur += c;
    }
  }
  KV_CHECK(depth == 0, "policy list: unbalanced parentheses");
  out.push_back(cur);
  for (const auto& s : out) KV_CHECK(!s.empty(), "policy list \"{}\" has an empty entry", std::string(text));
  return out;
}

const std::string* SpecParams::find(const std::string& key) {
  auto it = spec_.params.find(key);
  if (it == spec_.params.end()) return nullptr;
  used_.push_back(key);
  return &it->second;
}

int SpecParams::get_int(const std::string& key, int def, int min_value, int max_value) {
  const std::string* v = find(key);
  if (v == nullptr) return def;
  int x = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
  KV_CHECK(ec == std::errc() && p == v->data() + v->size(), "{}: {}={} is not an integer", spec_.name, key, *v);
  KV_CHECK(x >= min_value && x <= max_value, "{}: {}={} is outside [{}, {}]", spec_.name, key, x, min_value, max_value);
  return x;
}

double SpecParams::get_double(const std::string& key, double def, double min_value, double max_value) {
  const std::string* v = find(key);
  if (v == nullptr) return def;
  double x = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
  KV_CHECK(ec == std::errc() && p == v->data() + v->size(), "{}: {}={} is not a number", spec_.name, key, *v);
  KV_CHECK(x >= min_value && x <= max_value, "{}: {}={} is outside [{}, {}]", spec_.name, key, x, min_value, max_value);
  return x;
}

std::string SpecParams::get_choice(const std::string& key, const std::string& def,
                                   const std::vector<std::string>& choices) {
  const std::string* v = find(key);
  if (v == nullptr) return def;
  if (std::find(choices.begin(), choices.end(), *v) == choices.end()) {
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
    fail("{}: {}={} is not one of {}", spec_.name, key, *v, list);
  }
  return *v;
}

std::string SpecParams::get_string(const std::string& key, const std::string& def) {
  const std::string* v = find(key);
  return v == nullptr ? def : *v;
}

void SpecParams::check_all_used() const {
  for (const auto& [k, v] : spec_.params)
    if (std::find(used_.begin(), used_.end(), k) == used_.end()) fail("{}: unknown parameter '{}'", spec_.name, k);
}

}  // namespace kvwise
