// libFuzzer target: the policy spec grammar (what a request's kv_policy reaches first). Any input must
// parse or throw kvwise::Error; a crash, a hang or another exception is a finding. Parsed specs must
// print back to a spec that parses to the same canonical form.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/error.h"
#include "compress/policy_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const kvwise::PolicySpec spec = kvwise::parse_policy_spec(text);
    const std::string canonical = spec.to_string();
    if (canonical.size() <= kvwise::kMaxPolicySpecLength &&
        kvwise::parse_policy_spec(canonical).to_string() != canonical)
      __builtin_trap();
  } catch (const kvwise::Error&) {
  }
  try {
    kvwise::split_policy_list(text);
  } catch (const kvwise::Error&) {
  }
  return 0;
}
