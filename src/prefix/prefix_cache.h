// The cross-request prefix cache: full prompt blocks keyed by chain hashes, in an ordered list of
// tiers (e.g. accelerator memory, host memory, local disk). A request's blocks are usable only up
// to its first missing block; the blocks a running request holds are pinned; a block evicted from
// one tier is demoted to the next; a hit in a lower tier is promoted back to the first.
// The same code serves the trace simulator and (later) the live server.
#pragma once
#include <absl/container/flat_hash_map.h>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "prefix/eviction_policy.h"

namespace kvwise::prefix {

struct TierSpec {
  std::string name = "tier0";
  size_t capacity_blocks = 0;
  double bandwidth = 0;  // bytes/s to bring a block from this tier into the first (0 for the first)
};

struct PrefixCacheConfig {
  std::vector<TierSpec> tiers;  // first = fastest
  std::string policy = "lru";
  PolicyOptions policy_options;  // capacity is set per tier
  bool chain = true;             // false: every present block counts ("holes" semantics)
  // Called when a resident block changes tier, from -> to (to = -1: it left the cache). The live
  // server moves the block's KV data along; the simulator has no data and leaves it empty.
  std::function<void(BlockKey key, int from, int to)> on_move;
};

struct TierMetrics {
  uint64_t hits = 0, insertions = 0, evictions = 0;
  size_t resident = 0, capacity = 0;
};

struct CacheMetrics {
  uint64_t requests = 0, blocks = 0, block_hits = 0, bypassed = 0;
  std::vector<TierMetrics> tiers;
};

// What acquire() did for one request; hand it back to release().
struct Admission {
  std::vector<BlockKey> held;        // blocks pinned in the first tier, in prompt order
  size_t hit_blocks = 0;             // usable prefix blocks found
  std::vector<size_t> hits_by_tier;  // of those, where they were
  size_t inserted = 0;
  bool bypassed = false;  // some blocks could not be cached (all residents pinned)
};

class PrefixCache {
 public:
  explicit PrefixCache(const PrefixCacheConfig& config);

  // next_use (optional, offline policies): for each block, when its key is used next (+inf: never).
  Admission acquire(std::span<const BlockKey> keys, uint16_t category, double now,
                    std::span<const double> next_use = {});
  // Unpins the request's blocks, tail first (so, at equal times, prompt tails are evicted first).
  void release(const Admission& admission, double now);

  int tier_of(BlockKey key) const;  // -1 when absent
  const CacheMetrics& metrics() const { return metrics_; }
  size_t tiers() const { return tiers_.size(); }
  // Bytes of metadata per resident block (tables, index, policy state), summed over tiers.
  size_t metadata_bytes() const;
  // History a policy keeps about keys that are not resident (WA's last-seen times); not per block.
  size_t history_bytes() const;

 private:
  struct Tier {
    TierSpec spec;
    BlockTable table;
    absl::flat_hash_map<BlockKey, BlockId> index;
    std::unique_ptr<EvictionPolicy> policy;
    explicit Tier(const TierSpec& s) : spec(s), table(s.capacity_blocks) {}
  };
  // Makes room in tier t (demoting victims further down); false if every resident is pinned.
  bool make_room(size_t t, double now, BlockKey incoming);
  BlockId insert(size_t t, const BlockMeta& m, double now);
  BlockMeta take(size_t t, BlockId id);
  std::pair<int, BlockId> locate(BlockKey key) const;  // (tier, id), or (-1, kNoBlock)

  PrefixCacheConfig config_;
  std::vector<std::unique_ptr<Tier>> tiers_;
  CacheMetrics metrics_;
};

}  // namespace kvwise::prefix
