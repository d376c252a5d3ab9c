// Learned reuse hazard ("hazard"): an online, nonparametric model of when a block's key is used
// next, in the manner of learned caches (LRB, NSDI'20) but with a model small enough to keep per
// class instead of per object.
//
// Every access of a key is an event of one class: (the request's category slot; prior uses of the
// key, capped at max_uses; is it the last block of its prompt). When the key is used again, the gap
// since that event lands in the class's histogram of log-spaced gap bins; every event also counts in
// the class total, so gaps that never came (the key was not reused) weigh as "not yet". Both decay
// with a half-life, so the model tracks the workload. From the histogram, every refit_interval
// seconds, a table per class:
//   score(class, age) = P(gap in (age, age + H] | gap > age)
//                     = (C(age + H) - C(age)) / (total - C(age)),   C = cumulative gap counts,
// the probability that a block idle for `age` is used within the next H seconds; H is fixed or
// horizon_scale x a running mean of the victims' idle times (the cache's own time scale). Eviction
// takes the lowest score among the oldest unpinned block of each class (within a class, blocks are
// ordered by last use, and the score is taken to fall with age; the release order puts a prompt's
// tail first).
// Why these features: a key's prior use count is the strongest predictor of reuse on the Mooncake
// trace, and the last block of a prompt (a partial block whose hash changes when the conversation
// grows) is rarely reused; docs/results/prefix-cache.md has the ablations.
// History: per key its last use time, class and use count, dropped once idle past `window` (so its
// count restarts), bounded by the keys seen in one window.
#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "prefix/eviction_policy.h"
#include "prefix/intrusive_list.h"
#include "prefix/policies.h"

namespace kvwise::prefix {

namespace {

class Hazard final : public EvictionPolicy {
 public:
  explicit Hazard(const HazardOptions& o)
      : o_(o),
        per_category_(static_cast<size_t>(std::max(1, o.max_uses + 1)) * (o.last_block_class ? 2 : 1)),
        classes_(per_category_ * static_cast<size_t>(std::max(1, o.max_categories))),
        bins_(std::max(4, o.bins)) {
    log_lo_ = std::log(o_.min_gap);
    bin_scale_ = static_cast<double>(bins_) / (std::log(std::max(1.0, o_.window)) - log_lo_);
    hist_.assign(classes_ * static_cast<size_t>(bins_ + 2), 0.0);
    total_.assign(classes_, 0.0);
    table_.assign(classes_ * static_cast<size_t>(bins_ + 2), 1.0);  // before the first fit: LRU
    for (size_t c = 0; c < classes_; ++c) lists_.emplace_back(nodes_, static_cast<int>(c));
  }
  std::string name() const override { return "hazard"; }

  void observe_request(std::span<const BlockKey> keys, uint16_t category, double now) override {
    if (now >= next_decay_) decay(now);
    if (now >= next_refit_) refit(now);
    const size_t slot = category_slot(category);
    for (size_t i = 0; i < keys.size(); ++i) {
      Seen& s = seen_[keys[i]];
      if (s.uses > 0) hist_[index(s.cls, bin(now - s.last))] += 1.0;
      s.cls = static_cast<uint16_t>(slot * per_category_ + class_of(s.uses, i + 1 == keys.size()));
      s.uses = static_cast<uint16_t>(std::min<int>(s.uses + 1, 60000));
      s.last = now;
      total_[s.cls] += 1.0;
    }
  }

  void on_insert(BlockId b, double) override {
    if (b >= cls_.size()) cls_.resize(b + 1, 0);
    cls_[b] = current_class(b);
    lists_[cls_[b]].push_back(b);
  }
  void on_hit(BlockId, double) override {}
  void on_release(BlockId b, double) override {
    lists_[cls_[b]].remove(b);
    cls_[b] = current_class(b);
    lists_[cls_[b]].push_back(b);
  }
  BlockId evict(double now, BlockKey) override {
    BlockId best = kNoBlock;
    double best_score = 0;
    for (size_t c = 0; c < classes_; ++c) {
      const BlockId h = lists_[c].first_unpinned([&](BlockId x) { return pinned(x); });
      if (h == kNoBlock) continue;
      const double s = table_[index(c, bin(now - meta(h).last_access))];
      if (best == kNoBlock || s < best_score || (s == best_score && meta(h).last_access < meta(best).last_access)) {
        best = h;
        best_score = s;
      }
    }
    if (best != kNoBlock) {
      lists_[cls_[best]].remove(best);
      // The cache's time scale: a running mean of how long victims had been idle.
      eviction_age_ += 0.001 * (std::max(0.0, now - meta(best).last_access) - eviction_age_);
    }
    return best;
  }
  void on_remove(BlockId b) override { lists_[cls_[b]].remove(b); }
  size_t bytes() const override {
    return nodes_.bytes() + cls_.capacity() * sizeof(uint16_t) +
           (hist_.capacity() + table_.capacity()) * sizeof(double);
  }
  size_t history_bytes() const override { return seen_.capacity() * (sizeof(std::pair<BlockKey, Seen>) + 1); }

