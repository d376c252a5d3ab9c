// The prefix cache of src/prefix made live: its blocks carry real KV data. A block is one
// block_tokens-long run of a prompt's uncompressed keys and values over every layer and KV head,
// captured while the prompt is prefilled (before a compression policy touches the layer) and copied
// into later sequences that start with the same tokens, which then skip that prefill. The metadata
// cache decides what stays (eviction policy, pinning, tiers); this class moves the data with it
// between storage tiers that are peers behind one interface (block_tier.h): memory (tier 0), an
// optional directory of block files (tier 1, disk_tier.h) and an optional shared tier below both
// that other servers read and write too (Redis, redis_tier.h). Blocks hold their rows as the store
// does or quantised to int8/int4 (LivePrefixOptions::dtype). Whatever leaves the process is a record
// with a header naming the model (GgufFile::fingerprint), block size, KV type and layout and the
// block's chain key, and a checksum; anything that does not verify is a miss, never loaded.
//
// The shared tier is not managed by this cache's policy: a block is written to it (asynchronously)
// once captured, looked up when a request is admitted for the blocks memory and disk lack (within
// a deadline; a late answer is a miss), and left to the store's own eviction. With events set,
// blocks entering and leaving this server's own tiers are published for routers (kvwise route).
// Thread-safety: every method takes the cache's mutex; shared-tier lookups run outside it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kv/kv_store.h"
#include "model/forward.h"
#include "prefix/prefix_cache.h"
#include "serve/block_tier.h"
#include "serve/prefix_block_codec.h"

namespace kvwise {

class DiskTier;
class MemoryTier;

struct LivePrefixOptions {
  int block_tokens = 32;
  size_t memory_blocks = 0;  // tier 0 capacity (0: no prefix cache)
  std::string disk_dir;      // tier 1 (optional): one file per block in a private directory made inside this one
  size_t disk_blocks = 0;
  uint64_t model_fingerprint = 0;  // GgufFile::fingerprint() of the model whose KV the blocks hold
  std::string eviction = "lru";    // any of prefix::online_policy_names()
  prefix::PolicyOptions policy_options;
  std::string dtype = "f16";  // how blocks hold their rows: f16 (the store's own), int8 or int4 (prefix_block_codec.h)
  int group = 32;             // channels per quantisation group of int8/int4
  // The shared tier below memory and disk (e.g. a RedisTier built with block_identity()), or null.
  std::shared_ptr<BlockTier> shared;
  double shared_deadline = 0.1;  // seconds for one request's shared-tier lookups
  // Called (mutex held; must not block) as a block becomes resident in this server's tiers
  // ("stored") or leaves the last of them ("evicted").
  std::function<void(const char* kind, prefix::BlockKey key)> on_event;
};

// One request's hold on the cache, from lookup until the request ends.
struct PrefixLease {
  prefix::Admission admission;
  std::vector<prefix::BlockKey> keys;  // of the prompt's full blocks
  uint16_t category = 0;
  int usable_blocks = 0;  // leading blocks whose KV is loaded into the sequence
  int block_tokens = 0;
  std::vector<std::pair<int, prefix::BlockKey>> capture;  // (block index, key) this prefill fills in
  bool active = false;
  int cached_tokens() const { return usable_blocks * block_tokens; }
};

struct LivePrefixMetrics {
  prefix::CacheMetrics cache;  // per tier: hits, insertions, evictions, resident, capacity
  std::vector<std::string> tier_names;
  uint64_t lookups = 0, lookup_blocks = 0;
  uint64_t cached_tokens = 0;  // prompt tokens whose prefill was skipped
  uint64_t loaded_blocks = 0, captured_blocks = 0;
  uint64_t disk_errors = 0;    // failed writes and reads
  uint64_t disk_rejected = 0;  // block files that did not verify (another model, truncated, corrupt)
  uint64_t disk_loaded = 0;    // blocks whose data came back from disk, verified
  bool disk_enabled = false;
  size_t memory_bytes = 0, disk_bytes = 0;  // KV data held per tier
  size_t block_bytes = 0;
  std::string dtype;  // LivePrefixOptions::dtype
  struct StorageTier {
    std::string name;
    TierCounters io;
    size_t bytes = 0;
  };
  std::vector<StorageTier> storage;  // memory, disk, shared: their own operation counters
  uint64_t shared_loaded = 0;        // blocks whose data came from the shared tier, verified
  uint64_t shared_hits = 0;          // of those, blocks of a usable prefix (the rest wait for a later request)
  uint64_t shared_lookups = 0;       // blocks asked of the shared tier
};

class LivePrefixCache {
 public:
  LivePrefixCache(const KvLayout& layout, const LivePrefixOptions& options);
  ~LivePrefixCache();
  LivePrefixCache(const LivePrefixCache&) = delete;
  LivePrefixCache& operator=(const LivePrefixCache&) = delete;

  int block_tokens() const { return opt_.block_tokens; }
  size_t block_bytes() const { return block_bytes_; }
  // The bytes one block will take with these options (for sizing a capacity given in bytes).
  static size_t block_bytes_for(const KvLayout& layout, const LivePrefixOptions& options);
  // What a block of this cache is, for tiers that keep records (disk, the shared tier).
  static BlockIdentity block_identity(const KvLayout& layout, const LivePrefixOptions& options);

  // Looks the prompt's blocks up and pins them. The usable prefix is the unbroken run of leading
  // blocks whose data is complete, leaving at least min_compute prompt tokens to compute (at least
  // one: the last token's logits; a compression policy needs its observation window). category: a
  // name given by the client, or empty to infer "first"/"follow-up" from whether the prompt's second
  // block is known (the rule `kvwise sim --categories turn` uses).
  PrefixLease acquire(std::span<const int32_t> prompt, uint64_t salt, const std::string& category, double now,
                      int min_compute = 1);
  // Copies the usable blocks into an empty sequence and moves its next position past them.
  void load(KvStore& kv, SeqId seq, const PrefixLease& lease);
  // An observer for the sequence that captures the prompt blocks it completes, layer by layer (null
  // when there is nothing to capture). Attach it before any compressor (Engine::observe(seq, o, true))
  // so that a compressed working copy never enters the cache. The lease must outlive the prefill.
  std::shared_ptr<SequenceObserver> capture_observer(const PrefixLease& lease);
  void release(PrefixLease& lease, double now);

  LivePrefixMetrics metrics() const;
  std::vector<std::string> category_names() const;

 private:
  class Capture;
  friend class Capture;
  void store_layer(const KvStore& kv, SeqId seq, int layer, int block, prefix::BlockKey key);
  void on_move(prefix::BlockKey key, int from, int to);
  // The keys it filled.
  std::vector<prefix::BlockKey> fill_from_shared(const std::vector<prefix::BlockKey>& wanted,
                                                 std::unique_lock<std::mutex>& lk);
  void event(const char* kind, prefix::BlockKey key);
  uint16_t category_id(const std::string& name);
  size_t head_offset(int layer, int head) const;

  KvLayout layout_;
  LivePrefixOptions opt_;
  PrefixBlockCodec codec_;
  size_t row_bytes_ = 0, block_bytes_ = 0;  // row_bytes_: one row inside a block (codec_.stored_row_bytes())
  mutable std::mutex mu_;
  std::unique_ptr<prefix::PrefixCache> cache_;
  std::unique_ptr<MemoryTier> memory_;
  std::unique_ptr<DiskTier> disk_;
  std::map<std::string, uint16_t> categories_;
  std::vector<std::string> category_names_;
  LivePrefixMetrics m_;
};

}  // namespace kvwise
