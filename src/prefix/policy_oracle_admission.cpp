// "lru-oracle": an analysis bound, not a policy to deploy. LRU that knows, from the future, whether
// a block will ever be used again: blocks with no next use are evicted first (the least recently
// used of them), the rest in LRU order. It answers "what would perfect reuse prediction (without
// timing) buy an LRU cache?" — the ceiling of admission control and of learned reuse classifiers
// that predict whether, not when (docs/results/prefix-cache.md). Offline: needs set_next_use.
#include <limits>
#include <vector>

#include "prefix/eviction_policy.h"
#include "prefix/intrusive_list.h"
#include "prefix/policies.h"

namespace kvwise::prefix {

namespace {

class LruOracle final : public EvictionPolicy {
 public:
  std::string name() const override { return "lru-oracle"; }
  void set_next_use(BlockId b, double t) override {
    if (b >= dead_flag_.size()) dead_flag_.resize(b + 1, 1);
    dead_flag_[b] = t == std::numeric_limits<double>::infinity();
  }
  void on_insert(BlockId b, double) override {
    if (b >= dead_flag_.size()) dead_flag_.resize(b + 1, 1);
    dead_flag_[b] = 1;  // until set_next_use says otherwise
    live_.push_back(b);
  }
  void on_hit(BlockId, double) override {}
  void on_release(BlockId b, double) override {
    (dead_.contains(b) ? dead_ : live_).remove(b);
    (dead_flag_[b] ? dead_ : live_).push_back(b);
  }
  BlockId evict(double, BlockKey) override {
    for (IdList* l : {&dead_, &live_}) {
      const BlockId b = l->first_unpinned([&](BlockId x) { return pinned(x); });
      if (b != kNoBlock) {
        l->remove(b);
        return b;
      }
    }
    return kNoBlock;
  }
  void on_remove(BlockId b) override { (dead_.contains(b) ? dead_ : live_).remove(b); }
  size_t bytes() const override { return nodes_.bytes() + dead_flag_.capacity(); }

 private:
  ListNodes nodes_;
  IdList dead_{nodes_, 0}, live_{nodes_, 1};
  std::vector<uint8_t> dead_flag_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> make_lru_oracle() {
  return std::make_unique<LruOracle>();
}

}  // namespace kvwise::prefix
