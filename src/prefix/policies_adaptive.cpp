// S3-FIFO, ARC and the offline farthest-next-use optimum (Belady).
#include <absl/container/btree_set.h>
#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <optional>
#include <tuple>

#include "prefix/eviction_policy.h"
#include "prefix/intrusive_list.h"
#include "prefix/policies.h"

namespace kvwise::prefix {

namespace {

// A FIFO of evicted keys with O(1) membership (ghost entries of S3-FIFO and ARC). Ghosts hold a
// 32-bit fingerprint of the key, not the key: a false "was here" needs a fingerprint collision
// (about 1e-5 per lookup with 40,000 ghosts), and the memory per ghost halves. Erasing forgets the
// fingerprint; its queue entry goes stale (entries carry a sequence number, so a re-pushed key is
// not confused with its stale entry) and the queue is compacted once stale entries dominate.
class GhostList {
 public:
  bool contains(BlockKey k) const { return live_.contains(fingerprint(k)); }
  size_t size() const { return live_.size(); }
  void push(BlockKey k) {
    const uint32_t f = fingerprint(k);
    if (!live_.emplace(f, ++seq_).second) return;
    order_.push_back({f, seq_});
  }
  void erase(BlockKey k) {
    live_.erase(fingerprint(k));
    if (order_.size() > 2 * live_.size() + 16) compact();
  }
  void pop_oldest() {
    while (!order_.empty()) {
      const Entry e = order_.front();
      order_.pop_front();
      auto it = live_.find(e.fp);
      if (it != live_.end() && it->second == e.seq) {
        live_.erase(it);
        return;
      }
    }
  }
  size_t bytes() const {
    return order_.size() * sizeof(Entry) + live_.capacity() * (sizeof(std::pair<uint32_t, uint32_t>) + 1);
  }

 private:
  struct Entry {
    uint32_t fp, seq;
  };
  static uint32_t fingerprint(BlockKey k) {
    k ^= k >> 33;  // murmur3 finalizer
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return static_cast<uint32_t>(k);
  }
  void compact() {
    std::deque<Entry> kept;
    for (const Entry& e : order_) {
      auto it = live_.find(e.fp);
      if (it != live_.end() && it->second == e.seq) kept.push_back(e);
    }
    order_.swap(kept);
  }
  std::deque<Entry> order_;
  absl::flat_hash_map<uint32_t, uint32_t> live_;
  uint32_t seq_ = 0;
};

// S3-FIFO (Yang et al., SOSP'23): a small FIFO (small_ratio of the capacity, default 10 %) filters
// one-hit blocks, a main FIFO with lazy promotion (2-bit frequency) keeps the rest, a ghost FIFO
// remembers blocks evicted from small. A block leaving small moves to main when it was hit at least
// `threshold` times there (default 1; libCacheSim's S3FIFO.c uses 2).
class S3Fifo final : public EvictionPolicy {
 public:
  S3Fifo(size_t capacity, double small_ratio, int threshold)
      : small_target_(std::max<size_t>(1, static_cast<size_t>(static_cast<double>(capacity) * small_ratio))),
        ghost_cap_(std::max<size_t>(1, capacity - std::min(capacity, small_target_))),
        threshold_(static_cast<uint8_t>(std::clamp(threshold, 1, 3))) {}
  std::string name() const override { return "s3fifo"; }
  void on_insert(BlockId b, double) override {
    if (b >= freq_.size()) freq_.resize(b + 1, 0);
    freq_[b] = 0;
    const BlockKey k = meta(b).key;
    if (ghost_.contains(k)) {
      ghost_.erase(k);
      main_.push_back(b);
    } else {
      small_.push_back(b);
    }
  }
  void on_hit(BlockId b, double) override { freq_[b] = static_cast<uint8_t>(std::min(3, freq_[b] + 1)); }
  void on_release(BlockId, double) override {}
  BlockId evict(double, BlockKey) override {
    // Each pass either evicts or moves a block; pinned blocks rotate to the back, so bound the work.
    size_t budget = 4 * (small_.size() + main_.size()) + 4;
    while (budget-- > 0 && (!small_.empty() || !main_.empty())) {
      if (!small_.empty() && (small_.size() >= small_target_ || main_.empty())) {
        const BlockId b = small_.front();
        small_.remove(b);
        if (pinned(b) || freq_[b] >= threshold_) {  // hit while in small: promote to main
          freq_[b] = 0;
          main_.push_back(b);
          continue;
        }
        ghost_.push(meta(b).key);
        while (ghost_.size() > ghost_cap_) ghost_.pop_oldest();
        return b;
      }
      const BlockId b = main_.front();
      if (pinned(b) || freq_[b] > 0) {
        if (freq_[b] > 0) --freq_[b];
        main_.move_to_back(b);
        continue;
      }
      main_.remove(b);
      return b;
    }
    return kNoBlock;
  }
  void on_remove(BlockId b) override {
    if (small_.contains(b))
      small_.remove(b);
    else
      main_.remove(b);
  }
  size_t bytes() const override { return nodes_.bytes() + freq_.capacity() + ghost_.bytes(); }

