// The workload-aware (WA) policy of "KVCache Cache in the Wild" (Wang et al., USENIX ATC'25).
// Each request category w has an exponential reuse model fitted on recent reuse intervals:
//   P(block reused within the next T | idle for delta) = p_w * exp(-lambda_w * delta) * (1 - exp(-lambda_w * T)),
// and 0 once delta exceeds the category's lifespan. One LRU list of blocks per category (ordered by
// release time; a request releases its blocks tail first), so within a list P falls from back to
// front and eviction compares only the W list heads: the lowest P goes, the larger offset on ties.
// The exact equation form, p_w, T and the lifespan rule are [R] in the spec: see WaOptions.
#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>

#include "prefix/eviction_policy.h"
#include "prefix/intrusive_list.h"
#include "prefix/policies.h"

namespace kvwise::prefix {

namespace {

struct CategoryModel {
  double lambda;
  double p = 1.0;
  double life = std::numeric_limits<double>::infinity();
};

class Wa final : public EvictionPolicy {
 public:
  explicit Wa(const WaOptions& o) : o_(o) {
    for (const auto& [cat, m] : o.fixed_models) models_[cat] = CategoryModel{m.lambda, m.p, m.life};
    if (!o.fixed_models.empty()) next_refit_ = std::numeric_limits<double>::infinity();
  }
  std::string name() const override { return "wa"; }

  // Every use of a key is an event of the category the block then belongs to (the user's, or the
  // creator's when categories stay fixed); the time to the key's next use is that category's reuse
  // interval, and whether it came within T feeds p_w.
  void observe(BlockKey key, uint16_t category, double now) override {
    if (!o_.fixed_models.empty()) return;
    maybe_refit(now);
    auto it = seen_.find(key);
    if (it != seen_.end()) {
      Seen& e = it->second;
      Stats& prev = stats(e.category);
      if (now > e.last) prev.intervals.push_back({now, now - e.last});
      if (now - e.last <= o_.horizon) prev.quick_reuses.push_back(e.last);
      e.last = now;
      if (o_.category_follows_last_use) e.category = category;
    } else {
      seen_.emplace(key, Seen{now, category});
    }
    stats(o_.category_follows_last_use || it == seen_.end() ? category : it->second.category).uses.push_back(now);
  }

  void on_insert(BlockId b, double) override {
    if (b >= cat_.size()) cat_.resize(b + 1, 0);
    cat_[b] = category_of(b);
    list(cat_[b]).push_back(b);
  }
  void on_hit(BlockId, double) override {}
  void on_release(BlockId b, double) override {
    const uint16_t c = category_of(b);
    list(cat_[b]).remove(b);
    cat_[b] = c;
    list(c).push_back(b);
  }

  BlockId evict(double now, BlockKey) override {
    BlockId best = kNoBlock;
    double best_p = 0;
    for (auto& [cat, l] : lists_) {
      const BlockId h = l.first_unpinned([&](BlockId x) { return pinned(x); });
      if (h == kNoBlock) continue;
      const double p = probability(cat, now - meta(h).last_access);  // cat == cat_[h]
      if (best == kNoBlock || p < best_p || (p == best_p && tie_wins(h, best))) {
        best = h;
        best_p = p;
      }
    }
    if (best != kNoBlock) list(cat_[best]).remove(best);
    return best;
  }
  void on_remove(BlockId b) override { list(cat_[b]).remove(b); }
  size_t bytes() const override { return nodes_.bytes() + cat_.capacity() * 2 + lists_.size() * 64; }
  size_t history_bytes() const override {
    size_t b = seen_.capacity() * (sizeof(std::pair<BlockKey, Seen>) + 1);
    for (const auto& [c, s] : stats_) b += s.intervals.size() * 16 + (s.uses.size() + s.quick_reuses.size()) * 8;
    return b;
  }

 private:
  struct Seen {
    double last;
    uint16_t category;  // of the use at `last`
  };
  struct Stats {
    std::deque<std::pair<double, double>> intervals;  // (time observed, reuse interval)
    std::deque<double> uses;                          // times of uses
    std::deque<double> quick_reuses;                  // times of uses that were reused within T
  };

