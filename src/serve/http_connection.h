// The connection loop of the HTTP server, replacing cpp-httplib 0.11's own so that a request must
// arrive whole within a deadline: httplib's read timeout applies to each read, so a client sending a
// byte every few seconds could hold a worker thread for hours, and enough such clients hold them all.
// The listening socket is also bound without SO_REUSEPORT, so a second server on a busy port fails to
// start instead of sharing the port. Thread-safe as httplib::Server is; the deadline state is per
// connection (one worker thread each).
#pragma once
#include <httplib.h>

#include <string>

namespace kvwise {

class GuardedHttpServer : public httplib::Server {
 public:
  // request_deadline: seconds from a request's first byte until its headers and body are read.
  explicit GuardedHttpServer(double request_deadline);

  // Called by a handler once the body is read: the rest of the exchange (generation, streaming) is not
  // bound by the deadline. A no-op outside a connection thread.
  static void request_read();
  // Called by a handler that answers without reading the body: the connection closes after the
  // response instead of parsing the unread body as the next request.
  static void close_after_response();
  // Binds host:port (0: any free port) and returns the port; throws kvwise::Error saying why not (a
  // port in use). Also raises the listen backlog above httplib's 5.
  int bind_listener(const std::string& host, int port);

 private:
  bool process_and_close_socket(socket_t sock) override;
  double deadline_;
};

}  // namespace kvwise
