#include "prefix/routing.h"

#include <fmt/format.h>

#include <limits>

#include "base/error.h"

namespace kvwise::prefix {
namespace {

// The next healthy instance after the previous pick, among those `eligible` says.
template <class Eligible>
int next_in_turn(std::span<const InstanceView> in, size_t& turn, Eligible eligible) {
  for (size_t i = 0; i < in.size(); ++i) {
    const size_t c = (turn + i) % in.size();
    if (in[c].healthy && eligible(c)) {
      turn = c + 1;
      return static_cast<int>(c);
    }
  }
  return -1;
}

class RoundRobin final : public RoutingPolicy {
 public:
  std::string name() const override { return "round-robin"; }
  int choose(std::span<const InstanceView> in, int, double) override {
    return next_in_turn(in, turn_, [](size_t) { return true; });
  }

 private:
  size_t turn_ = 0;
};

// Least load among `candidates` (in flight, then active blocks), ties in turn.
int least_loaded(std::span<const InstanceView> in, size_t& turn, const std::vector<bool>& candidate) {
  int best_flight = std::numeric_limits<int>::max();
  double best_blocks = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].healthy || !candidate[i]) continue;
    if (in[i].in_flight < best_flight || (in[i].in_flight == best_flight && in[i].active_blocks < best_blocks)) {
      best_flight = in[i].in_flight;
      best_blocks = in[i].active_blocks;
    }
  }
  return next_in_turn(in, turn, [&](size_t i) {
    return candidate[i] && in[i].in_flight == best_flight && in[i].active_blocks == best_blocks;
  });
}

class LeastLoad final : public RoutingPolicy {
 public:
  std::string name() const override { return "least-load"; }
  int choose(std::span<const InstanceView> in, int, double) override {
    return least_loaded(in, turn_, std::vector<bool>(in.size(), true));
  }

 private:
  size_t turn_ = 0;
};

class Prefix final : public RoutingPolicy {
 public:
  explicit Prefix(const RoutingOptions& o) : o_(o) {}
  std::string name() const override { return "prefix"; }
  int choose(std::span<const InstanceView> in, int request_blocks, double) override {
    int best = 0, lo = std::numeric_limits<int>::max(), hi = 0;
    for (const auto& v : in) {
      if (!v.healthy) continue;
      best = std::max(best, v.overlap_blocks);
      lo = std::min(lo, v.in_flight);
      hi = std::max(hi, v.in_flight);
    }
    const bool unbalanced = hi - lo > o_.balance_abs && hi > o_.balance_rel * lo;
    const bool match = best > 0 && best >= o_.prefix_min_match * request_blocks;
    std::vector<bool> candidate(in.size(), true);
    if (!unbalanced && match)
      for (size_t i = 0; i < in.size(); ++i) candidate[i] = in[i].overlap_blocks == best;
    return least_loaded(in, turn_, candidate);
  }

 private:
  RoutingOptions o_;
  size_t turn_ = 0;
};

class Cost final : public RoutingPolicy {
 public:
  explicit Cost(double w) : w_(w) {}
  std::string name() const override { return "cost"; }
  int choose(std::span<const InstanceView> in, int request_blocks, double decode_blocks) override {
    double best = std::numeric_limits<double>::infinity();
    std::vector<double> cost(in.size(), best);
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i].healthy) continue;
      const int uncached = std::max(0, request_blocks - in[i].overlap_blocks);
      cost[i] = w_ * uncached + in[i].active_blocks + request_blocks + decode_blocks;
      best = std::min(best, cost[i]);
    }
    return next_in_turn(in, turn_, [&](size_t i) { return cost[i] == best; });
  }

 private:
  double w_;
  size_t turn_ = 0;
};

}  // namespace

std::vector<std::string> routing_policy_names() {
  return {"round-robin", "least-load", "prefix", "cost"};
}

std::unique_ptr<RoutingPolicy> make_routing_policy(const std::string& name, const RoutingOptions& o) {
  if (name == "round-robin") return std::make_unique<RoundRobin>();
  if (name == "least-load") return std::make_unique<LeastLoad>();
  if (name == "prefix") return std::make_unique<Prefix>(o);
  if (name == "cost") return std::make_unique<Cost>(o.overlap_weight);
  throw Error(
      fmt::format("unknown routing policy '{}' (known: {}, or all)", name, fmt::join(routing_policy_names(), ", ")));
}

std::vector<std::string> expand_routing_names(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    for (const auto& x : n == "all" ? routing_policy_names() : std::vector<std::string>{n}) {
      make_routing_policy(x);  // throws on an unknown name
      if (std::find(out.begin(), out.end(), x) == out.end()) out.push_back(x);
    }
  }
  return out;
}

void PrefixLocator::stored(BlockKey key, int instance) {
  if (instance < 0 || instance >= 64) return;
  auto it = map_.find(key);
  if (it == map_.end()) {
    if (map_.size() >= capacity_ && !lru_.empty()) {
      map_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    it = map_.emplace(key, Entry{0, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  it->second.instances |= uint64_t{1} << instance;
}

void PrefixLocator::evicted(BlockKey key, int instance) {
  if (instance < 0 || instance >= 64) return;
  auto it = map_.find(key);
  if (it == map_.end()) return;
  it->second.instances &= ~(uint64_t{1} << instance);
  if (it->second.instances == 0) {
    lru_.erase(it->second.lru);
    map_.erase(it);
  }
}

void PrefixLocator::forget_instance(int instance) {
  if (instance < 0 || instance >= 64) return;
  for (auto it = map_.begin(); it != map_.end();) {
    it->second.instances &= ~(uint64_t{1} << instance);
    if (it->second.instances == 0) {
      lru_.erase(it->second.lru);
      map_.erase(it++);
    } else {
      ++it;
    }
  }
}

int PrefixLocator::overlap(std::span<const BlockKey> keys, int instance) const {
  if (instance < 0 || instance >= 64) return 0;
  int n = 0;
  for (const BlockKey k : keys) {
    auto it = map_.find(k);
    if (it == map_.end() || !(it->second.instances >> instance & 1)) break;
    ++n;
  }
  return n;
}

}  // namespace kvwise::prefix
