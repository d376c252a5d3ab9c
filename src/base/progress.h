// A one-line progress bar on stderr, drawn only when stderr is a terminal (never in logs or CI).
#pragma once
#include <cstddef>
#include <string>

namespace kvwise {

class Progress {
 public:
  Progress(std::string label, size_t total);
  ~Progress();
  void update(size_t done);
  void set_total(size_t total) { total_ = total; }  // when it is known only once work starts
  void finish();

 private:
  std::string label_;
  size_t total_;
  bool tty_;
  bool finished_ = false;
  double last_draw_ = 0;
};

}  // namespace kvwise
