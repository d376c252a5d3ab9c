// Named policies: the spec grammar's names mapped to stage compositions with each method's published
// defaults (kv-algorithms §0.4). Policy names: full, random, streamingllm, h2o, snapkv, pyramidkv,
// adakv, cake, sagekv, baklava; compositions such as adakv(snapkv), adakv(pyramidkv), adakv(cake),
// baklava(sagekv).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compress/pipeline.h"

namespace kvwise {

// Throws kvwise::Error on an unknown name or parameter, a bad value, or a missing profile.
std::shared_ptr<const KvPolicy> make_policy(std::string_view spec, const Budget& budget);

struct PolicyInfo {
  std::string name;
  std::string summary;
  std::string params;  // key=default, ...
};
const std::vector<PolicyInfo>& policy_catalog();
std::string policy_help();  // one line per policy, for --help texts and errors

}  // namespace kvwise
