#include "serve/memory_tier.h"

#include <cstring>

namespace kvwise {

bool MemoryTier::put(prefix::BlockKey key, std::span<const uint8_t> block) {
  if (block.size() != block_bytes_) return false;
  Block& b = blocks_[key];
  if (!b.data) b.data = std::make_unique<uint8_t[]>(block_bytes_);
  std::memcpy(b.data.get(), block.data(), block_bytes_);
  b.layer_done.assign(static_cast<size_t>(n_layers_), true);
  b.layers = n_layers_;
  ++c_.puts;
  c_.bytes_written += block_bytes_;
  return true;
}

TierGet MemoryTier::get(prefix::BlockKey key, std::span<uint8_t> out) {
  const uint8_t* d = ready(key);
  if (!d || out.size() != block_bytes_) {
    ++c_.misses;
    return TierGet::missing;
  }
  std::memcpy(out.data(), d, block_bytes_);
  ++c_.hits;
  c_.bytes_read += block_bytes_;
  return TierGet::hit;
}

void MemoryTier::erase(prefix::BlockKey key) {
  if (blocks_.erase(key)) ++c_.erases;
}

const uint8_t* MemoryTier::ready(prefix::BlockKey key) const {
  auto it = blocks_.find(key);
  return it != blocks_.end() && it->second.layers == n_layers_ ? it->second.data.get() : nullptr;
}

uint8_t* MemoryTier::layer_to_fill(prefix::BlockKey key, int layer) {
  Block& b = blocks_[key];
  if (!b.data) {
    b.data = std::make_unique<uint8_t[]>(block_bytes_);
    b.layer_done.assign(static_cast<size_t>(n_layers_), false);
  }
  return b.layer_done[static_cast<size_t>(layer)] ? nullptr : b.data.get();
}

bool MemoryTier::filled(prefix::BlockKey key, int layer) {
  Block& b = blocks_[key];
  if (b.layer_done[static_cast<size_t>(layer)]) return false;
  b.layer_done[static_cast<size_t>(layer)] = true;
  return ++b.layers == n_layers_;
}

}  // namespace kvwise
