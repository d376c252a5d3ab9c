#include "serve/http_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "base/error.h"

namespace kvwise {

namespace {

using Clock = std::chrono::steady_clock;

// poll() for one event, retrying on EINTR; > 0 when ready.
int wait_for(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                     : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (r != 0) return;
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  }
  ip = buf;
}

// A buffered socket stream whose reads fail once the request's deadline has passed.
class DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(int fd, int read_ms, int write_ms) : fd_(fd), read_ms_(read_ms), write_ms_(write_ms), buf_(4096) {}

  void arm(Clock::time_point deadline) { deadline_ = deadline; }
  void disarm() { deadline_ = Clock::time_point::max(); }
  bool buffered() const { return off_ < len_; }

  bool is_readable() const override { return buffered() || wait_for(fd_, POLLIN, read_timeout_ms()) > 0; }
  bool is_writable() const override { return wait_for(fd_, POLLOUT, write_ms_) > 0; }

  ssize_t read(char* ptr, size_t size) override {
    if (!buffered()) {
      if (!is_readable()) return -1;  // the read timeout or the request deadline ran out
      ssize_t n;
      do n = ::recv(fd_, buf_.data(), buf_.size(), 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      off_ = 0;
      len_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, len_ - off_);
    std::copy_n(buf_.data() + off_, n, ptr);
    off_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  int read_timeout_ms() const {
    if (deadline_ == Clock::time_point::max()) return read_ms_;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, read_ms_));
  }

  int fd_;
  int read_ms_, write_ms_;
  Clock::time_point deadline_ = Clock::time_point::max();
  std::vector<char> buf_;
  size_t off_ = 0, len_ = 0;
};

thread_local DeadlineStream* t_stream = nullptr;
thread_local bool t_close = false;

}  // namespace

GuardedHttpServer::GuardedHttpServer(double request_deadline) : deadline_(request_deadline) {
  // httplib's default options add SO_REUSEPORT, with which two servers bind the same port and the
  // kernel splits connections between them.
  set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
}

void GuardedHttpServer::request_read() {
  if (t_stream) t_stream->disarm();
}

void GuardedHttpServer::close_after_response() {
  t_close = true;
}

bool GuardedHttpServer::process_and_close_socket(socket_t sock) {
  DeadlineStream strm(sock, static_cast<int>(read_timeout_sec_ * 1000 + read_timeout_usec_ / 1000),
                      static_cast<int>(write_timeout_sec_ * 1000 + write_timeout_usec_ / 1000));
  t_stream = &strm;
  bool ok = false;
  const auto keep_alive_end = [&] { return Clock::now() + std::chrono::seconds(keep_alive_timeout_sec_); };
  for (size_t left = keep_alive_max_count_; left > 0; --left) {
    // Wait (keep-alive) for the next request, noticing a stopping server every 100 ms.
    bool ready = strm.buffered();
    for (const auto idle_end = keep_alive_end(); !ready && Clock::now() < idle_end;) {
      if (svr_sock_ == INVALID_SOCKET) break;
      const int r = wait_for(sock, POLLIN, 100);
      if (r < 0) break;
      ready = r > 0;
    }
    if (!ready) break;
    strm.arm(Clock::now() + std::chrono::milliseconds(static_cast<long>(deadline_ * 1000)));
    bool closed = false;
    t_close = false;
    ok = process_request(strm, left == 1, closed, nullptr);
    strm.disarm();
    if (!ok || closed || t_close) break;
  }
  t_stream = nullptr;
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

namespace {
// cpp-httplib 0.11 listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into Debian's
// library), so a burst of simultaneous connections (16 streaming clients) sees refused or broken
// connections. Calling listen() again on the bound socket raises the backlog; the socket is found
// as the listening TCP socket on our port.
void widen_listen_backlog(int port) {
  for (int fd = 3; fd < 4096; ++fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    int p = -1;
    if (addr.ss_family == AF_INET) p = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) p = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    if (p == port) listen(fd, SOMAXCONN);
  }
}
}  // namespace

int GuardedHttpServer::bind_listener(const std::string& host, int port) {
  if (port == 0) {
    port = bind_to_any_port(host.c_str());
    KV_CHECK(port > 0, "cannot bind to {}", host);
  } else if (!bind_to_port(host.c_str(), port)) {
    fail("cannot listen on {}:{}: {}", host, port,
         errno == EADDRINUSE ? "address in use (is another server running on that port?)" : std::strerror(errno));
  }
  widen_listen_backlog(port);
  return port;
}

}  // namespace kvwise
