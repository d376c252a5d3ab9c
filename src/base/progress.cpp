#include "base/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

#include "base/timer.h"

namespace kvwise {

Progress::Progress(std::string label, size_t total)
    : label_(std::move(label)), total_(total), tty_(isatty(fileno(stderr)) != 0) {}

Progress::~Progress() {
  finish();
}

void Progress::update(size_t done) {
  if (!tty_ || total_ == 0) return;
  const double t = now_seconds();
  if (done < total_ && t - last_draw_ < 0.1) return;
  last_draw_ = t;
  const int width = 30;
  const int filled = static_cast<int>(width * done / total_);
  fmt::print(stderr, "\r{} [{:<{}}] {}/{}", label_, std::string(filled, '#'), width, done, total_);
  std::fflush(stderr);
}

void Progress::finish() {
  if (!tty_ || finished_) return;
  finished_ = true;
  fmt::print(stderr, "\r\033[K");
  std::fflush(stderr);
}

}  // namespace kvwise
