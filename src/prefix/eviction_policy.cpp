#include "prefix/eviction_policy.h"

#include "base/error.h"
#include "prefix/policies.h"

namespace kvwise::prefix {

std::vector<std::string> policy_names() {
  return {"lru", "fifo", "lfu", "s3fifo", "gdsf", "arc", "wa", "belady"};
}

std::unique_ptr<EvictionPolicy> make_policy(const std::string& name, const PolicyOptions& o) {
  if (name == "lru") return make_lru();
  if (name == "fifo") return make_fifo();
  if (name == "lfu") return make_lfu();
  if (name == "s3fifo") return make_s3fifo(o.capacity, o.s3fifo_small_ratio, o.s3fifo_threshold);
  if (name == "gdsf") return make_gdsf(o.gdsf_position_cost);
  if (name == "arc") return make_arc(o.capacity);
  if (name == "wa") return make_wa(o.wa);
  if (name == "belady") return make_belady();
  std::string known;
  for (const auto& n : policy_names()) known += (known.empty() ? "" : ", ") + n;
  fail("unknown eviction policy '{}' (known: {})", name, known);
}

}  // namespace kvwise::prefix
