#include "serve/live_prefix_cache.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/error.h"
#include "prefix/block_hash.h"
#include "serve/disk_tier.h"
#include "serve/memory_tier.h"

namespace kvwise {

namespace {
constexpr size_t kMaxCategories = 64;  // client-named ones beyond this share "other"
}  // namespace

// Captures completed prompt blocks; attached before the compressor, so it sees each layer first.
class LivePrefixCache::Capture : public SequenceObserver {
 public:
  Capture(LivePrefixCache* cache, std::vector<std::pair<int, prefix::BlockKey>> blocks)
      : cache_(cache), blocks_(std::move(blocks)) {}

  void after_attention(KvStore& kv, SeqId seq, const Attention& a) override {
    if (!blocks_.empty() && a.T > 0) {
      const int32_t begin = a.pos[0], end = a.pos[a.T - 1] + 1;
      const int bt = cache_->block_tokens();
      for (const auto& [b, key] : blocks_) {
        const int32_t block_end = static_cast<int32_t>((b + 1) * bt);
        // During prefill slot s holds position s unless a policy dropped a token before the layer's
        // last chunk; a block is captured only when every head still holds all of its tokens.
        if (block_end > begin && block_end <= end && block_intact(kv, seq, a.layer, b * bt, bt))
          cache_->store_layer(kv, seq, a.layer, b, key);
      }
    }
  }

  // Slots [first, first + n) of every head of the layer hold positions first ... first + n - 1.
  static bool block_intact(const KvStore& kv, SeqId seq, int layer, int first, int n) {
    for (int h = 0; h < kv.layout().n_kv_heads; ++h) {
      if (kv.head_len(seq, layer, h) < first + n) return false;
      for (int i = first; i < first + n; ++i)
        if (kv.slot_position(seq, layer, h, i) != i) return false;
    }
    return true;
  }

