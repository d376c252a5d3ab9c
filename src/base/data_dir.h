// Where the shared test data, models and traces live: --data-dir, else $KVWISE_DATA, else ../shared.
#pragma once
#include <string>

namespace kvwise {

std::string resolve_data_dir(const std::string& flag_value);

}  // namespace kvwise
