// The disk tier: one file per block (a BlockRecordHeader, then the bytes) in a private directory
// (mode 0700) that the tier makes inside the operator's and removes when it ends, so that two servers
// given the same directory never see each other's files and nothing planted there is followed. A
// write that fails (directory vanished, read-only, disk full) disables the tier with one warning on
// stderr: later puts fail fast and gets miss; a file that does not verify is rejected (a miss).
// Thread-safety: none; the owner serialises calls (the live prefix cache holds its mutex).
#pragma once
#include <absl/container/flat_hash_set.h>

#include "serve/block_tier.h"

namespace kvwise {

class DiskTier final : public BlockTier {
 public:
  // Throws kvwise::Error when `dir` cannot be made or used.
  DiskTier(const std::string& dir, const BlockIdentity& identity);
  ~DiskTier() override;

  const std::string& name() const override { return name_; }
  bool put(prefix::BlockKey key, std::span<const uint8_t> block) override;
  TierGet get(prefix::BlockKey key, std::span<uint8_t> out) override;
  void erase(prefix::BlockKey key) override;
  size_t bytes() const override { return files_.size() * id_.payload_bytes; }
  TierCounters counters() const override { return c_; }
  bool enabled() const { return c_.healthy; }
  bool contains(prefix::BlockKey key) const { return files_.contains(key); }
  const std::string& root() const { return root_; }  // the private directory

 private:
  std::string path(prefix::BlockKey key) const;
  void disable(const std::string& why);

  std::string name_ = "disk";
  BlockIdentity id_;
  std::string root_;
  absl::flat_hash_set<prefix::BlockKey> files_;
  TierCounters c_;
};

}  // namespace kvwise
