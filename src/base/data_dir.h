// Where files live that kvwise reads but does not own, resolved the same way from any working
// directory. Thread-safe (reads the environment only).
#pragma once
#include <string>

namespace kvwise {

// The shared test data, models and traces: --data-dir, else $KVWISE_DATA, else ../shared beside the
// source tree kvwise was built from (KVWISE_DEFAULT_DATA_DIR), else ../shared of the working directory.
std::string resolve_data_dir(const std::string& flag_value);

// The directory of the files that ship with kvwise (the bundled model, gates, profiles): share/kvwise
// beside an installed binary, else models/ of the source tree the binary was built from.
std::string bundled_dir();
std::string bundled_file(const std::string& name);  // bundled_dir()/name

}  // namespace kvwise
