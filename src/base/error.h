// Error type for everything a user can cause (bad files, bad flags, bad input). The CLI catches it,
// prints its message and exits non-zero; library code never aborts on user input. InternalError is
// the other kind: an invariant of kvwise's own that failed, i.e. a bug. It is deliberately not an
// Error, so that the server answers it with a 500 and a log line, never with a 400 that blames the
// client.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace kvwise {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& what) : std::logic_error("internal error: " + what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace kvwise

// Checks an invariant of kvwise itself; throws kvwise::InternalError (a bug) with a formatted message.
#define KV_ASSERT(cond, ...)                                                \
  do {                                                                      \
    if (!(cond)) throw ::kvwise::InternalError(::fmt::format(__VA_ARGS__)); \
  } while (0)

// Checks a condition that user input can violate; throws kvwise::Error with a formatted message.
#define KV_CHECK(cond, ...)                   \
  do {                                        \
    if (!(cond)) ::kvwise::fail(__VA_ARGS__); \
  } while (0)
