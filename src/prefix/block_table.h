// Metadata of the blocks resident in one prefix-cache tier, indexed by a dense BlockId. Eviction
// policies keep their own per-block state in arrays indexed by the same ids.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

namespace kvwise::prefix {

using BlockId = uint32_t;
constexpr BlockId kNoBlock = std::numeric_limits<BlockId>::max();
using BlockKey = uint64_t;

struct BlockMeta {
  BlockKey key = 0;
  double last_access = 0;  // time of its last hit or release
  uint32_t offset = 0;     // block index within the prompt that inserted it
  uint32_t hits = 0;
  uint32_t refs = 0;           // running requests holding it (pinned while > 0)
  uint16_t category = 0;       // of the request that inserted it
  uint16_t last_category = 0;  // of the request that last used it
};

class BlockTable {
 public:
  explicit BlockTable(size_t capacity) { meta_.reserve(capacity); }
  BlockId add(const BlockMeta& m) {
    if (!free_.empty()) {
      const BlockId id = free_.back();
      free_.pop_back();
      meta_[id] = m;
      return id;
    }
    meta_.push_back(m);
    return static_cast<BlockId>(meta_.size() - 1);
  }
  void remove(BlockId id) { free_.push_back(id); }
  BlockMeta& operator[](BlockId id) { return meta_[id]; }
  const BlockMeta& operator[](BlockId id) const { return meta_[id]; }
  bool pinned(BlockId id) const { return meta_[id].refs > 0; }
  size_t id_bound() const { return meta_.size(); }  // ids are < this
  size_t bytes() const { return meta_.capacity() * sizeof(BlockMeta) + free_.capacity() * sizeof(BlockId); }

 private:
  std::vector<BlockMeta> meta_;
  std::vector<BlockId> free_;
};

}  // namespace kvwise::prefix
