#include <algorithm>
#include <cstdint>

#include "compress/components.h"

namespace kvwise {

namespace {

// The current query's row (decode-time scoring shared by the window-based scorers).
void copy_last_row(const HeadTaps& t, std::span<float> out) {
  std::fill(out.begin(), out.end(), 0.0f);
  std::copy_n(t.last_row.begin(), std::min(t.last_row.size(), out.size()), out.begin());
}

// Scorers over the observation window's statistics; while decoding they score with the current
// query's row instead.
class WindowStatsScorer : public TokenScorer {
 public:
  explicit WindowStatsScorer(int window) : window_(window) {}
  void add_taps(TapConfig& cfg, bool decode) const override {
    if (decode)
      cfg.last_row = true;
    else
      cfg.window = std::max(cfg.window, window_);
  }

 protected:
  int window_;
};

class WindowScorer : public WindowStatsScorer {
 public:
  using WindowStatsScorer::WindowStatsScorer;
  std::string name() const override { return "window"; }
  void score(const ScoreContext& c, std::span<float> out) const override {
    const HeadTaps& t = c.taps;
    if (c.decode) return copy_last_row(t, out);
    std::fill(out.begin(), out.end(), 0.0f);
    const float inv = 1.0f / static_cast<float>(window_);
    for (size_t j = 0; j < out.size() && j < t.window_sum.size(); ++j) out[j] = t.window_sum[j] * inv;
  }
};

class CakeScorer : public WindowStatsScorer {
 public:
  CakeScorer(int window, double gamma) : WindowStatsScorer(window), gamma_(gamma) {}
  std::string name() const override { return "cake"; }
  void score(const ScoreContext& c, std::span<float> out) const override {
    const HeadTaps& t = c.taps;
    if (c.decode) return copy_last_row(t, out);
    std::fill(out.begin(), out.end(), 0.0f);
    const double w = window_;
    for (size_t j = 0; j < out.size() && j < t.window_sum.size(); ++j) {
      const double s = t.window_sum[j], ss = t.window_sumsq[j];
      const double var = window_ > 1 ? std::max(0.0, (ss - s * s / w) / (w - 1)) : 0.0;
      out[j] = static_cast<float>(s / w + gamma_ * var);
    }
  }

 private:
  double gamma_;
};

class LastQueryScorer : public TokenScorer {
 public:
  std::string name() const override { return "last-query"; }
  void add_taps(TapConfig& cfg, bool) const override { cfg.last_row = true; }
  void score(const ScoreContext& c, std::span<float> out) const override { copy_last_row(c.taps, out); }
};

class CumulativeScorer : public TokenScorer {
 public:
  std::string name() const override { return "cumulative"; }
  void add_taps(TapConfig& cfg, bool) const override { cfg.col_sums = true; }
  void score(const ScoreContext& c, std::span<float> out) const override {
    const HeadTaps& t = c.taps;
    std::fill(out.begin(), out.end(), 0.0f);
    std::copy_n(t.col_sums.begin(), std::min(t.col_sums.size(), out.size()), out.begin());
  }
};

class PositionScorer : public TokenScorer {
 public:
  std::string name() const override { return "position"; }
  void add_taps(TapConfig&, bool) const override {}
  void score(const ScoreContext&, std::span<float> out) const override {
    for (size_t j = 0; j < out.size(); ++j) out[j] = static_cast<float>(j);
  }
};

class RandomScorer : public TokenScorer {
 public:
  explicit RandomScorer(uint64_t seed) : seed_(seed) {}
  std::string name() const override { return "random"; }
  void add_taps(TapConfig&, bool) const override {}
  void score(const ScoreContext& c, std::span<float> out) const override {
    const int layer = c.layer, q_head = c.q_head, len = c.len;
    const bool decode = c.decode;
    // SplitMix64 of (seed, layer, head, length, slot): reproducible and independent of thread timing.
    for (size_t j = 0; j < out.size(); ++j) {
      uint64_t z = seed_ ^ (static_cast<uint64_t>(layer) << 48) ^ (static_cast<uint64_t>(q_head) << 40) ^
                   (static_cast<uint64_t>(len) << 20) ^ (decode ? 1ULL << 63 : 0) ^ j;
      z += 0x9e3779b97f4a7c15ULL;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      z ^= z >> 31;
      out[j] = static_cast<float>(z >> 40) / static_cast<float>(1 << 24);
    }
  }

 private:
  uint64_t seed_;
};

}  // namespace

std::shared_ptr<TokenScorer> make_window_scorer(int window) {
  return std::make_shared<WindowScorer>(window);
}
std::shared_ptr<TokenScorer> make_cake_scorer(int window, double gamma) {
  return std::make_shared<CakeScorer>(window, gamma);
}
std::shared_ptr<TokenScorer> make_last_query_scorer() {
  return std::make_shared<LastQueryScorer>();
}
std::shared_ptr<TokenScorer> make_cumulative_scorer() {
  return std::make_shared<CumulativeScorer>();
}
std::shared_ptr<TokenScorer> make_position_scorer() {
  return std::make_shared<PositionScorer>();
}
std::shared_ptr<TokenScorer> make_random_scorer(uint64_t seed) {
  return std::make_shared<RandomScorer>(seed);
}

}  // namespace kvwise