 private:
  size_t small_target_, ghost_cap_;
  uint8_t threshold_;
  ListNodes nodes_;
  IdList small_{nodes_, 0}, main_{nodes_, 1};
  std::vector<uint8_t> freq_;
  GhostList ghost_;
};

// ARC (Megiddo & Modha, FAST'03), as the paper's Figure 4 states it: recency list T1 and frequency
// list T2 of resident blocks, ghost lists B1/B2 of evicted keys, a target size p for T1. A ghost hit
// adapts p before REPLACE runs (cases II and III); a miss trims the directory first (case IV: B1's
// LRU when |T1|+|B1| = c and |T1| < c, T1's LRU without a ghost when |T1| = c, B2's LRU when the
// directory holds 2c). The only departures are what this cache needs: REPLACE runs when the tier is
// full (evict()), pinned blocks are skipped (the other list serves when one holds only pinned blocks),
// and a tier that is not full (blocks promoted away) inserts without replacing.
class Arc final : public EvictionPolicy {
 public:
  explicit Arc(size_t capacity) : c_(std::max<size_t>(1, capacity)) {}
  std::string name() const override { return "arc"; }
  BlockId evict(double, BlockKey x) override {
    const bool in_b1 = b1_.contains(x), in_b2 = b2_.contains(x);
    if (!(replaced_for_ && *replaced_for_ == x)) {
      replaced_for_ = x;
      if (in_b1 || in_b2) {
        adapt(in_b1);
      } else if (BlockId v = trim_directory(true); v != kNoBlock) {
        return v;  // case IV.A with a full T1: its LRU leaves the cache without a ghost
      }
    }
    return replace(in_b2);
  }
  void on_insert(BlockId b, double) override {
    const BlockKey k = meta(b).key;
    const bool replaced = replaced_for_ && *replaced_for_ == k;
    replaced_for_.reset();
    if (b1_.contains(k) || b2_.contains(k)) {
      if (!replaced) adapt(b1_.contains(k));
      (b1_.contains(k) ? b1_ : b2_).erase(k);
      t2_.push_back(b);
      return;
    }
    if (!replaced) trim_directory(false);
    t1_.push_back(b);
  }
  void on_hit(BlockId b, double) override {
    if (t1_.contains(b))
      t1_.remove(b);
    else
      t2_.remove(b);
    t2_.push_back(b);
  }
  void on_release(BlockId, double) override {}
  void on_remove(BlockId b) override {
    if (t1_.contains(b))
      t1_.remove(b);
    else
      t2_.remove(b);
  }
  size_t bytes() const override { return nodes_.bytes() + b1_.bytes() + b2_.bytes(); }