  // Among equal probabilities: does block a go before block b?
  bool tie_wins(BlockId a, BlockId b) const {
    const BlockMeta &x = meta(a), &y = meta(b);
    if (o_.ties_by_age && x.last_access != y.last_access) return x.last_access < y.last_access;
    if (x.offset != y.offset) return x.offset > y.offset;
    return x.last_access < y.last_access;
  }

  IdList& list(uint16_t cat) {
    auto it = lists_.find(cat);
    if (it == lists_.end()) it = lists_.emplace(cat, IdList(nodes_, cat)).first;
    return it->second;
  }
  Stats& stats(uint16_t cat) { return stats_[cat]; }

  uint16_t category_of(BlockId b) const {
    return o_.category_follows_last_use ? meta(b).last_category : meta(b).category;
  }

  double probability(uint16_t cat, double delta) const {
    auto it = models_.find(cat);
    const CategoryModel m = it != models_.end() ? it->second : pooled_;
    if (o_.use_lifespan && delta > m.life) return 0.0;
    const double p = o_.use_probability ? m.p : 1.0;
    return p * std::exp(-m.lambda * delta) * (1.0 - std::exp(-m.lambda * o_.horizon));
  }

  // Periodic maximum-likelihood fit per category over the recent window.
  void maybe_refit(double now) {
    if (now < next_refit_) return;
    next_refit_ = now + o_.refit_interval;
    std::vector<double> all;
    size_t pooled_total = 0, pooled_reused = 0;
    for (auto& [cat, s] : stats_) {
      const double horizon_end = now - o_.horizon, window_start = now - o_.fit_window - o_.horizon;
      while (!s.intervals.empty() && s.intervals.front().first < now - o_.fit_window) s.intervals.pop_front();
      while (!s.uses.empty() && s.uses.front() < window_start) s.uses.pop_front();
      while (!s.quick_reuses.empty() && s.quick_reuses.front() < window_start) s.quick_reuses.pop_front();
      // p_w: of the uses whose horizon has passed, the share followed by another use within T.
      size_t total = 0, reused = 0;
      for (double t : s.uses) total += t <= horizon_end;
      for (double t : s.quick_reuses) reused += t <= horizon_end;
      pooled_total += total;
      pooled_reused += reused;
      std::vector<double> iv;
      for (const auto& [t, x] : s.intervals) iv.push_back(x);
      all.insert(all.end(), iv.begin(), iv.end());
      if (static_cast<int>(iv.size()) < o_.min_samples) {
        models_.erase(cat);
        continue;
      }
      models_[cat] = fit(iv, total, reused);
    }
    if (static_cast<int>(all.size()) >= o_.min_samples) pooled_ = fit(all, pooled_total, pooled_reused);
    // Forget keys idle for longer than the fit window (their next interval could not be fitted in
    // time anyway) unless still inside a pending horizon: history stays bounded by recent traffic.
    absl::erase_if(seen_, [&](const auto& kv) { return kv.second.last < now - o_.fit_window - o_.horizon; });
  }

  CategoryModel fit(std::vector<double>& iv, size_t total, size_t reused) const {
    CategoryModel m;
    double sum = 0;
    for (double x : iv) sum += x;
    m.lambda = 1.0 / std::max(sum / static_cast<double>(iv.size()), 1e-6);
    m.p = total > 0 ? std::clamp(static_cast<double>(reused) / static_cast<double>(total), 1e-3, 1.0) : 1.0;
    const size_t q = std::min(iv.size() - 1, static_cast<size_t>(o_.life_quantile * static_cast<double>(iv.size())));
    std::nth_element(iv.begin(), iv.begin() + static_cast<std::ptrdiff_t>(q), iv.end());
    m.life = iv[q];
    return m;
  }

  WaOptions o_;
  ListNodes nodes_;
  std::vector<uint16_t> cat_;  // the list each block is in
  std::map<uint16_t, IdList> lists_;
  std::map<uint16_t, Stats> stats_;
  std::map<uint16_t, CategoryModel> models_;
  CategoryModel pooled_{o_.default_lambda, 1.0, std::numeric_limits<double>::infinity()};
  absl::flat_hash_map<BlockKey, Seen> seen_;
  double next_refit_ = 0;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_wa(const WaOptions& options) {
  return std::make_unique<Wa>(options);
}

}  // namespace kvwise::prefix
