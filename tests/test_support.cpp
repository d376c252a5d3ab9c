#include "test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace kvwise::test {

std::string data_dir() {
  if (const char* e = std::getenv("KVWISE_DATA"); e && *e) return e;
  return KVWISE_DEFAULT_DATA;
}

std::string stories_gguf() {
  return data_dir() + "/models/stories260K/stories260K.gguf";
}

bool have_data() {
  return access(stories_gguf().c_str(), R_OK) == 0;
}

std::string temp_path(const std::string& name) {
  const std::string dir = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : "/tmp") + "/kvwise-test-" +
                          std::to_string(getpid());
  std::system(("mkdir -p '" + dir + "'").c_str());
  return dir + "/" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

RunResult run_kvwise(const std::string& args) {
  static int counter = 0;
  const std::string out = temp_path("run" + std::to_string(counter) + ".out");
  const std::string err = temp_path("run" + std::to_string(counter++) + ".err");
  const std::string cmd = std::string(KVWISE_BINARY) + " " + args + " > '" + out + "' 2> '" + err + "' < /dev/null";
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace kvwise::test
