#include "serve/live_prefix_cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/private_files.h"
#include "prefix/block_hash.h"

namespace kvwise {

// The header of a block file: what the block is, so that a file of another model, block size, KV type
// or layout, a truncated one or one with other bytes is never taken for it.
struct BlockFileHeader {
  char magic[8] = {'K', 'V', 'W', 'B', 'L', 'O', 'C', 'K'};
  uint32_t version = 1;
  uint32_t header_bytes = sizeof(BlockFileHeader);
  uint64_t model = 0;
  uint64_t key = 0;
  uint32_t block_tokens = 0, kv_type = 0;
  uint32_t n_layers = 0, n_kv_heads = 0, head_dim = 0, row_bytes = 0;
  uint64_t payload_bytes = 0;
  uint64_t checksum = 0;  // XXH3 of the payload
};
static_assert(sizeof(BlockFileHeader) == 72, "no padding: the header is compared as bytes");

namespace {
constexpr size_t kMaxCategories = 64;  // client-named ones beyond this share "other"

bool write_all(int fd, const void* p, size_t n) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool read_all(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}
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

LivePrefixCache::LivePrefixCache(const KvLayout& layout, const LivePrefixOptions& options)
    : layout_(layout), opt_(options), codec_(layout.type, layout.head_dim, options.dtype, options.group) {
  KV_CHECK(opt_.block_tokens > 0, "--block-tokens must be positive");
  KV_CHECK(opt_.memory_blocks > 0, "the prefix cache needs a capacity (--prefix-cache-blocks or --prefix-cache-bytes)");
  KV_CHECK(!prefix::is_offline_policy(opt_.eviction),
           "the offline policy '{}' needs the future; it exists only in kvwise sim", opt_.eviction);
  KV_ASSERT(KvStore(layout).row_bytes() == codec_.store_row_bytes(), "the KV store's rows are not head_dim values");
  row_bytes_ = codec_.stored_row_bytes();
  block_bytes_ = block_bytes_for(layout, opt_);
  prefix::PrefixCacheConfig cfg;
  cfg.tiers.push_back({"memory", opt_.memory_blocks, 0});
  if (!opt_.disk_dir.empty()) {
    KV_CHECK(opt_.disk_blocks > 0, "a disk tier needs a capacity in blocks");
    std::error_code ec;
    std::filesystem::create_directories(opt_.disk_dir, ec);
    KV_CHECK(!ec && std::filesystem::is_directory(opt_.disk_dir), "cannot create the prefix cache directory '{}': {}",
             opt_.disk_dir, ec.message());
    // A directory of this cache's own: two servers sharing --prefix-cache-disk never see each other's
    // files, and nothing planted in the shared directory is followed.
    disk_root_ = make_private_dir(opt_.disk_dir, "kvwise-prefix");
    m_.disk_enabled = true;
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

LivePrefixCache::~LivePrefixCache() {
  if (!disk_root_.empty()) remove_private_dir(disk_root_);
}

size_t LivePrefixCache::head_offset(int layer, int head) const {
  // Per (layer, head): block_tokens key rows, then block_tokens value rows.
  return static_cast<size_t>(layer * layout_.n_kv_heads + head) * 2 * static_cast<size_t>(opt_.block_tokens) *
         row_bytes_;
}

std::string LivePrefixCache::disk_path(prefix::BlockKey key) const {
  return fmt::format("{}/{:016x}.kv", disk_root_, key);
}

void LivePrefixCache::disable_disk(const std::string& why) {
  if (!m_.disk_enabled) return;
  m_.disk_enabled = false;
  std::fprintf(stderr, "kvwise: the prefix cache's disk tier is disabled: %s\n", why.c_str());
}

// What the header of this cache's block `key` must say (the checksum aside).
BlockFileHeader LivePrefixCache::block_header(prefix::BlockKey key) const {
  BlockFileHeader h;
  h.model = opt_.model_fingerprint;
  h.key = key;
  h.block_tokens = static_cast<uint32_t>(opt_.block_tokens);
  h.kv_type = codec_.tag();  // the store type, and the bits and group of quantised rows
  h.n_layers = static_cast<uint32_t>(layout_.n_layers);
  h.n_kv_heads = static_cast<uint32_t>(layout_.n_kv_heads);
  h.head_dim = static_cast<uint32_t>(layout_.head_dim);
  h.row_bytes = static_cast<uint32_t>(row_bytes_);
  h.payload_bytes = block_bytes_;
  return h;
}

bool LivePrefixCache::write_block(prefix::BlockKey key, const uint8_t* data) {
  if (!m_.disk_enabled) return false;
  const std::string path = disk_path(key);
  ::unlink(path.c_str());  // a stale file of an earlier demotion (the directory is ours alone)
  const int fd = create_exclusive(path);
  if (fd < 0) {
    ++m_.disk_errors;
    disable_disk(fmt::format("cannot create {}: {}", path, std::strerror(errno)));
    return false;
  }
  BlockFileHeader h = block_header(key);
  h.checksum = XXH3_64bits(data, block_bytes_);
  const bool ok = write_all(fd, &h, sizeof h) && write_all(fd, data, block_bytes_);
  const int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    ++m_.disk_errors;
    disable_disk(fmt::format("writing {} failed: {}", path, std::strerror(err)));
  }
  return ok;
}

bool LivePrefixCache::read_block(prefix::BlockKey key, uint8_t* data) {
  const std::string path = disk_path(key);
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    ++m_.disk_errors;
    return false;
  }
  BlockFileHeader h, want = block_header(key);
  bool ok = read_all(fd, &h, sizeof h) && read_all(fd, data, block_bytes_);
  char extra = 0;
  ok = ok && ::read(fd, &extra, 1) == 0;  // nothing after the payload
  ::close(fd);
  want.checksum = h.checksum;
  ok = ok && std::memcmp(&h, &want, sizeof h) == 0 && XXH3_64bits(data, block_bytes_) == h.checksum;
  if (!ok) ++m_.disk_rejected;
  return ok;
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
  std::vector<uint8_t> rows(codec_.raw() ? 0 : 2 * static_cast<size_t>(bt) * codec_.store_row_bytes());
  for (int b = 0; b < lease.usable_blocks; ++b) {
    auto it = memory_.find(lease.keys[static_cast<size_t>(b)]);
    KV_ASSERT(it != memory_.end() && it->second.ready(), "a usable prefix block has no data (pinned since acquire)");
    const Block& blk = it->second;
    for (int l = 0; l < layout_.n_layers; ++l)
      for (int h = 0; h < layout_.n_kv_heads; ++h) {
        const uint8_t* k = blk.data.get() + head_offset(l, h);
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
  Block& blk = memory_[key];
  if (!blk.data) {
    blk.data = std::make_unique<uint8_t[]>(block_bytes_);
    blk.layer_done.assign(static_cast<size_t>(layout_.n_layers), false);
    m_.memory_bytes += block_bytes_;
  }
  if (blk.layer_done[static_cast<size_t>(layer)]) return;  // another sequence with this prefix got here first
  const int bt = opt_.block_tokens;
  const size_t rb = row_bytes_, sr = codec_.store_row_bytes();
  std::vector<uint8_t> rows(codec_.raw() ? 0 : 2 * static_cast<size_t>(bt) * sr);
  for (int h = 0; h < layout_.n_kv_heads; ++h) {
    uint8_t* k = blk.data.get() + head_offset(layer, h);
    if (codec_.raw()) {
      kv.copy_rows(seq, layer, h, block * bt, bt, k, k + static_cast<size_t>(bt) * rb);
      continue;
    }
    kv.copy_rows(seq, layer, h, block * bt, bt, rows.data(), rows.data() + static_cast<size_t>(bt) * sr);
    codec_.encode(rows.data(), 2 * bt, k);  // K rows then V rows, as the block lays them out
  }
  blk.layer_done[static_cast<size_t>(layer)] = true;
  if (++blk.layers == layout_.n_layers) ++m_.captured_blocks;
}

// Runs inside the metadata cache's calls (mu_ held by the caller).
void LivePrefixCache::on_move(prefix::BlockKey key, int from, int to) {
  if (from == 0) {
    auto it = memory_.find(key);
    if (it == memory_.end()) return;
    // A block that fails to reach the disk is kept as metadata only: a later hit recomputes it.
    if (to == 1 && it->second.ready() && write_block(key, it->second.data.get())) {
      disk_.insert(key);
      m_.disk_bytes += block_bytes_;
    }
    m_.memory_bytes -= block_bytes_;
    memory_.erase(it);
  } else if (from == 1) {
    if (!disk_.erase(key)) return;
    m_.disk_bytes -= block_bytes_;
    if (to == 0) {
      Block blk;
      blk.data = std::make_unique<uint8_t[]>(block_bytes_);
      if (read_block(key, blk.data.get())) {
        blk.layer_done.assign(static_cast<size_t>(layout_.n_layers), true);
        blk.layers = layout_.n_layers;
        memory_[key] = std::move(blk);
        m_.memory_bytes += block_bytes_;
        ++m_.disk_loaded;
      }
    }
    ::unlink(disk_path(key).c_str());
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
