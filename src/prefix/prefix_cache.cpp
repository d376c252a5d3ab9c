#include "prefix/prefix_cache.h"

#include <limits>

#include "base/error.h"

namespace kvwise::prefix {

PrefixCache::PrefixCache(const PrefixCacheConfig& config) : config_(config) {
  KV_CHECK(!config.tiers.empty(), "the prefix cache needs at least one tier");
  for (const TierSpec& s : config.tiers) {
    KV_CHECK(s.capacity_blocks > 0, "tier '{}' has no capacity", s.name);
    auto t = std::make_unique<Tier>(s);
    PolicyOptions o = config.policy_options;
    o.capacity = s.capacity_blocks;
    t->policy = make_policy(config.policy, o);
    t->policy->attach(&t->table);
    t->index.reserve(s.capacity_blocks);
    tiers_.push_back(std::move(t));
    metrics_.tiers.push_back({0, 0, 0, 0, s.capacity_blocks});
  }
}

std::pair<int, BlockId> PrefixCache::locate(BlockKey key) const {
  for (size_t t = 0; t < tiers_.size(); ++t) {
    auto it = tiers_[t]->index.find(key);
    if (it != tiers_[t]->index.end()) return {static_cast<int>(t), it->second};
  }
  return {-1, kNoBlock};
}

int PrefixCache::tier_of(BlockKey key) const {
  return locate(key).first;
}

BlockMeta PrefixCache::take(size_t t, BlockId id) {
  Tier& tier = *tiers_[t];
  const BlockMeta m = tier.table[id];
  tier.policy->on_remove(id);
  tier.index.erase(m.key);
  tier.table.remove(id);
  --metrics_.tiers[t].resident;
  return m;
}

BlockId PrefixCache::insert(size_t t, const BlockMeta& m, double now) {
  Tier& tier = *tiers_[t];
  const BlockId id = tier.table.add(m);
  tier.index[m.key] = id;
  tier.policy->on_insert(id, now);
  ++metrics_.tiers[t].insertions;
  ++metrics_.tiers[t].resident;
  return id;
}

bool PrefixCache::make_room(size_t t, double now, BlockKey incoming) {
  Tier& tier = *tiers_[t];
  while (tier.index.size() >= tier.spec.capacity_blocks) {
    const BlockId victim = tier.policy->evict(now, incoming);
    if (victim == kNoBlock) return false;
    ++metrics_.tiers[t].evictions;
    BlockMeta m = tier.table[victim];
    tier.index.erase(m.key);
    tier.table.remove(victim);
    --metrics_.tiers[t].resident;
    int to = -1;
    if (t + 1 < tiers_.size()) {  // demote; the next tier makes its own room
      m.refs = 0;
      if (make_room(t + 1, now, m.key)) {
        insert(t + 1, m, now);
        to = static_cast<int>(t + 1);
      }
    }
    if (config_.on_move) config_.on_move(m.key, static_cast<int>(t), to);
  }
  return true;
}

Admission PrefixCache::acquire(std::span<const BlockKey> keys, uint16_t category, double now,
                               std::span<const double> next_use) {
  Admission a;
  a.hits_by_tier.assign(tiers_.size(), 0);
  ++metrics_.requests;
  metrics_.blocks += keys.size();
  for (auto& t : tiers_) t->policy->observe_request(keys, category, now);
  Tier& top = *tiers_[0];
  bool usable = true;  // still inside the unbroken prefix
  for (size_t i = 0; i < keys.size(); ++i) {
    const BlockKey key = keys[i];
    const double nu = i < next_use.size() ? next_use[i] : std::numeric_limits<double>::infinity();
    const auto [t, found] = locate(key);
    if (t >= 0 && (usable || !config_.chain)) {
      ++a.hit_blocks;
      ++a.hits_by_tier[static_cast<size_t>(t)];
      ++metrics_.tiers[static_cast<size_t>(t)].hits;
      ++metrics_.block_hits;
    } else {
      usable = false;
    }
    BlockId id;
    if (t == 0) {
      id = found;
      BlockMeta& m = top.table[id];
      ++m.hits;
      m.last_access = now;
      m.last_category = category;
      top.policy->on_hit(id, now);
    } else {
      BlockMeta m;
      if (t > 0) {
        m = take(static_cast<size_t>(t), found);
        ++m.hits;
        m.last_category = category;
      } else {
        m.key = key;
        m.category = category;
        m.last_category = category;
        m.offset = static_cast<uint32_t>(i);
      }
      m.last_access = now;
      m.refs = 0;
      if (!make_room(0, now, key)) {  // everything resident is pinned: this block stays uncached
        a.bypassed = true;
        ++metrics_.bypassed;
        if (t > 0) insert(static_cast<size_t>(t), m, now);
        continue;
      }
      m.refs = 0;
      id = insert(0, m, now);
      if (t < 0) ++a.inserted;
      if (t > 0 && config_.on_move) config_.on_move(key, t, 0);
    }
    ++top.table[id].refs;
    top.policy->set_next_use(id, nu);
    a.held.push_back(key);
  }
  return a;
}

void PrefixCache::release(const Admission& a, double now) {
  Tier& top = *tiers_[0];
  for (auto it = a.held.rbegin(); it != a.held.rend(); ++it) {
    auto f = top.index.find(*it);
    if (f == top.index.end()) continue;
    BlockMeta& m = top.table[f->second];
    if (m.refs > 0 && --m.refs == 0) {
      m.last_access = now;
      top.policy->on_release(f->second, now);
    }
  }
}

size_t PrefixCache::metadata_bytes() const {
  size_t b = 0;
  for (const auto& t : tiers_) {
    // flat_hash_map: one (key, id) slot plus one control byte per bucket.
    b += t->table.bytes() + t->index.capacity() * (sizeof(std::pair<BlockKey, BlockId>) + 1) + t->policy->bytes();
  }
  return b;
}

size_t PrefixCache::history_bytes() const {
  size_t b = 0;
  for (const auto& t : tiers_) b += t->policy->history_bytes();
  return b;
}

}  // namespace kvwise::prefix
