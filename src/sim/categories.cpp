#include "sim/categories.h"

#include <map>
#include <unordered_set>

#include "base/error.h"

namespace kvwise::sim {

namespace {
int length_bucket(uint32_t tokens) {
  return tokens < 2048 ? 0 : tokens < 8192 ? 1 : tokens < 32768 ? 2 : 3;
}
const char* kLength[] = {"<2K", "2K-8K", "8K-32K", ">=32K"};
}  // namespace

void assign_categories(Trace& trace, const std::string& rule_in) {
  const bool has_types = !trace.requests.empty() && !trace.requests[0].type.empty();
  std::string rule = rule_in;
  if (rule.empty() || rule == "auto") rule = has_types ? "trace" : "turn-length";
  KV_CHECK(rule != "trace" || has_types, "category rule 'trace' needs a trace with request types (Bailian schema)");
  KV_CHECK(rule == "none" || rule == "length" || rule == "turn" || rule == "turn-length" || rule == "trace",
           "unknown category rule '{}' (none, length, turn, turn-length, trace, auto)", rule);
  std::map<std::string, uint16_t> ids;
  trace.category_names.clear();
  const auto id = [&](const std::string& name) {
    auto it = ids.find(name);
    if (it != ids.end()) return it->second;
    const auto v = static_cast<uint16_t>(trace.category_names.size());
    ids[name] = v;
    trace.category_names.push_back(name);
    return v;
  };
  std::unordered_set<prefix::BlockKey> seen;
  for (auto& r : trace.requests) {
    std::string name;
    const bool follow_up = r.blocks.size() > 1 && seen.count(r.blocks[1]);
    if (rule == "none")
      name = "all";
    else if (rule == "length")
      name = kLength[length_bucket(r.input_tokens)];
    else if (rule == "turn")
      name = follow_up ? "follow-up" : "first";
    else if (rule == "turn-length")
      name = std::string(follow_up ? "follow-up" : "first") + "/" + kLength[length_bucket(r.input_tokens)];
    else
      name = r.type + "/" + (r.turn >= 3 ? std::string("3+") : std::to_string(r.turn));
    r.category = id(name);
    for (auto k : r.blocks) seen.insert(k);
  }
}

}  // namespace kvwise::sim
