#include "redis_support.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "test_support.h"

namespace kvwise::test {

bool have_redis() {
  return std::system("command -v redis-server > /dev/null 2>&1") == 0;
}

namespace {
// A free loopback port (0: any) that can be bound now; 0 when `want` is taken.
int bindable(int want) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(want));
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// A cluster node also listens on its port + 10000 (the cluster bus): both must be free.
int free_cluster_port() {
  static std::mt19937 rng(static_cast<unsigned>(getpid()));
  for (int i = 0; i < 1000; ++i) {
    const int p = 20000 + static_cast<int>(rng() % 10000);
    if (bindable(p) == p && bindable(p + 10000) == p + 10000) return p;
  }
  return 0;
}
}  // namespace

int free_loopback_port() {
  return bindable(0);
}

RedisProcess::RedisProcess(std::string extra, int port) : extra_(std::move(extra)), port_(port) {
  if (port_ == 0) port_ = free_loopback_port();
  dir_ = temp_path("redis-" + std::to_string(port_));
  std::filesystem::create_directories(dir_);
  start();
}

RedisProcess::~RedisProcess() {
  kill();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void RedisProcess::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool RedisProcess::start() {
  kill();
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec))  // restarted empty
    if (e.path().extension() != ".log") std::filesystem::remove(e.path(), ec);
  const std::string cmd = "cd '" + dir_ + "' && exec redis-server --port " + std::to_string(port_) +
                          " --bind 127.0.0.1 --save '' --appendonly no --protected-mode no --dir '" + dir_ +
                          "' --logfile redis.log --enable-debug-command local " + extra_;
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  pid_ = pid;
  for (int i = 0; i < 200; ++i) {
    const auto r = command({"PING"});
    if (r && r->str == "PONG") return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

std::optional<RedisReply> RedisProcess::command(const std::vector<std::string>& argv) const {
  RedisOptions o;
  o.nodes.push_back({"127.0.0.1", port_});
  RedisClient c(o);
  return c.run(RedisCommand{argv, -1}, RedisClient::Clock::now() + std::chrono::seconds(5));
}

RedisCluster::RedisCluster() {
  for (int i = 0; i < 3; ++i) {
    const int port = free_cluster_port();
    nodes.push_back(std::make_unique<RedisProcess>(
        "--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000", port));
    if (!nodes.back()->running()) return;
  }
  std::string create = "redis-cli --cluster create";
  for (const auto& n : nodes) {
    create += ' ';
    create += n->address();
  }
  create += " --cluster-replicas 0 --cluster-yes > /dev/null 2>&1";
  if (std::system(create.c_str()) != 0) return;
  for (int i = 0; i < 200 && !ok_; ++i) {
    ok_ = true;
    for (const auto& n : nodes) {
      const auto r = n->command({"CLUSTER", "INFO"});
      ok_ = ok_ && r && r->str.find("cluster_state:ok") != std::string::npos;
    }
    if (!ok_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string RedisCluster::seeds() const {
  std::string s;
  for (const auto& n : nodes) {
    if (!s.empty()) s += ',';
    s += n->address();
  }
  return s;
}

}  // namespace kvwise::test
