// The memory tier: blocks in this process's memory. Besides the BlockTier operations it lets a
// prefill fill a block layer by layer in place (the capture observer writes each layer's rows as the
// forward pass produces them) and lets a load read a ready block without a copy.
// Thread-safety: none; the owner serialises calls (the live prefix cache holds its mutex).
#pragma once
#include <absl/container/flat_hash_map.h>

#include <memory>

#include "serve/block_tier.h"

namespace kvwise {

class MemoryTier final : public BlockTier {
 public:
  MemoryTier(size_t block_bytes, int n_layers) : block_bytes_(block_bytes), n_layers_(n_layers) {}

  const std::string& name() const override { return name_; }
  bool put(prefix::BlockKey key, std::span<const uint8_t> block) override;  // a ready block
  TierGet get(prefix::BlockKey key, std::span<uint8_t> out) override;       // ready blocks only
  void erase(prefix::BlockKey key) override;
  size_t bytes() const override { return blocks_.size() * block_bytes_; }
  TierCounters counters() const override { return c_; }

  // The data of a ready block (every layer filled), or null.
  const uint8_t* ready(prefix::BlockKey key) const;
  // The (possibly new) block's data for filling `layer`; null when that layer is filled already.
  uint8_t* layer_to_fill(prefix::BlockKey key, int layer);
  // Marks `layer` filled; true when that made the block ready.
  bool filled(prefix::BlockKey key, int layer);

 private:
  struct Block {
    std::unique_ptr<uint8_t[]> data;
    std::vector<bool> layer_done;
    int layers = 0;
  };
  std::string name_ = "memory";
  size_t block_bytes_;
  int n_layers_;
  absl::flat_hash_map<prefix::BlockKey, Block> blocks_;
  TierCounters c_;
};

}  // namespace kvwise
