#include "serve/live_prefix_cache.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "prefix/block_hash.h"

namespace kvwise {

namespace {
constexpr size_t kMaxCategories = 64;  // client-named ones beyond this share "other"
}

// Captures completed prompt blocks before the inner observer (a compressor) runs on the layer.
class LivePrefixCache::Capture : public SequenceObserver {
 public:
  Capture(LivePrefixCache* cache, std::vector<std::pair<int, prefix::BlockKey>> blocks,
          std::shared_ptr<SequenceObserver> inner)
      : cache_(cache), blocks_(std::move(blocks)), inner_(std::move(inner)) {}

  void after_attention(KvStore& kv, SeqId seq, const Attention& a) override {
    if (!blocks_.empty() && a.T > 0) {
      const int32_t begin = a.pos[0], end = a.pos[a.T - 1] + 1;
      const int bt = cache_->block_tokens();
      for (const auto& [b, key] : blocks_) {
        const int32_t block_end = static_cast<int32_t>((b + 1) * bt);
        // During prefill slot s holds position s: nothing has been dropped before the layer's last
        // chunk, and this runs before the compressor sees that chunk.
        if (block_end > begin && block_end <= end && kv.head_len(seq, a.layer, 0) >= block_end &&
            kv.slot_position(seq, a.layer, 0, b * bt) == b * bt)
          cache_->store_layer(kv, seq, a.layer, b, key);
      }
    }
    if (inner_) inner_->after_attention(kv, seq, a);
  }
  void on_hidden(SeqId seq, int layer, const float* x, int64_t dim, int T) override {
    if (inner_) inner_->on_hidden(seq, layer, x, dim, T);
  }
  void after_forward(KvStore& kv, SeqId seq) override {
    if (inner_) inner_->after_forward(kv, seq);
  }

