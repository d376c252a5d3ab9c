#include "base/data_dir.h"

#include <cstdlib>

namespace kvwise {

std::string resolve_data_dir(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  if (const char* env = std::getenv("KVWISE_DATA"); env && *env) return env;
  return "../shared";
}

}  // namespace kvwise
