#include "prefix/eviction_policy.h"

#include "base/error.h"
#include "prefix/policies.h"

namespace kvwise::prefix {

const std::vector<PolicyInfo>& policy_catalog() {
  static const std::vector<PolicyInfo> catalog = {
      {"lru", "least recently used", false, [](const PolicyOptions&) { return make_lru(); }},
      {"fifo", "first in, first out", false, [](const PolicyOptions&) { return make_fifo(); }},
      {"lfu", "least frequently used, LRU among equals", false, [](const PolicyOptions&) { return make_lfu(); }},
      {"s3fifo", "S3-FIFO (small, main and ghost FIFOs)", false,
       [](const PolicyOptions& o) { return make_s3fifo(o.capacity, o.s3fifo_small_ratio, o.s3fifo_threshold); }},
      {"gdsf", "greedy-dual size frequency", false,
       [](const PolicyOptions& o) { return make_gdsf(o.gdsf_position_cost); }},
      {"arc", "adaptive replacement cache", false, [](const PolicyOptions& o) { return make_arc(o.capacity); }},
      {"wa", "workload-aware (ATC'25): per-category exponential reuse model", false,
       [](const PolicyOptions& o) { return make_wa(o.wa); }},
      {"hazard", "learned online reuse hazard per (uses, last-block) class", false,
       [](const PolicyOptions& o) { return make_hazard(o.hazard); }},
      {"belady", "offline optimum: evicts the farthest next use (needs the future)", true,
       [](const PolicyOptions&) { return make_belady(); }},
      {"lru-oracle", "analysis bound: LRU that evicts blocks never used again first (needs the future)", true,
       [](const PolicyOptions&) { return make_lru_oracle(); }, false},
  };
  return catalog;
}

std::vector<std::string> policy_names() {
  std::vector<std::string> names;
  for (const auto& p : policy_catalog()) names.push_back(p.name);
  return names;
}

std::vector<std::string> online_policy_names() {
  std::vector<std::string> names;
  for (const auto& p : policy_catalog())
    if (!p.offline) names.push_back(p.name);
  return names;
}

bool is_offline_policy(const std::string& name) {
  for (const auto& p : policy_catalog())
    if (p.name == name) return p.offline;
  return false;
}

std::vector<std::string> expand_policy_names(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  const auto add = [&](const std::string& n) {
    for (const auto& x : out)
      if (x == n) return;
    out.push_back(n);
  };
  for (const auto& n : names) {
    if (n != "all") {
      add(n);
      continue;
    }
    for (const auto& p : policy_catalog())
      if (p.in_all) add(p.name);
  }
  return out;
}

std::unique_ptr<EvictionPolicy> make_policy(const std::string& name, const PolicyOptions& o) {
  for (const auto& p : policy_catalog())
    if (p.name == name) return p.build(o);
  std::string known;
  for (const auto& n : policy_names()) known += (known.empty() ? "" : ", ") + n;
  fail("unknown eviction policy '{}' (known: {}, or all)", name, known);
}

}  // namespace kvwise::prefix
