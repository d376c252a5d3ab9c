// Named policies: the spec grammar's names mapped to stage compositions with each method's published
// defaults (kv-algorithms §0.4). Each method registers itself in its own file under compress/methods/
// (compress/method.h); compositions such as adakv(snapkv), chunkkv(knorm), criticalkv(snapkv),
// decoding(expected-attention), mikv(h2o) nest specs.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compress/method.h"
#include "compress/pipeline.h"

namespace kvwise {

// Throws kvwise::Error on an unknown name or parameter, a bad value, a missing profile or a file that
// an untrusted spec names.
std::shared_ptr<const KvPolicy> make_policy(std::string_view spec, const Budget& budget,
                                            const PolicySource& source = {});

// The registered methods (compress/method.h), in catalogue order.
struct PolicyInfo {
  std::string name;
  std::string summary;
  std::string params;  // key=default, ...
  std::string paper;
  std::string group;
  std::string example;  // a spec that builds with no files
  BudgetUse budget = BudgetUse::Required;
  bool composes = false;  // takes an inner policy: name(X)
  bool approximation = false;
};
const std::vector<PolicyInfo>& policy_catalog();
std::string policy_help();            // one line per policy, for --help texts and errors
std::string policy_table_markdown();  // the docs' table (docs/compression.md; `kvwise policies --markdown`)

}  // namespace kvwise