 private:
  LivePrefixCache* cache_;
  std::vector<std::pair<int, prefix::BlockKey>> blocks_;
};

size_t LivePrefixCache::block_bytes_for(const KvLayout& layout, const LivePrefixOptions& o) {
  const PrefixBlockCodec codec(layout.type, layout.head_dim, o.dtype, o.group);
  return static_cast<size_t>(layout.n_layers) * static_cast<size_t>(layout.n_kv_heads) * 2 *
         static_cast<size_t>(std::max(0, o.block_tokens)) * codec.stored_row_bytes();
}

BlockIdentity LivePrefixCache::block_identity(const KvLayout& layout, const LivePrefixOptions& o) {
  const PrefixBlockCodec codec(layout.type, layout.head_dim, o.dtype, o.group);
  BlockIdentity id;
  id.model = o.model_fingerprint;
  id.block_tokens = static_cast<uint32_t>(o.block_tokens);
  id.kv_tag = codec.tag();  // the store type, and the bits and group of quantised rows
  id.n_layers = static_cast<uint32_t>(layout.n_layers);
  id.n_kv_heads = static_cast<uint32_t>(layout.n_kv_heads);
  id.head_dim = static_cast<uint32_t>(layout.head_dim);
  id.row_bytes = static_cast<uint32_t>(codec.stored_row_bytes());
  id.payload_bytes = block_bytes_for(layout, o);
  return id;
}

LivePrefixCache::LivePrefixCache(const KvLayout& layout, const LivePrefixOptions& options)
    : layout_(layout), opt_(options), codec_(layout.type, layout.head_dim, options.dtype, options.group) {
  KV_CHECK(opt_.block_tokens > 0, "--block-tokens must be positive");
  KV_CHECK(opt_.memory_blocks > 0, "the prefix cache needs a capacity (--prefix-cache-blocks or --prefix-cache-bytes)");
  KV_CHECK(!prefix::is_offline_policy(opt_.eviction),
           "the offline policy '{}' needs the future; it exists only in kvwise sim", opt_.eviction);
  KV_ASSERT(KvStore(layout).row_bytes() == codec_.store_row_bytes(), "the KV store's rows are not head_dim values");
  row_bytes_ = codec_.stored_row_bytes();
  block_bytes_ = block_bytes_for(layout, opt_);
  memory_ = std::make_unique<MemoryTier>(block_bytes_, layout_.n_layers);
  prefix::PrefixCacheConfig cfg;
  cfg.tiers.push_back({"memory", opt_.memory_blocks, 0});
  if (!opt_.disk_dir.empty()) {
    KV_CHECK(opt_.disk_blocks > 0, "a disk tier needs a capacity in blocks");
    disk_ = std::make_unique<DiskTier>(opt_.disk_dir, block_identity(layout_, opt_));
    cfg.tiers.push_back({"disk", opt_.disk_blocks, 0});
  }
  cfg.policy = opt_.eviction;
  cfg.policy_options = opt_.policy_options;
  cfg.on_move = [this](prefix::BlockKey key, int from, int to) { on_move(key, from, to); };
  cache_ = std::make_unique<prefix::PrefixCache>(cfg);  // throws on an unknown policy name
  for (const auto& t : cfg.tiers) m_.tier_names.push_back(t.name);
  m_.block_bytes = block_bytes_;
  m_.dtype = opt_.dtype;
}

LivePrefixCache::~LivePrefixCache() = default;

size_t LivePrefixCache::head_offset(int layer, int head) const {
  // Per (layer, head): block_tokens key rows, then block_tokens value rows.
  return static_cast<size_t>(layer * layout_.n_kv_heads + head) * 2 * static_cast<size_t>(opt_.block_tokens) *
         row_bytes_;
}

void LivePrefixCache::event(const char* kind, prefix::BlockKey key) {
  if (opt_.on_event) opt_.on_event(kind, key);
}

uint16_t LivePrefixCache::category_id(const std::string& name_in) {
  std::string name = name_in;
  auto it = categories_.find(name);
  if (it == categories_.end() && categories_.size() >= kMaxCategories) name = "other";
  it = categories_.find(name);
  if (it != categories_.end()) return it->second;
  const auto id = static_cast<uint16_t>(category_names_.size());
  categories_[name] = id;
  category_names_.push_back(name);
  return id;
}

std::vector<std::string> LivePrefixCache::category_names() const {
  std::lock_guard<std::mutex> lk(mu_);
  return category_names_;
}

PrefixLease LivePrefixCache::acquire(std::span<const int32_t> prompt, uint64_t salt, const std::string& category,
                                     double now, int min_compute) {
  std::unique_lock<std::mutex> lk(mu_);
  PrefixLease lease;
  lease.block_tokens = opt_.block_tokens;
  lease.keys = prefix::block_keys(prompt, opt_.block_tokens, salt);
  std::string cat = category;
  if (cat.empty()) cat = lease.keys.size() > 1 && cache_->tier_of(lease.keys[1]) >= 0 ? "follow-up" : "first";
  lease.category = category_id(cat);
  lease.admission = cache_->acquire(lease.keys, lease.category, now);
  lease.active = true;
  ++m_.lookups;
  m_.lookup_blocks += lease.keys.size();

  const long computable = static_cast<long>(prompt.size()) - std::max(1, min_compute);
  const int max_usable = computable > 0 ? static_cast<int>(computable / opt_.block_tokens) : 0;
  std::vector<prefix::BlockKey> from_shared;
  if (opt_.shared) {
    // What memory and disk lack of the usable prefix, after its leading ready blocks, is asked of the
    // shared tier (the blocks are pinned in memory by the admission, so they stay while we wait).
    std::vector<prefix::BlockKey> wanted;
    for (int i = 0; i < max_usable && i < static_cast<int>(lease.keys.size()); ++i) {
      const prefix::BlockKey key = lease.keys[static_cast<size_t>(i)];
      if (cache_->tier_of(key) != 0) break;
      if (memory_->ready(key) && wanted.empty()) continue;
      if (!memory_->ready(key)) wanted.push_back(key);
    }
    if (!wanted.empty()) from_shared = fill_from_shared(wanted, lk);
  }
  bool unbroken = true;
  for (size_t i = 0; i < lease.keys.size(); ++i) {
    const prefix::BlockKey key = lease.keys[i];
    if (cache_->tier_of(key) != 0) {  // bypassed: everything resident was pinned
      unbroken = false;
      continue;
    }
    const bool ready = memory_->ready(key) != nullptr;
    if (unbroken && ready && static_cast<int>(i) < max_usable) {
      ++lease.usable_blocks;
      if (std::find(from_shared.begin(), from_shared.end(), key) != from_shared.end()) ++m_.shared_hits;
      continue;
    }
    unbroken = false;
    if (!ready) lease.capture.emplace_back(static_cast<int>(i), key);
  }
  m_.cached_tokens += static_cast<uint64_t>(lease.cached_tokens());
  return lease;
}

// Looks the blocks up in the shared tier without holding the mutex, then fills the ones it had
// (pinned in memory since the admission; another sequence may have filled some meanwhile).
std::vector<prefix::BlockKey> LivePrefixCache::fill_from_shared(const std::vector<prefix::BlockKey>& wanted,
                                                                std::unique_lock<std::mutex>& lk) {
  std::vector<prefix::BlockKey> filled;
  std::vector<std::vector<uint8_t>> data(wanted.size(), std::vector<uint8_t>(block_bytes_));
  std::vector<std::span<uint8_t>> outs(data.begin(), data.end());
  m_.shared_lookups += wanted.size();
  lk.unlock();
  const std::vector<TierGet> got = opt_.shared->get_many(wanted, outs, opt_.shared_deadline);
  lk.lock();
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (got[i] != TierGet::hit || cache_->tier_of(wanted[i]) != 0 || memory_->ready(wanted[i])) continue;
    memory_->put(wanted[i], data[i]);
    ++m_.shared_loaded;
    filled.push_back(wanted[i]);
    event("stored", wanted[i]);
  }
  return filled;
}

