// The policy spec grammar shared by the CLI, the C++ API and the server's request body:
//
//   spec  := name [ "(" item { "," item } ")" ]
//   item  := spec | key "=" value
//
// e.g. "snapkv", "snapkv(window=16,kernel=7,pool=max)", "adakv(pyramidkv,alpha=0.2)". Names and keys
// are lower case; a nested spec is the inner scorer / budget source of a composing policy.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kvwise {

struct PolicySpec {
  std::string name;
  std::vector<PolicySpec> inner;
  std::map<std::string, std::string> params;

  std::string to_string() const;  // canonical form: inner specs first, then params in key order
};

// Bounds that keep a hostile spec (a request's kv_policy) cheap: the parser recurses once per nesting
// level, so depth is capped well below what the stack allows.
inline constexpr size_t kMaxPolicySpecLength = 1024;
inline constexpr int kMaxPolicySpecDepth = 8;

// Throws kvwise::Error with the offending column on a syntax error, a spec longer than
// kMaxPolicySpecLength or nested deeper than kMaxPolicySpecDepth.
PolicySpec parse_policy_spec(std::string_view text);

// Splits a list of specs at the commas outside parentheses: "snapkv,adakv(snapkv,alpha=0.5)".
std::vector<std::string> split_policy_list(std::string_view text);

// Typed access to parameters; every key must be consumed (check_all_used) so typos are errors.
class SpecParams {
 public:
  explicit SpecParams(const PolicySpec& spec) : spec_(spec) {}
  int get_int(const std::string& key, int def, int min_value, int max_value);
  double get_double(const std::string& key, double def, double min_value, double max_value);
  std::string get_choice(const std::string& key, const std::string& def, const std::vector<std::string>& choices);
  std::string get_string(const std::string& key, const std::string& def);
  bool has(const std::string& key) const { return spec_.params.count(key) != 0; }
  void check_all_used() const;

 private:
  const std::string* find(const std::string& key);
  const PolicySpec& spec_;
  std::vector<std::string> used_;
};

}  // namespace kvwise
