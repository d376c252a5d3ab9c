// Each eviction policy's decisions against a small brute-force reference: a naive cache with the
// same prefix semantics (chain lookup, pins, tail-first release) that picks victims by scanning all
// resident blocks with the policy's definition. Random request streams; every request's hit count
// and the resident set after it must agree.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "prefix/prefix_cache.h"

namespace kvwise::prefix {
namespace {

struct Req {
  std::vector<BlockKey> keys;
  uint16_t category;
  double time;
};

// Random chains over a small universe: requests share prefixes (trees of keys), revisit them.
std::vector<Req> random_requests(uint32_t seed, int n, int categories = 3) {
  std::mt19937 rng(seed);
  std::vector<Req> out;
  double t = 0;
  for (int i = 0; i < n; ++i) {
    Req r;
    const int root = static_cast<int>(rng() % 4);
    const int len = 1 + static_cast<int>(rng() % 5);
    BlockKey k = static_cast<BlockKey>(root + 1);
    r.keys.push_back(k);
    for (int j = 1; j < len; ++j) {
      k = k * 7 + 1 + rng() % 3;  // few branches per node: plenty of shared prefixes
      r.keys.push_back(k);
    }
    r.category = static_cast<uint16_t>(rng() % static_cast<uint32_t>(categories));
    t += 0.5 + (rng() % 100) / 10.0;
    r.time = t;
    out.push_back(r);
  }
  return out;
}

struct NaiveBlock {
  BlockKey key;
  uint16_t category;
  uint32_t offset;
  uint32_t hits = 0, refs = 0;
  double last_access;
  uint64_t insert_seq, touch_seq, hit_seq;
  double next_use = std::numeric_limits<double>::infinity();
  double gdsf_h = 0;
  int cls = 0;  // hazard: the class the policy files it under
};

// Victim choice over all unpinned residents; returns an index into `blocks` or -1.
using Chooser = std::function<int(std::vector<NaiveBlock>&, double now, BlockKey incoming)>;

class NaiveCache {
 public:
  NaiveCache(size_t capacity, Chooser choose, std::function<void(NaiveBlock&)> on_hit = {})
      : cap_(capacity), choose_(std::move(choose)), on_hit_(std::move(on_hit)) {}
  size_t request(const Req& r, const std::vector<double>& next_use) {
    size_t hits = 0;
    bool usable = true;
    std::vector<BlockKey> held;
    for (size_t i = 0; i < r.keys.size(); ++i) {
      auto it = find(r.keys[i]);
      if (it != blocks_.end()) {
        if (usable) ++hits;
        ++it->hits;
        it->last_access = r.time;
        it->category = r.category;  // a block belongs to its last user's category
        it->hit_seq = ++seq_;
        if (on_hit_) on_hit_(*it);
      } else {
        usable = false;
        if (blocks_.size() >= cap_) {
          const int v = choose_(blocks_, r.time, r.keys[i]);
          if (v < 0) continue;
          blocks_.erase(blocks_.begin() + v);
        }
        NaiveBlock b{r.keys[i], r.category, static_cast<uint32_t>(i), 0, 0, r.time, ++seq_, 0, 0};
        b.touch_seq = b.insert_seq;
        b.hit_seq = b.insert_seq;
        blocks_.push_back(b);
        on_insert(blocks_.back());
        it = blocks_.end() - 1;
      }
      ++it->refs;
      it->next_use = next_use.empty() ? std::numeric_limits<double>::infinity() : next_use[i];
      held.push_back(r.keys[i]);
    }
    for (auto k = held.rbegin(); k != held.rend(); ++k) {
      auto it = find(*k);
      if (it != blocks_.end() && --it->refs == 0) {
        it->last_access = r.time;
        it->touch_seq = ++seq_;
        on_release(*it);
      }
    }
    return hits;
  }
  std::set<BlockKey> resident() const {
    std::set<BlockKey> s;
    for (const auto& b : blocks_) s.insert(b.key);
    return s;
  }
  std::function<void(NaiveBlock&)> on_insert = [](NaiveBlock&) {};
  std::function<void(NaiveBlock&)> on_release = [](NaiveBlock&) {};