void LivePrefixCache::load(KvStore& kv, SeqId seq, const PrefixLease& lease) {
  if (lease.usable_blocks == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  const int bt = opt_.block_tokens;
  const size_t rb = row_bytes_;
  std::vector<uint8_t> rows(codec_.raw() ? 0 : 2 * static_cast<size_t>(bt) * codec_.store_row_bytes());
  for (int b = 0; b < lease.usable_blocks; ++b) {
    const uint8_t* data = memory_->ready(lease.keys[static_cast<size_t>(b)]);
    KV_ASSERT(data, "a usable prefix block has no data (pinned since acquire)");
    for (int l = 0; l < layout_.n_layers; ++l)
      for (int h = 0; h < layout_.n_kv_heads; ++h) {
        const uint8_t* k = data + head_offset(l, h);
        if (codec_.raw()) {
          kv.append_rows(seq, l, h, k, k + static_cast<size_t>(bt) * rb, bt, b * bt);
          continue;
        }
        codec_.decode(k, 2 * bt, rows.data());  // K rows then V rows
        kv.append_rows(seq, l, h, rows.data(), rows.data() + static_cast<size_t>(bt) * codec_.store_row_bytes(), bt,
                       b * bt);
      }
  }
  kv.set_next_position(seq, lease.usable_blocks * bt);
  m_.loaded_blocks += static_cast<uint64_t>(lease.usable_blocks);
}

std::shared_ptr<SequenceObserver> LivePrefixCache::capture_observer(const PrefixLease& lease) {
  if (lease.capture.empty()) return nullptr;
  return std::make_shared<Capture>(this, lease.capture);
}

void LivePrefixCache::store_layer(const KvStore& kv, SeqId seq, int layer, int block, prefix::BlockKey key) {
  std::lock_guard<std::mutex> lk(mu_);
  KV_ASSERT(cache_->tier_of(key) == 0, "prefix block {:016x} left memory while pinned", key);
  const int bt = opt_.block_tokens;
  // A sliding-window layer may already have dropped the block's first rows (slots then start past
  // position 0): such a block is not captured (it stays unfilled and is never stored or served).
  int slot0 = block * bt;
  if (kv.head_len(seq, layer, 0) > 0) slot0 -= kv.slot_position(seq, layer, 0, 0);
  if (slot0 < 0) return;
  uint8_t* data = memory_->layer_to_fill(key, layer);
  if (!data) return;  // another sequence with this prefix got here first
  const size_t rb = row_bytes_, sr = codec_.store_row_bytes();
  std::vector<uint8_t> rows(codec_.raw() ? 0 : 2 * static_cast<size_t>(bt) * sr);
  for (int h = 0; h < layout_.n_kv_heads; ++h) {
    uint8_t* k = data + head_offset(layer, h);
    if (codec_.raw()) {
      kv.copy_rows(seq, layer, h, slot0, bt, k, k + static_cast<size_t>(bt) * rb);
      continue;
    }
    kv.copy_rows(seq, layer, h, slot0, bt, rows.data(), rows.data() + static_cast<size_t>(bt) * sr);
    codec_.encode(rows.data(), 2 * bt, k);  // K rows then V rows, as the block lays them out
  }
  if (memory_->filled(key, layer)) {
    ++m_.captured_blocks;
    if (opt_.shared) opt_.shared->put(key, std::span<const uint8_t>(data, block_bytes_));  // queued, not sent
    event("stored", key);
  }
}

// Runs inside the metadata cache's calls (mu_ held by the caller).
void LivePrefixCache::on_move(prefix::BlockKey key, int from, int to) {
  bool left = false;  // the block's data left this server's tiers
  if (from == 0) {
    const uint8_t* data = memory_->ready(key);
    // A block that fails to reach the disk is kept as metadata only: a later hit recomputes it.
    const bool demoted = to == 1 && data && disk_ && disk_->put(key, std::span<const uint8_t>(data, block_bytes_));
    left = data && !demoted;
    memory_->erase(key);
  } else if (from == 1 && disk_ && disk_->contains(key)) {
    left = true;
    if (to == 0) {
      std::vector<uint8_t> block(block_bytes_);
      left = !(disk_->get(key, block) == TierGet::hit && memory_->put(key, block));
    }
    disk_->erase(key);
  }
  if (left) event("evicted", key);
}

void LivePrefixCache::release(PrefixLease& lease, double now) {
  if (!lease.active) return;
  std::lock_guard<std::mutex> lk(mu_);
  cache_->release(lease.admission, now);
  lease.active = false;
}

LivePrefixMetrics LivePrefixCache::metrics() const {
  std::lock_guard<std::mutex> lk(mu_);
  LivePrefixMetrics m = m_;
  m.cache = cache_->metrics();
  m.memory_bytes = memory_->bytes();
  m.storage.push_back({memory_->name(), memory_->counters(), memory_->bytes()});
  if (disk_) {
    const TierCounters d = disk_->counters();
    m.disk_bytes = disk_->bytes();
    m.disk_enabled = d.healthy;
    m.disk_errors = d.errors + d.put_errors;
    m.disk_rejected = d.rejected;
    m.disk_loaded = d.hits;
    m.storage.push_back({disk_->name(), d, disk_->bytes()});
  }
  if (opt_.shared) m.storage.push_back({opt_.shared->name(), opt_.shared->counters(), opt_.shared->bytes()});
  return m;
}

}  // namespace kvwise