 private:
  // Cases II (a hit in B1: favour recency) and III (B2: favour frequency).
  void adapt(bool hit_in_b1) {
    const double b1 = static_cast<double>(b1_.size()), b2 = static_cast<double>(b2_.size());
    if (hit_in_b1)
      p_ = std::min(static_cast<double>(c_), p_ + (b1 >= b2 ? 1.0 : b2 / b1));
    else
      p_ = std::max(0.0, p_ - (b2 >= b1 ? 1.0 : b1 / b2));
  }
  // Case IV's directory bounds before a new key enters T1. With may_evict, a full T1 gives up its LRU
  // block (returned; no ghost); without (the tier is not full) nothing resident leaves.
  BlockId trim_directory(bool may_evict) {
    const size_t l1 = t1_.size() + b1_.size(), l2 = t2_.size() + b2_.size();
    if (l1 >= c_) {
      if (t1_.size() < c_ || !may_evict) {
        if (b1_.size() > 0) b1_.pop_oldest();
      } else if (BlockId v = t1_.first_unpinned([&](BlockId x) { return pinned(x); }); v != kNoBlock) {
        t1_.remove(v);
        return v;
      }
    } else if (l1 + l2 >= 2 * c_ && b2_.size() > 0) {
      b2_.pop_oldest();
    }
    return kNoBlock;
  }
  // REPLACE(x, p): T1's LRU to B1 when |T1| > p (or = p and x is in B2), else T2's LRU to B2.
  BlockId replace(bool x_in_b2) {
    const auto skip = [&](BlockId x) { return pinned(x); };
    const double t1 = static_cast<double>(t1_.size());
    const bool from_t1 = !t1_.empty() && (t1 > p_ || (x_in_b2 && t1 == p_));
    BlockId v = from_t1 ? t1_.first_unpinned(skip) : t2_.first_unpinned(skip);
    bool in_t1 = from_t1;
    if (v == kNoBlock) {  // the chosen list holds only pinned blocks: take the other one
      v = from_t1 ? t2_.first_unpinned(skip) : t1_.first_unpinned(skip);
      in_t1 = !from_t1;
    }
    if (v == kNoBlock) return kNoBlock;
    (in_t1 ? t1_ : t2_).remove(v);
    (in_t1 ? b1_ : b2_).push(meta(v).key);
    return v;
  }

  size_t c_;
  double p_ = 0;
  std::optional<BlockKey> replaced_for_;  // the incoming key evict() already adapted and trimmed for
  ListNodes nodes_;
  IdList t1_{nodes_, 1}, t2_{nodes_, 2};
  GhostList b1_, b2_;
};

// Offline optimum for single items: evict the block whose key is used farthest in the future
// (never-used first); on equal next use, the larger offset (prompt tail) first, so a chain is cut
// from its end. The replay tells it each block's next use before every access.
class Belady final : public EvictionPolicy {
 public:
  std::string name() const override { return "belady"; }
  void set_next_use(BlockId b, double t) override {
    if (b >= next_.size()) next_.resize(b + 1, kNever);
    if (resident(b)) order_.erase(entry(b));
    next_[b] = t;
    if (resident(b)) order_.insert(entry(b));
  }
  void on_insert(BlockId b, double) override {
    if (b >= next_.size()) next_.resize(b + 1, kNever);
    if (b >= resident_.size()) resident_.resize(b + 1, 0);
    if (b >= seq_.size()) seq_.resize(b + 1, 0);
    next_[b] = kNever;     // until set_next_use says otherwise
    seq_[b] = ++counter_;  // equal next use and offset: the older block goes first
    resident_[b] = 1;
    order_.insert(entry(b));
  }
  void on_hit(BlockId, double) override {}
  void on_release(BlockId, double) override {}
  BlockId evict(double, BlockKey) override {
    for (auto it = order_.begin(); it != order_.end(); ++it) {
      const BlockId b = std::get<3>(*it);
      if (pinned(b)) continue;
      order_.erase(it);
      resident_[b] = 0;
      return b;
    }
    return kNoBlock;
  }
  void on_remove(BlockId b) override {
    order_.erase(entry(b));
    resident_[b] = 0;
  }
  size_t bytes() const override { return next_.capacity() * 13 + resident_.capacity() + order_.size() * 30; }

 private:
  static constexpr double kNever = std::numeric_limits<double>::infinity();
  // Sorted so that begin() is the best victim: farthest next use, then larger offset.
  std::tuple<double, int32_t, uint32_t, BlockId> entry(BlockId b) const {
    return {-next_[b], -static_cast<int32_t>(meta(b).offset), seq_[b], b};
  }
  bool resident(BlockId b) const { return b < resident_.size() && resident_[b]; }
  std::vector<double> next_;
  std::vector<uint32_t> seq_;
  uint32_t counter_ = 0;
  std::vector<uint8_t> resident_;
  absl::btree_set<std::tuple<double, int32_t, uint32_t, BlockId>> order_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_s3fifo(size_t capacity, double small_ratio, int threshold) {
  return std::make_unique<S3Fifo>(capacity, small_ratio, threshold);
}
std::unique_ptr<EvictionPolicy> make_arc(size_t capacity) {
  return std::make_unique<Arc>(capacity);
}
std::unique_ptr<EvictionPolicy> make_belady() {
  return std::make_unique<Belady>();
}

}  // namespace kvwise::prefix
