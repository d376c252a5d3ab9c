// LRU, FIFO, LFU and GDSF.
#include <absl/container/btree_set.h>

#include <map>
#include <tuple>

#include "prefix/eviction_policy.h"
#include "prefix/intrusive_list.h"
#include "prefix/policies.h"

namespace kvwise::prefix {

namespace {

// One list in arrival order. LRU moves a block to the back when it is released (a hit pins it, so
// release is its last use); FIFO never moves it.
class ListPolicy final : public EvictionPolicy {
 public:
  explicit ListPolicy(bool lru) : lru_(lru) {}
  std::string name() const override { return lru_ ? "lru" : "fifo"; }
  void on_insert(BlockId b, double) override { list_.push_back(b); }
  void on_hit(BlockId, double) override {}
  void on_release(BlockId b, double) override {
    if (lru_) list_.move_to_back(b);
  }
  BlockId evict(double, BlockKey) override {
    const BlockId v = list_.first_unpinned([&](BlockId b) { return pinned(b); });
    if (v != kNoBlock) list_.remove(v);
    return v;
  }
  void on_remove(BlockId b) override { list_.remove(b); }
  size_t bytes() const override { return nodes_.bytes(); }

 private:
  bool lru_;
  ListNodes nodes_;
  IdList list_{nodes_, 0};
};

// Lowest hit count first; among equal counts the least recently released (buckets of LRU lists).
class Lfu final : public EvictionPolicy {
 public:
  std::string name() const override { return "lfu"; }
  void on_insert(BlockId b, double) override {
    if (b >= count_.size()) count_.resize(b + 1, 0);
    count_[b] = 0;
    bucket(0).push_back(b);
  }
  void on_hit(BlockId b, double) override {
    detach(b);
    bucket(++count_[b]).push_back(b);
  }
  void on_release(BlockId b, double) override { bucket(count_[b]).move_to_back(b); }
  BlockId evict(double, BlockKey) override {
    for (auto& [c, list] : buckets_) {
      const BlockId v = list.first_unpinned([&](BlockId b) { return pinned(b); });
      if (v != kNoBlock) {
        detach(v);
        return v;
      }
    }
    return kNoBlock;
  }
  void on_remove(BlockId b) override { detach(b); }
  size_t bytes() const override { return nodes_.bytes() + count_.capacity() * 4 + buckets_.size() * 64; }

 private:
  IdList& bucket(uint32_t c) {
    auto it = buckets_.find(c);
    if (it == buckets_.end()) it = buckets_.emplace(c, IdList(nodes_, static_cast<int>(c))).first;
    return it->second;
  }
  void detach(BlockId b) {
    auto it = buckets_.find(count_[b]);
    it->second.remove(b);
    if (it->second.empty()) buckets_.erase(it);
  }
  ListNodes nodes_;
  std::vector<uint32_t> count_;
  std::map<uint32_t, IdList> buckets_;
};

// Greedy-Dual-Size-Frequency: H = L + hits * cost / size, evict the smallest H, then L = H(victim).
// Blocks have one size; cost is uniform or the block's position (offset + 1), as an option. Equal H:
// the least recently inserted or hit goes first.
class Gdsf final : public EvictionPolicy {
 public:
  explicit Gdsf(bool position_cost) : position_cost_(position_cost) {}
  std::string name() const override { return "gdsf"; }
  void on_insert(BlockId b, double) override {
    if (b >= h_.size()) {
      h_.resize(b + 1);
      seq_.resize(b + 1);
    }
    set_key(b);
  }
  void on_hit(BlockId b, double) override {
    order_.erase(key(b));
    set_key(b);
  }
  void on_release(BlockId, double) override {}
  BlockId evict(double, BlockKey) override {
    for (auto it = order_.begin(); it != order_.end(); ++it) {
      const BlockId v = std::get<2>(*it);
      if (pinned(v)) continue;
      L_ = std::get<0>(*it);
      order_.erase(it);
      return v;
    }
    return kNoBlock;
  }
  void on_remove(BlockId b) override { order_.erase(key(b)); }
  // B-tree entries carry about 25 % node overhead over their payload.
  size_t bytes() const override { return h_.capacity() * 12 + order_.size() * sizeof(Key) * 5 / 4; }

 private:
  using Key = std::tuple<double, uint32_t, BlockId>;
  Key key(BlockId b) const { return {h_[b], seq_[b], b}; }
  void set_key(BlockId b) {
    const double cost = position_cost_ ? meta(b).offset + 1.0 : 1.0;
    h_[b] = L_ + (meta(b).hits + 1.0) * cost;
    seq_[b] = ++counter_;
    order_.insert(key(b));
  }
  bool position_cost_;
  double L_ = 0;
  uint32_t counter_ = 0;
  std::vector<double> h_;
  std::vector<uint32_t> seq_;
  absl::btree_set<Key> order_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_lru() {
  return std::make_unique<ListPolicy>(true);
}
std::unique_ptr<EvictionPolicy> make_fifo() {
  return std::make_unique<ListPolicy>(false);
}
std::unique_ptr<EvictionPolicy> make_lfu() {
  return std::make_unique<Lfu>();
}
std::unique_ptr<EvictionPolicy> make_gdsf(bool position_cost) {
  return std::make_unique<Gdsf>(position_cost);
}

}  // namespace kvwise::prefix
