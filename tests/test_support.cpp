#include "test_support.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kvwise::test {

std::string data_dir() {
  if (const char* e = std::getenv("KVWISE_DATA"); e && *e) return e;
  return KVWISE_DEFAULT_DATA;
}

std::string stories_gguf() {
  return data_dir() + "/models/stories260K/stories260K.gguf";
}

void StoriesEngineTest::SetUp() {
  KVWISE_REQUIRE_DATA();
  model_ = Model::load(stories_gguf());
  EngineOptions o;
  o.threads = 2;
  engine_ = std::make_unique<Engine>(*model_, o);
}

bool have_data() {
  return access(stories_gguf().c_str(), R_OK) == 0;
}

std::string temp_path(const std::string& name) {
  const std::string dir = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : "/tmp") + "/kvwise-test-" +
                          std::to_string(getpid());
  // Once per process, from empty: a directory left by an earlier process with the same (recycled)
  // pid must not make this one's files collide with its.
  static const bool fresh = std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str()) == 0;
  if (!fresh) std::system(("mkdir -p '" + dir + "'").c_str());
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

RunResult run_kvwise(const std::string& args, const std::string& env) {
  static int counter = 0;
  const std::string out = temp_path("run" + std::to_string(counter) + ".out");
  const std::string err = temp_path("run" + std::to_string(counter++) + ".err");
  const std::string cmd = (env.empty() ? std::string() : "env " + env + " ") + KVWISE_BINARY + " " + args + " > '" +
                          out + "' 2> '" + err + "' < /dev/null";
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

ServerProcess start_server(const std::string& args) {
  return start_listening("serve --port 0 " + args);
}

ServerProcess start_listening(const std::string& args) {
  int out[2];
  if (pipe(out) != 0) return {};
  const std::string cmd = std::string("exec ") + KVWISE_BINARY + " " + args;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    close(out[1]);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  ServerProcess s;
  s.pid = pid;
  std::string line;
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
  close(out[0]);  // the server writes nothing else to stdout
  const size_t colon = line.rfind(':');
  if (line.rfind("listening on ", 0) == 0 && colon != std::string::npos) s.port = std::atoi(line.c_str() + colon + 1);
  return s;
}

int stop_server(ServerProcess& s) {
  if (s.pid <= 0) return -1;
  kill(s.pid, SIGTERM);
  int status = 0;
  waitpid(s.pid, &status, 0);
  s.pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

RunResult run_command(const std::string& cmd) {
  static int counter = 0;
  const std::string out = temp_path("cmd" + std::to_string(counter++) + ".out");
  const int status = std::system((cmd + " > '" + out + "'").c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  return r;
}

std::string sse_text(const std::string& body, bool* done, int* cached_tokens) {
  std::string text;
  if (done) *done = false;
  if (cached_tokens) *cached_tokens = -1;
  for (size_t at = 0; (at = body.find("data: ", at)) != std::string::npos;) {
    const size_t end = body.find("\n\n", at);
    const std::string data = body.substr(at + 6, end - at - 6);
    at = end;
    if (data == "[DONE]") {
      if (done) *done = true;
      continue;
    }
    const nlohmann::json j = nlohmann::json::parse(data);
    if (cached_tokens && j.contains("usage")) *cached_tokens = j["usage"]["prompt_tokens_details"]["cached_tokens"];
    if (!j.contains("choices") || j["choices"].empty()) continue;
    const nlohmann::json& c = j["choices"][0];
    if (c.contains("text")) text += c["text"].get<std::string>();
    if (c.contains("delta") && c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
  }
  return text;
}

}  // namespace kvwise::test