 private:
  std::vector<NaiveBlock>::iterator find(BlockKey k) {
    return std::find_if(blocks_.begin(), blocks_.end(), [&](const NaiveBlock& b) { return b.key == k; });
  }
  size_t cap_;
  Chooser choose_;
  std::function<void(NaiveBlock&)> on_hit_;
  std::vector<NaiveBlock> blocks_;
  uint64_t seq_ = 0;
};

template <typename Less>
int argmin_unpinned(std::vector<NaiveBlock>& bs, Less less) {
  int best = -1;
  for (int i = 0; i < static_cast<int>(bs.size()); ++i) {
    if (bs[static_cast<size_t>(i)].refs > 0) continue;
    if (best < 0 || less(bs[static_cast<size_t>(i)], bs[static_cast<size_t>(best)])) best = i;
  }
  return best;
}

// Next use of each block of each request, by request index (what the replay gives Belady).
std::vector<std::vector<double>> next_uses(const std::vector<Req>& reqs) {
  std::vector<std::vector<double>> out(reqs.size());
  std::map<BlockKey, double> next;
  for (size_t i = reqs.size(); i-- > 0;) {
    for (BlockKey k : reqs[i].keys) {
      auto it = next.find(k);
      out[i].push_back(it == next.end() ? std::numeric_limits<double>::infinity() : it->second);
    }
    for (BlockKey k : reqs[i].keys) next[k] = static_cast<double>(i);
  }
  return out;
}

void compare(const std::string& policy, NaiveCache& naive, size_t capacity, uint32_t seed,
             const PolicyOptions& popts = {}) {
  const auto reqs = random_requests(seed, 400);
  const auto nu = next_uses(reqs);
  PrefixCacheConfig cfg;
  cfg.policy = policy;
  cfg.policy_options = popts;
  cfg.tiers = {{"t0", capacity, 0}};
  PrefixCache cache(cfg);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::vector<double> next = is_offline_policy(policy) ? nu[i] : std::vector<double>{};
    const auto a = cache.acquire(reqs[i].keys, reqs[i].category, reqs[i].time, next);
    cache.release(a, reqs[i].time);
    const size_t want = naive.request(reqs[i], next);
    ASSERT_EQ(a.hit_blocks, want) << policy << " request " << i;
    std::set<BlockKey> got;
    for (const auto& k : naive.resident()) ASSERT_GE(cache.tier_of(k), 0) << policy << " request " << i << " key " << k;
    ASSERT_EQ(cache.metrics().tiers[0].resident, naive.resident().size()) << policy << " request " << i;
  }
}

class Policies : public ::testing::TestWithParam<size_t> {};

TEST_P(Policies, LruMatchesReference) {
  NaiveCache n(GetParam(), [](auto& bs, double, BlockKey) {
    return argmin_unpinned(bs, [](const NaiveBlock& a, const NaiveBlock& b) { return a.touch_seq < b.touch_seq; });
  });
  compare("lru", n, GetParam(), 1);
}

TEST_P(Policies, FifoMatchesReference) {
  NaiveCache n(GetParam(), [](auto& bs, double, BlockKey) {
    return argmin_unpinned(bs, [](const NaiveBlock& a, const NaiveBlock& b) { return a.insert_seq < b.insert_seq; });
  });
  compare("fifo", n, GetParam(), 2);
}

TEST_P(Policies, LfuMatchesReference) {
  // Lowest hit count; ties: least recently moved (inserted, hit or released).
  NaiveCache n(GetParam(), [](auto& bs, double, BlockKey) {
    return argmin_unpinned(bs, [](const NaiveBlock& a, const NaiveBlock& b) {
      const uint64_t sa = std::max(a.touch_seq, a.hit_seq), sb = std::max(b.touch_seq, b.hit_seq);
      return a.hits != b.hits ? a.hits < b.hits : sa < sb;
    });
  });
  compare("lfu", n, GetParam(), 3);
}

TEST_P(Policies, GdsfMatchesReference) {
  double L = 0;
  NaiveCache n(
      GetParam(),
      [&](auto& bs, double, BlockKey) {
        const int v = argmin_unpinned(bs, [](const NaiveBlock& a, const NaiveBlock& b) {
          return a.gdsf_h != b.gdsf_h ? a.gdsf_h < b.gdsf_h : a.hit_seq < b.hit_seq;
        });
        if (v >= 0) L = bs[static_cast<size_t>(v)].gdsf_h;
        return v;
      },
      [&](NaiveBlock& b) { b.gdsf_h = L + b.hits + 1.0; });
  n.on_insert = [&](NaiveBlock& b) { b.gdsf_h = L + 1.0; };
  compare("gdsf", n, GetParam(), 4);
}

TEST_P(Policies, BeladyMatchesReference) {
  NaiveCache n(GetParam(), [](auto& bs, double, BlockKey) {
    return argmin_unpinned(bs, [](const NaiveBlock& a, const NaiveBlock& b) {
      if (a.next_use != b.next_use) return a.next_use > b.next_use;
      if (a.offset != b.offset) return a.offset > b.offset;
      return a.insert_seq < b.insert_seq;
    });
  });
  compare("belady", n, GetParam(), 5);
}

TEST_P(Policies, WaMatchesReference) {
  // Fixed per-category models; the reference evaluates the rule from scratch: per category, the
  // least recently released unpinned block is its candidate; the lowest P wins, then the older
  // access, then the larger offset, then the lower category.
  PolicyOptions o;
  o.wa.horizon = 5;
  o.wa.category_follows_last_use = true;  // the reference moves blocks to their last user's category
  o.wa.fixed_models = {{0, {0.5, 0.9, 20.0}}, {1, {0.05, 0.5, 1e9}}, {2, {0.2, 1.0, 8.0}}};
  const auto P = [&](const NaiveBlock& b, double now) {
    const auto& m = o.wa.fixed_models.at(b.category);
    const double d = now - b.last_access;
    if (d > m.life) return 0.0;
    return m.p * std::exp(-m.lambda * d) * (1 - std::exp(-m.lambda * o.wa.horizon));
  };
  NaiveCache n(GetParam(), [&](auto& bs, double now, BlockKey) {
    std::map<uint16_t, int> head;
    for (int i = 0; i < static_cast<int>(bs.size()); ++i) {
      const NaiveBlock& b = bs[static_cast<size_t>(i)];
      if (b.refs > 0) continue;
      auto it = head.find(b.category);
      if (it == head.end() || b.touch_seq < bs[static_cast<size_t>(it->second)].touch_seq) head[b.category] = i;
    }
    int best = -1;
    for (const auto& [cat, i] : head) {
      const NaiveBlock& b = bs[static_cast<size_t>(i)];
      if (best < 0) {
        best = i;
        continue;
      }
      const NaiveBlock& c = bs[static_cast<size_t>(best)];
      const double pb = P(b, now), pc = P(c, now);
      const bool older = b.last_access < c.last_access;
      const bool tie = b.last_access == c.last_access ? b.offset > c.offset : older;
      if (pb < pc || (pb == pc && tie)) best = i;
    }
    return best;
  });
  compare("wa", n, GetParam(), 6, o);
}

int index_of(const std::vector<NaiveBlock>& bs, BlockKey k) {
  for (size_t i = 0; i < bs.size(); ++i)
    if (bs[i].key == k) return static_cast<int>(i);
  return -1;
}

// S3-FIFO written plainly with deques of keys and a frequency map.
struct NaiveS3Fifo {
  size_t small_target, ghost_cap;
  std::deque<BlockKey> small, main, ghost;
  std::map<BlockKey, int> freq;
  int threshold;
  explicit NaiveS3Fifo(size_t cap, double small_ratio = 0.1, int threshold_ = 1)
      : small_target(std::max<size_t>(1, static_cast<size_t>(static_cast<double>(cap) * small_ratio))),
        ghost_cap(std::max<size_t>(1, cap - std::min(cap, small_target))),
        threshold(threshold_) {}
  static bool has(const std::deque<BlockKey>& d, BlockKey k) { return std::find(d.begin(), d.end(), k) != d.end(); }
  void insert(BlockKey k) {
    freq[k] = 0;
    if (has(ghost, k)) {
      ghost.erase(std::find(ghost.begin(), ghost.end(), k));
      main.push_back(k);
    } else {
      small.push_back(k);
    }
  }
  void hit(BlockKey k) { freq[k] = std::min(3, freq[k] + 1); }
  int evict(std::vector<NaiveBlock>& bs) {
    size_t budget = 4 * (small.size() + main.size()) + 4;
    while (budget-- > 0 && (!small.empty() || !main.empty())) {
      if (!small.empty() && (small.size() >= small_target || main.empty())) {
        const BlockKey k = small.front();
        small.pop_front();
        const int i = index_of(bs, k);
        if (bs[static_cast<size_t>(i)].refs > 0 || freq[k] >= threshold) {
          freq[k] = 0;
          main.push_back(k);
          continue;
        }
        ghost.push_back(k);
        while (ghost.size() > ghost_cap) ghost.pop_front();
        return i;
      }
      const BlockKey k = main.front();
      const int i = index_of(bs, k);
      main.pop_front();
      if (bs[static_cast<size_t>(i)].refs > 0 || freq[k] > 0) {
        if (freq[k] > 0) --freq[k];
        main.push_back(k);
        continue;
      }
      return i;
    }
    return -1;
  }
};

TEST_P(Policies, S3FifoMatchesReference) {
  NaiveS3Fifo ref(GetParam());
  NaiveCache n(
      GetParam(), [&](auto& bs, double, BlockKey) { return ref.evict(bs); }, [&](NaiveBlock& b) { ref.hit(b.key); });
  n.on_insert = [&](NaiveBlock& b) { ref.insert(b.key); };
  compare("s3fifo", n, GetParam(), 7);
}

// The promotion threshold and the small queue's share are parameters (libCacheSim's S3FIFO.c: 2, 10 %).
TEST_P(Policies, S3FifoThresholdAndSmallRatioMatchReference) {
  NaiveS3Fifo ref(GetParam(), 0.3, 2);
  NaiveCache n(
      GetParam(), [&](auto& bs, double, BlockKey) { return ref.evict(bs); }, [&](NaiveBlock& b) { ref.hit(b.key); });
  n.on_insert = [&](NaiveBlock& b) { ref.insert(b.key); };
  PolicyOptions o;
  o.capacity = GetParam();
  o.s3fifo_small_ratio = 0.3;
  o.s3fifo_threshold = 2;
  compare("s3fifo", n, GetParam(), 11, o);
}

// ARC written plainly from Megiddo & Modha's Figure 4: T1/T2 of resident keys (front = LRU), ghosts
// B1/B2, target p. A ghost hit adapts p before REPLACE; a miss trims the directory first (case IV).
// The cache-specific parts: REPLACE runs only when the cache is full (evict), pinned blocks are
// skipped, and an insert into a cache that is not full trims ghosts only.
struct NaiveArc {
  size_t c;
  double p = 0;
  std::deque<BlockKey> t1, t2, b1, b2;
  std::optional<BlockKey> pending;  // the incoming key evict() has already handled
  explicit NaiveArc(size_t cap) : c(cap) {}
  static bool has(const std::deque<BlockKey>& d, BlockKey k) { return std::find(d.begin(), d.end(), k) != d.end(); }
  static bool take(std::deque<BlockKey>& d, BlockKey k) {
    auto it = std::find(d.begin(), d.end(), k);
    if (it == d.end()) return false;
    d.erase(it);
    return true;
  }
  void adapt(bool in_b1) {
    const double s1 = static_cast<double>(b1.size()), s2 = static_cast<double>(b2.size());
    if (in_b1)
      p = std::min(static_cast<double>(c), p + (s1 >= s2 ? 1.0 : s2 / s1));
    else
      p = std::max(0.0, p - (s2 >= s1 ? 1.0 : s1 / s2));
  }
  void insert(BlockKey k) {
    const bool handled = pending && *pending == k;
    pending.reset();
    if (has(b1, k) || has(b2, k)) {
      if (!handled) adapt(has(b1, k));
      if (!take(b1, k)) take(b2, k);
      t2.push_back(k);
      return;
    }
    if (!handled) {
      if (t1.size() + b1.size() >= c) {
        if (!b1.empty()) b1.pop_front();
      } else if (t1.size() + t2.size() + b1.size() + b2.size() >= 2 * c && !b2.empty()) {
        b2.pop_front();
      }
    }
    t1.push_back(k);
  }
  void hit(BlockKey k) {
    if (!take(t1, k)) take(t2, k);
    t2.push_back(k);
  }
  int first_unpinned(const std::deque<BlockKey>& d, std::vector<NaiveBlock>& bs) {
    for (BlockKey k : d) {
      const int i = index_of(bs, k);
      if (bs[static_cast<size_t>(i)].refs == 0) return i;
    }
    return -1;
  }
  int evict(std::vector<NaiveBlock>& bs, BlockKey x) {
    const bool in_b1 = has(b1, x), in_b2 = has(b2, x);
    if (!(pending && *pending == x)) {
      pending = x;
      if (in_b1 || in_b2) {
        adapt(in_b1);                           // cases II and III
      } else if (t1.size() + b1.size() >= c) {  // case IV.A
        if (t1.size() < c) {
          if (!b1.empty()) b1.pop_front();
        } else if (int v = first_unpinned(t1, bs); v >= 0) {  // T1's LRU leaves without a ghost
          take(t1, bs[static_cast<size_t>(v)].key);
          return v;
        }
      } else if (t1.size() + t2.size() + b1.size() + b2.size() >= 2 * c && !b2.empty()) {  // case IV.B
        b2.pop_front();
      }
    }
    // REPLACE(x, p)
    const double n1 = static_cast<double>(t1.size());
    const bool from_t1 = !t1.empty() && (n1 > p || (in_b2 && n1 == p));
    int v = first_unpinned(from_t1 ? t1 : t2, bs);
    bool in_t1 = from_t1;
    if (v < 0) {
      v = first_unpinned(from_t1 ? t2 : t1, bs);
      in_t1 = !from_t1;
    }
    if (v < 0) return -1;
    const BlockKey k = bs[static_cast<size_t>(v)].key;
    take(in_t1 ? t1 : t2, k);
    (in_t1 ? b1 : b2).push_back(k);
    return v;
  }
};

TEST_P(Policies, ArcMatchesReference) {
  NaiveArc ref(GetParam());
  NaiveCache n(
      GetParam(), [&](auto& bs, double, BlockKey incoming) { return ref.evict(bs, incoming); },
      [&](NaiveBlock& b) { ref.hit(b.key); });
  n.on_insert = [&](NaiveBlock& b) { ref.insert(b.key); };
  compare("arc", n, GetParam(), 8);
}

// The learned reuse hazard, recomputed from scratch before every request from the whole history
// of accesses (no decay, a refit before each request, nothing forgotten): per class (category slot,
// prior uses capped, last block of its prompt), the gaps to each access's next use binned
// log-spaced; score = P(gap within the next H | survived to the age). With horizon 0, H is
// horizon_scale x a running mean of the victims' idle times.
struct HazardReference {
  explicit HazardReference(const HazardOptions& options) : o(options) {}
  HazardOptions o;
  std::map<BlockKey, std::vector<std::pair<double, int>>> uses;  // key -> (time, class) of each access
  std::map<BlockKey, int> cls_now;
  std::map<uint16_t, int> slots;  // category -> slot, in order of first appearance
  std::vector<std::vector<double>> table;
  double eviction_age = 60;
  int per_category() const { return (o.max_uses + 1) * 2; }
  int classes() const { return per_category() * std::max(1, o.max_categories); }
  double scale() const { return o.bins / (std::log(o.window) - std::log(o.min_gap)); }
  int bin(double gap) const {
    if (!(gap >= o.min_gap)) return 0;
    return std::min(o.bins + 1, 1 + static_cast<int>((std::log(gap) - std::log(o.min_gap)) * scale()));
  }
  double bin_start(int b) const { return b == 0 ? 0.0 : std::exp(std::log(o.min_gap) + (b - 1) / scale()); }
  void begin(const Req& r) {
    const double horizon = o.horizon > 0 ? o.horizon : std::max(o.min_gap, o.horizon_scale * eviction_age);
    const auto C = static_cast<size_t>(classes()), B = static_cast<size_t>(o.bins + 2);
    std::vector<std::vector<double>> hist(C, std::vector<double>(B));
    std::vector<double> total(C);
    for (const auto& [k, v] : uses)
      for (size_t i = 0; i < v.size(); ++i) {
        total[static_cast<size_t>(v[i].second)] += 1;
        if (i + 1 < v.size())
          hist[static_cast<size_t>(v[i].second)][static_cast<size_t>(bin(v[i + 1].first - v[i].first))] += 1;
      }
    table.assign(C, std::vector<double>(B));
    for (size_t c = 0; c < C; ++c)
      for (int b = 0; b <= o.bins; ++b) {
        const int until = std::min(bin(bin_start(b) + horizon), o.bins);
        double within = 0, before = 0;
        for (int x = 0; x < b; ++x) before += hist[c][static_cast<size_t>(x)];
        for (int x = b; x <= until; ++x) within += hist[c][static_cast<size_t>(x)];
        const double alive = total[c] - before;
        table[c][static_cast<size_t>(b)] = alive > 0 ? std::clamp(within / alive, 0.0, 1.0) : 0.0;
      }
    if (!slots.count(r.category)) slots[r.category] = std::min(static_cast<int>(slots.size()), o.max_categories - 1);
    const int slot = o.max_categories <= 1 ? 0 : slots[r.category];
    for (size_t i = 0; i < r.keys.size(); ++i) {
      auto& v = uses[r.keys[i]];
      const int u = std::min(static_cast<int>(v.size()), o.max_uses);
      const int c = slot * per_category() + (i + 1 == r.keys.size() ? o.max_uses + 1 + u : u);
      v.emplace_back(r.time, c);
      cls_now[r.keys[i]] = c;
    }
  }
  // Per class, the least recently released unpinned block; the lowest score, then the older access.
  int choose(std::vector<NaiveBlock>& bs, double now) {
    std::map<int, int> head;
    for (int i = 0; i < static_cast<int>(bs.size()); ++i) {
      const NaiveBlock& b = bs[static_cast<size_t>(i)];
      if (b.refs > 0) continue;
      auto it = head.find(b.cls);
      if (it == head.end() || b.touch_seq < bs[static_cast<size_t>(it->second)].touch_seq) head[b.cls] = i;
    }
    int best = -1;
    double best_score = 0;
    for (const auto& [c, i] : head) {
      const NaiveBlock& b = bs[static_cast<size_t>(i)];
      const double s = table[static_cast<size_t>(c)][static_cast<size_t>(bin(now - b.last_access))];
      if (best < 0 || s < best_score ||
          (s == best_score && b.last_access < bs[static_cast<size_t>(best)].last_access)) {
        best = i;
        best_score = s;
      }
    }
    if (best >= 0)
      eviction_age += 0.001 * (std::max(0.0, now - bs[static_cast<size_t>(best)].last_access) - eviction_age);
    return best;
  }
};

TEST_P(Policies, HazardMatchesReference) {
  for (const double horizon : {20.0, 0.0}) {  // fixed, and adapting to the victims' idle times
    PolicyOptions o;
    o.hazard.horizon = horizon;
    o.hazard.window = 1e5;           // nothing is forgotten within the stream
    o.hazard.half_life = 1e12;       // no decay
    o.hazard.refit_interval = 1e-9;  // a refit before every request
    o.hazard.max_categories = 2;     // three categories in the stream: two share a slot
    o.hazard.bins = 12;
    for (uint32_t seed : {21u, 22u}) {
      HazardReference ref(o.hazard);
      NaiveCache naive(GetParam(), [&](auto& bs, double now, BlockKey) { return ref.choose(bs, now); });
      naive.on_insert = [&](NaiveBlock& b) { b.cls = ref.cls_now[b.key]; };
      naive.on_release = [&](NaiveBlock& b) { b.cls = ref.cls_now[b.key]; };
      const auto reqs = random_requests(seed, 400);
      PrefixCacheConfig cfg;
      cfg.policy = "hazard";
      cfg.policy_options = o;
      cfg.tiers = {{"t0", GetParam(), 0}};
      PrefixCache cache(cfg);
      for (size_t i = 0; i < reqs.size(); ++i) {
        const auto a = cache.acquire(reqs[i].keys, reqs[i].category, reqs[i].time);
        cache.release(a, reqs[i].time);
        ref.begin(reqs[i]);
        ASSERT_EQ(a.hit_blocks, naive.request(reqs[i], {}))
            << "horizon " << horizon << " seed " << seed << " request " << i;
        for (const auto& k : naive.resident()) ASSERT_GE(cache.tier_of(k), 0) << "request " << i << " key " << k;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Capacities, Policies, ::testing::Values(3, 8, 20));

TEST(Wa, OneCategoryEqualOffsetsIsLru) {
  // Every request is one block (offset 0), one category: WA must evict exactly as LRU does.
  std::mt19937 rng(9);
  PrefixCacheConfig lru_cfg, wa_cfg;
  lru_cfg.tiers = wa_cfg.tiers = {{"t0", 10, 0}};
  lru_cfg.policy = "lru";
  wa_cfg.policy = "wa";
  wa_cfg.policy_options.wa.refit_interval = 5;  // fits happen, on a single category
  wa_cfg.policy_options.wa.min_samples = 3;
  PrefixCache lru(lru_cfg), wa(wa_cfg);
  double t = 0;
  for (int i = 0; i < 3000; ++i) {
    const BlockKey k = rng() % 25;
    t += 0.1 + (rng() % 50) / 10.0;
    const std::vector<BlockKey> keys{k};
    const auto a = lru.acquire(keys, 0, t), b = wa.acquire(keys, 0, t);
    ASSERT_EQ(a.hit_blocks, b.hit_blocks) << i;
    lru.release(a, t);
    wa.release(b, t);
    for (BlockKey x = 0; x < 25; ++x) ASSERT_EQ(lru.tier_of(x), wa.tier_of(x)) << i;
  }
}

TEST(Policies, BeladyIsAtLeastEveryOnlinePolicy) {
  for (uint32_t seed = 10; seed < 16; ++seed)
    for (size_t cap : {4u, 10u, 30u}) {
      const auto reqs = random_requests(seed, 600);
      const auto nu = next_uses(reqs);
      std::map<std::string, uint64_t> hits;
      uint64_t infinite = 0;
      std::set<BlockKey> seen;
      for (const auto& r : reqs) {
        bool ok = true;
        for (BlockKey k : r.keys) {
          ok = ok && seen.count(k);
          infinite += ok;
        }
        seen.insert(r.keys.begin(), r.keys.end());
      }
      for (const std::string& p : policy_names()) {
        PrefixCacheConfig cfg;
        cfg.policy = p;
        cfg.tiers = {{"t0", cap, 0}};
        PrefixCache c(cfg);
        for (size_t i = 0; i < reqs.size(); ++i) {
          const auto a = c.acquire(reqs[i].keys, reqs[i].category, reqs[i].time,
                                   is_offline_policy(p) ? std::span<const double>(nu[i]) : std::span<const double>());
          c.release(a, reqs[i].time);
        }
        hits[p] = c.metrics().block_hits;
      }
      for (const auto& [p, h] : hits) EXPECT_LE(h, hits["belady"]) << p << " seed " << seed << " capacity " << cap;
      EXPECT_LE(hits["belady"], infinite);
    }
}

// A hot set reused every few seconds under a stream of keys used once: LRU lets the stream flush the
// hot set; the hazard model learns from the past that first uses are not reused and keeps it.
TEST(Hazard, LearnsThatFirstUsesAreNotReused) {
  std::map<std::string, uint64_t> hits;
  for (const std::string p : {"lru", "hazard"}) {
    PrefixCacheConfig cfg;
    cfg.policy = p;
    cfg.policy_options.hazard.refit_interval = 5;
    cfg.tiers = {{"t0", 40, 0}};
    PrefixCache c(cfg);
    std::mt19937 rng(3);
    BlockKey fresh = 1000000;
    double t = 0;
    for (int i = 0; i < 6000; ++i) {
      t += 0.2;
      std::vector<BlockKey> keys;
      if (i % 3 == 0) {
        keys = {static_cast<BlockKey>(1 + rng() % 30)};  // the hot set: 30 keys, one in three requests
      } else {
        for (int j = 0; j < 4; ++j) keys.push_back(fresh++);  // scans of never-again keys
      }
      const auto a = c.acquire(keys, 0, t);
      c.release(a, t);
    }
    hits[p] = c.metrics().block_hits;
  }
  EXPECT_GT(hits["hazard"], hits["lru"] * 3 / 2) << "lru " << hits["lru"] << " hazard " << hits["hazard"];
}

// Keys idle for longer than the window are forgotten: the history follows recent traffic, not the trace.
TEST(Hazard, HistoryStaysBounded) {
  PrefixCacheConfig cfg;
  cfg.policy = "hazard";
  cfg.policy_options.hazard.window = 50;
  cfg.tiers = {{"t0", 16, 0}};
  PrefixCache c(cfg);
  size_t after_first = 0;
  BlockKey fresh = 1;
  for (int i = 0; i < 40000; ++i) {
    const double t = i * 0.1;  // 1,000 new keys per 50 s window
    const std::vector<BlockKey> keys{fresh++, fresh++};
    const auto a = c.acquire(keys, 0, t);
    c.release(a, t);
    if (i == 4000) after_first = c.history_bytes();
  }
  EXPECT_GT(after_first, 0u);
  EXPECT_LE(c.history_bytes(), 2 * after_first);  // 10x the keys seen, the same history
}

TEST(Policies, AllMeansEveryOnlinePolicyAndBelady) {
  const auto all = expand_policy_names({"lru", "all"});
  EXPECT_EQ(all.front(), "lru");
  EXPECT_EQ(std::count(all.begin(), all.end(), "lru"), 1);
  EXPECT_EQ(all.size(), policy_names().size() - 1);  // every policy but the lru-oracle bound
  EXPECT_EQ(std::count(all.begin(), all.end(), "lru-oracle"), 0);
  EXPECT_EQ(all.back(), "belady");
  const auto online = online_policy_names();
  EXPECT_EQ(std::count(online.begin(), online.end(), "belady"), 0);
  EXPECT_EQ(std::count(online.begin(), online.end(), "hazard"), 1);
  EXPECT_EQ(online.size() + 2, policy_names().size());  // belady and lru-oracle need the future
  EXPECT_TRUE(is_offline_policy("lru-oracle"));
  EXPECT_FALSE(is_offline_policy("hazard"));
}

// The analysis bound: with every block's next use known, blocks never used again go first, then LRU.
TEST_P(Policies, LruOracleMatchesReference) {
  NaiveCache n(GetParam(), [](auto& bs, double, BlockKey) {
    return argmin_unpinned(bs, [](const NaiveBlock& a, const NaiveBlock& b) {
      const bool da = std::isinf(a.next_use), db = std::isinf(b.next_use);
      if (da != db) return da;
      return a.touch_seq < b.touch_seq;
    });
  });
  compare("lru-oracle", n, GetParam(), 8);
}

TEST(Policies, UnknownNameIsAClearError) {
  EXPECT_THROW(make_policy("lruu", {}), std::exception);
  for (const auto& n : policy_names()) EXPECT_EQ(make_policy(n, {}).get()->name(), n);
}

}  // namespace
}  // namespace kvwise::prefix
