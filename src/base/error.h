// Error type for everything a user can cause (bad files, bad flags, bad input). The CLI catches it,
// prints its message and exits non-zero; library code never aborts on user input.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace kvwise {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace kvwise

// Checks a condition that user input can violate; throws kvwise::Error with a formatted message.
#define KV_CHECK(cond, ...)                   \
  do {                                        \
    if (!(cond)) ::kvwise::fail(__VA_ARGS__); \
  } while (0)