 private:
  struct Seen {
    double last = 0;
    uint16_t uses = 0;
    uint16_t cls = 0;  // of the access at `last`
  };

  size_t category_slot(uint16_t category) {
    if (o_.max_categories <= 1) return 0;
    auto it = slots_.find(category);
    if (it != slots_.end()) return it->second;
    const size_t slot = std::min(slots_.size(), static_cast<size_t>(o_.max_categories - 1));
    slots_.emplace(category, slot);
    return slot;
  }
  uint16_t class_of(int uses, bool last_block) const {
    const int u = std::min(uses, o_.max_uses);
    return static_cast<uint16_t>(o_.last_block_class && last_block ? o_.max_uses + 1 + u : u);
  }
  // The class of the key's latest access (a block demoted to a lower tier, or a key forgotten: 0).
  uint16_t current_class(BlockId b) const {
    auto it = seen_.find(meta(b).key);
    return it == seen_.end() ? 0 : it->second.cls;
  }
  // Bin 0: gaps under min_gap; 1..bins: log-spaced up to the window; bins + 1: longer.
  int bin(double gap) const {
    if (!(gap >= o_.min_gap)) return 0;
    const int b = 1 + static_cast<int>((std::log(gap) - log_lo_) * bin_scale_);
    return std::min(b, bins_ + 1);
  }
  double bin_start(int b) const { return b == 0 ? 0.0 : std::exp(log_lo_ + (b - 1) / bin_scale_); }
  size_t index(size_t cls, int b) const { return cls * static_cast<size_t>(bins_ + 2) + static_cast<size_t>(b); }

  void decay(double now) {
    next_decay_ = now + o_.half_life;
    for (double& x : hist_) x *= 0.5;
    for (double& x : total_) x *= 0.5;
  }

  void refit(double now) {
    next_refit_ = now + o_.refit_interval;
    horizon_ = o_.horizon > 0 ? o_.horizon : std::max(o_.min_gap, o_.horizon_scale * eviction_age_);
    const size_t B = static_cast<size_t>(bins_ + 2);
    std::vector<double> cum(B + 1);
    for (size_t c = 0; c < classes_; ++c) {
      cum[0] = 0;
      for (size_t b = 0; b < B; ++b) cum[b + 1] = cum[b] + hist_[c * B + b];
      for (int b = 0; b < bins_ + 2; ++b) {
        const size_t ub = static_cast<size_t>(b);
        if (b > bins_) {  // gaps beyond the window are "not within H" at every age
          table_[c * B + ub] = 0.0;
          continue;
        }
        const int until = std::min(bin(bin_start(b) + horizon_), bins_);
        const double within = cum[static_cast<size_t>(until) + 1] - cum[ub];
        const double alive = total_[c] - cum[ub];
        table_[c * B + ub] = alive > 0 ? std::clamp(within / alive, 0.0, 1.0) : 0.0;
      }
    }
    // Keys idle past the window cannot add a binned gap any more: forget them (history stays bounded).
    absl::erase_if(seen_, [&](const auto& kv) { return kv.second.last < now - o_.window; });
  }

  HazardOptions o_;
  size_t per_category_, classes_;
  absl::flat_hash_map<uint16_t, size_t> slots_;  // request category -> its block of classes
  int bins_;
  double log_lo_ = 0, bin_scale_ = 1;
  std::vector<double> hist_, total_, table_;  // [class][bin]
  ListNodes nodes_;
  std::vector<IdList> lists_;  // per class, by last use
  std::vector<uint16_t> cls_;  // the list each resident block is in
  absl::flat_hash_map<BlockKey, Seen> seen_;
  double next_decay_ = 0, next_refit_ = 0;
  double horizon_ = 0, eviction_age_ = 60;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_hazard(const HazardOptions& options) {
  return std::make_unique<Hazard>(options);
}

}  // namespace kvwise::prefix
