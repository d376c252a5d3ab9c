// Request routing across instances, shared by the live router (kvwise route) and the cluster
// simulator (kvwise sim --instances), so that both decide alike. A policy sees, per instance, whether
// it is healthy, its load and how many of the request's leading prompt blocks it already holds, and
// picks one instance:
//   round-robin  the next healthy instance in turn
//   least-load   the fewest requests in flight (ties: the lowest active blocks, then in turn)
//   prefix       cache-aware as SGLang's router: while the load is balanced, the longest cached
//                prefix if it covers at least prefix_min_match of the prompt (ties: less loaded),
//                else least-load; when unbalanced (max - min in flight > balance_abs and max >
//                balance_rel x min), least-load (pure longest-prefix sends a shared system prompt's
//                every request to one instance)
//   cost         NVIDIA Dynamo's KV-aware cost: overlap_weight x uncached prefill blocks + decode
//                blocks (the instance's active blocks plus this request's), the lowest wins
// Where prefixes live comes from a PrefixLocator: fed by the instances' KV events (stored/evicted)
// or by the router's own record of where it sent which prompt.
// Thread-safety: none; the router serialises calls under its own mutex.
#pragma once
#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "prefix/block_hash.h"

namespace kvwise::prefix {

struct InstanceView {
  bool healthy = true;
  int in_flight = 0;         // requests sent and not yet answered
  double active_blocks = 0;  // blocks of KV those requests hold: (prompt + max tokens) / block tokens
  int overlap_blocks = 0;    // the request's leading prompt blocks the instance holds
};

struct RoutingOptions {
  double overlap_weight = 1.0;  // cost: weight of each uncached prefill block against a decode block
  // prefix (SGLang's cache_threshold, balance_abs_threshold, balance_rel_threshold defaults)
  double prefix_min_match = 0.3;
  int balance_abs = 64;
  double balance_rel = 1.5;
};

class RoutingPolicy {
 public:
  virtual ~RoutingPolicy() = default;
  virtual std::string name() const = 0;
  // The chosen instance, or -1 when none is healthy. request_blocks: the request's prompt blocks;
  // decode_blocks: the blocks it will add while decoding (max tokens / block tokens).
  virtual int choose(std::span<const InstanceView> instances, int request_blocks, double decode_blocks) = 0;
};

std::unique_ptr<RoutingPolicy> make_routing_policy(const std::string& name, const RoutingOptions& options = {});
std::vector<std::string> routing_policy_names();
// "all" expands to every policy; unknown names throw kvwise::Error listing the known ones.
std::vector<std::string> expand_routing_names(const std::vector<std::string>& names);

// Which instances hold which blocks (up to 64 instances), bounded: past `capacity` keys the least
// recently touched key is forgotten.
class PrefixLocator {
 public:
  explicit PrefixLocator(size_t capacity = 1 << 20) : capacity_(capacity) {}
  void stored(BlockKey key, int instance);
  void evicted(BlockKey key, int instance);
  void forget_instance(int instance);  // it restarted or died: its cache is gone
  // Leading keys held by `instance` (stops at the first it lacks).
  int overlap(std::span<const BlockKey> keys, int instance) const;
  size_t size() const { return map_.size(); }

 private:
  struct Entry {
    uint64_t instances = 0;
    std::list<BlockKey>::iterator lru;
  };
  size_t capacity_;
  absl::flat_hash_map<BlockKey, Entry> map_;
  std::list<BlockKey> lru_;  // front: most recently touched
};

}  // namespace kvwise::prefix
