#include "base/data_dir.h"

#include <cstdlib>
#include <filesystem>

namespace kvwise {

std::string resolve_data_dir(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  if (const char* env = std::getenv("KVWISE_DATA"); env && *env) return env;
  std::error_code ec;
  const auto source_default = std::filesystem::path(KVWISE_DEFAULT_DATA_DIR).lexically_normal();
  if (std::filesystem::is_directory(source_default, ec)) return source_default.string();
  return "../shared";
}

std::string bundled_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto installed = exe.parent_path().parent_path() / "share" / "kvwise";
    if (std::filesystem::is_directory(installed, ec)) return installed.string();
  }
  return KVWISE_SOURCE_MODELS_DIR;
}

std::string bundled_file(const std::string& name) {
  return bundled_dir() + "/" + name;
}

}  // namespace kvwise