 private:
  LivePrefixCache* cache_;
  std::vector<std::pair<int, prefix::BlockKey>> blocks_;
  std::shared_ptr<SequenceObserver> inner_;
};

LivePrefixCache::LivePrefixCache(const KvLayout& layout, const LivePrefixOptions& options)
    : layout_(layout), opt_(options) {
  KV_CHECK(opt_.block_tokens > 0, "--block-tokens must be positive");
  KV_CHECK(opt_.memory_blocks > 0, "the prefix cache needs a capacity (--prefix-cache-blocks or --prefix-cache-bytes)");
  KV_CHECK(opt_.eviction != "belady", "the offline policy 'belady' needs the future; it exists only in kvwise sim");
  KvStore probe(layout);  // row sizes of the store type
  row_bytes_ = probe.row_bytes();
  block_bytes_ = probe.bytes_per_token_full() * static_cast<size_t>(opt_.block_tokens);
  prefix::PrefixCacheConfig cfg;
  cfg.tiers.push_back({"memory", opt_.memory_blocks, 0});
  if (!opt_.disk_dir.empty()) {
    KV_CHECK(opt_.disk_blocks > 0, "a disk tier needs a capacity in blocks");
    std::error_code ec;
    std::filesystem::create_directories(opt_.disk_dir, ec);
    KV_CHECK(!ec && std::filesystem::is_directory(opt_.disk_dir), "cannot create the prefix cache directory '{}': {}",
             opt_.disk_dir, ec.message());
    cfg.tiers.push_back({"disk", opt_.disk_blocks, 0});
  }
  cfg.policy = opt_.eviction;
  cfg.policy_options = opt_.policy_options;
  cfg.on_move = [this](prefix::BlockKey key, int from, int to) { on_move(key, from, to); };
  cache_ = std::make_unique<prefix::PrefixCache>(cfg);  // throws on an unknown policy name
  for (const auto& t : cfg.tiers) m_.tier_names.push_back(t.name);
  m_.block_bytes = block_bytes_;
}

LivePrefixCache::~LivePrefixCache() {
  std::error_code ec;
  for (prefix::BlockKey key : disk_) std::filesystem::remove(disk_path(key), ec);
}

size_t LivePrefixCache::head_offset(int layer, int head) const {
  // Per (layer, head): block_tokens key rows, then block_tokens value rows.
  return static_cast<size_t>(layer * layout_.n_kv_heads + head) * 2 * static_cast<size_t>(opt_.block_tokens) *
         row_bytes_;
}

std::string LivePrefixCache::disk_path(prefix::BlockKey key) const {
  return fmt::format("{}/{:016x}.kv", opt_.disk_dir, key);
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
  std::lock_guard<std::mutex> lk(mu_);
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
  bool unbroken = true;
  for (size_t i = 0; i < lease.keys.size(); ++i) {
    const prefix::BlockKey key = lease.keys[i];
    if (cache_->tier_of(key) != 0) {  // bypassed: everything resident was pinned
      unbroken = false;
      continue;
    }
    auto it = memory_.find(key);
    const bool ready = it != memory_.end() && it->second.ready();
    if (unbroken && ready && static_cast<int>(i) < max_usable) {
      ++lease.usable_blocks;
      continue;
    }
    unbroken = false;
    if (!ready) lease.capture.emplace_back(static_cast<int>(i), key);
  }
  m_.cached_tokens += static_cast<uint64_t>(lease.cached_tokens());
  return lease;
}

void LivePrefixCache::load(KvStore& kv, SeqId seq, const PrefixLease& lease) {
  if (lease.usable_blocks == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  const int bt = opt_.block_tokens;
  const size_t rb = row_bytes_;
  for (int b = 0; b < lease.usable_blocks; ++b) {
    const Block& blk = memory_.at(lease.keys[static_cast<size_t>(b)]);  // pinned since acquire
    for (int l = 0; l < layout_.n_layers; ++l)
      for (int h = 0; h < layout_.n_kv_heads; ++h) {
        const uint8_t* k = blk.data.get() + head_offset(l, h);
        kv.append_rows(seq, l, h, k, k + static_cast<size_t>(bt) * rb, bt, b * bt);
      }
  }
  kv.set_next_position(seq, lease.usable_blocks * bt);
  m_.loaded_blocks += static_cast<uint64_t>(lease.usable_blocks);
}

std::shared_ptr<SequenceObserver> LivePrefixCache::capture_observer(const PrefixLease& lease,
                                                                    std::shared_ptr<SequenceObserver> inner) {
  if (lease.capture.empty()) return inner;
  return std::make_shared<Capture>(this, lease.capture, std::move(inner));
}

void LivePrefixCache::store_layer(const KvStore& kv, SeqId seq, int layer, int block, prefix::BlockKey key) {
  std::lock_guard<std::mutex> lk(mu_);
  if (cache_->tier_of(key) != 0) return;  // not resident (cannot happen while pinned; be safe)
  Block& blk = memory_[key];
  if (!blk.data) {
    blk.data = std::make_unique<uint8_t[]>(block_bytes_);
    blk.layer_done.assign(static_cast<size_t>(layout_.n_layers), false);
    m_.memory_bytes += block_bytes_;
  }
  if (blk.layer_done[static_cast<size_t>(layer)]) return;  // another sequence with this prefix got here first
  const int bt = opt_.block_tokens;
  const size_t rb = row_bytes_;
  for (int h = 0; h < layout_.n_kv_heads; ++h) {
    uint8_t* k = blk.data.get() + head_offset(layer, h);
    kv.copy_rows(seq, layer, h, block * bt, bt, k, k + static_cast<size_t>(bt) * rb);
  }
  blk.layer_done[static_cast<size_t>(layer)] = true;
  if (++blk.layers == layout_.n_layers) ++m_.captured_blocks;
}

// Runs inside the metadata cache's calls (mu_ held by the caller).
void LivePrefixCache::on_move(prefix::BlockKey key, int from, int to) {
  std::error_code ec;
  if (from == 0) {
    auto it = memory_.find(key);
    if (it == memory_.end()) return;
    if (to == 1 && it->second.ready()) {
      std::ofstream f(disk_path(key), std::ios::binary | std::ios::trunc);
      f.write(reinterpret_cast<const char*>(it->second.data.get()), static_cast<std::streamsize>(block_bytes_));
      if (f.good()) {
        disk_.insert(key);
        m_.disk_bytes += block_bytes_;
      } else {
        ++m_.disk_errors;  // the block is kept as metadata only: a later hit recomputes it
      }
    }
    m_.memory_bytes -= block_bytes_;
    memory_.erase(it);
  } else if (from == 1) {
    if (!disk_.erase(key)) return;
    m_.disk_bytes -= block_bytes_;
    const std::string path = disk_path(key);
    if (to == 0) {
      Block blk;
      blk.data = std::make_unique<uint8_t[]>(block_bytes_);
      std::ifstream f(path, std::ios::binary);
      f.read(reinterpret_cast<char*>(blk.data.get()), static_cast<std::streamsize>(block_bytes_));
      if (f.gcount() == static_cast<std::streamsize>(block_bytes_)) {
        blk.layer_done.assign(static_cast<size_t>(layout_.n_layers), true);
        blk.layers = layout_.n_layers;
        memory_[key] = std::move(blk);
        m_.memory_bytes += block_bytes_;
      } else {
        ++m_.disk_errors;
      }
    }
    std::filesystem::remove(path, ec);
  }
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
  return m;
}

}  // namespace kvwise
