// Helpers shared by the tests: where the shared data lives, temporary files, running the binary.
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "model/forward.h"

namespace kvwise::test {

// ../shared (or $KVWISE_DATA). Tests that need it skip when it is absent, except under CI=true,
// where its absence is a failure.
std::string data_dir();
bool have_data();
#define KVWISE_REQUIRE_DATA()                                                                 \
  do {                                                                                        \
    if (!::kvwise::test::have_data()) {                                                       \
      if (std::getenv("CI")) FAIL() << "shared data missing: " << ::kvwise::test::data_dir(); \
      GTEST_SKIP() << "shared data missing: " << ::kvwise::test::data_dir();                  \
    }                                                                                         \
  } while (0)

std::string stories_gguf();

// A fixture with stories260K loaded and an engine on 2 threads. Subclasses that extend SetUp call
// this one first and return when engine_ is null (the data is missing and the test was skipped).
class StoriesEngineTest : public ::testing::Test {
 protected:
  void SetUp() override;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Engine> engine_;
};
std::string temp_path(const std::string& name);  // unique per test process

struct RunResult {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the kvwise binary with the given argument string (shell-quoted by the caller).
// env: "NAME=value ..." set for this run only.
RunResult run_kvwise(const std::string& args, const std::string& env = "");
// `kvwise serve ARGS --port 0` as a child process; port from its "listening on HOST:PORT" line.
struct ServerProcess {
  int pid = -1;
  int port = 0;
};
ServerProcess start_server(const std::string& args);
// `kvwise ARGS` for any command that prints "listening on HOST:PORT" (serve --port P, route ...).
ServerProcess start_listening(const std::string& args);
int stop_server(ServerProcess& s);  // SIGTERM, then its exit code (128 + signal if killed)
// Runs a shell command, returning its exit code and stdout.
RunResult run_command(const std::string& cmd);

// The text of an OpenAI server-sent-event stream (completion or chat chunks), concatenated; *done is set
// on [DONE] and *cached_tokens (when given) to the usage chunk's cached tokens (-1 without one).
std::string sse_text(const std::string& body, bool* done = nullptr, int* cached_tokens = nullptr);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);

}  // namespace kvwise::test
