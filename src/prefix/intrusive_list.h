// Doubly-linked lists over BlockIds with O(1) insert, remove and move; several lists can share one
// node array (a block is in at most one of them). Used by every list-based eviction policy.
#pragma once
#include <vector>

#include "prefix/block_table.h"

namespace kvwise::prefix {

class ListNodes {
 public:
  void ensure(BlockId id) {
    if (id >= prev_.size()) {
      prev_.resize(id + 1, kNoBlock);
      next_.resize(id + 1, kNoBlock);
      owner_.resize(id + 1, -1);
    }
  }
  std::vector<BlockId> prev_, next_;
  std::vector<int> owner_;  // which list holds the block, -1 = none
  size_t bytes() const { return prev_.capacity() * 8 + owner_.capacity() * sizeof(int); }
};

// Front = oldest (the eviction end), back = newest.
class IdList {
 public:
  IdList(ListNodes& nodes, int list_id) : n_(&nodes), id_(list_id) {}
  bool empty() const { return head_ == kNoBlock; }
  size_t size() const { return size_; }
  BlockId front() const { return head_; }
  BlockId next(BlockId b) const { return n_->next_[b]; }
  bool contains(BlockId b) const { return b < n_->owner_.size() && n_->owner_[b] == id_; }
  void push_back(BlockId b) {
    n_->ensure(b);
    n_->prev_[b] = tail_;
    n_->next_[b] = kNoBlock;
    if (tail_ != kNoBlock)
      n_->next_[tail_] = b;
    else
      head_ = b;
    tail_ = b;
    n_->owner_[b] = id_;
    ++size_;
  }
  void remove(BlockId b) {
    const BlockId p = n_->prev_[b], nx = n_->next_[b];
    if (p != kNoBlock)
      n_->next_[p] = nx;
    else
      head_ = nx;
    if (nx != kNoBlock)
      n_->prev_[nx] = p;
    else
      tail_ = p;
    n_->owner_[b] = -1;
    --size_;
  }
  void move_to_back(BlockId b) {
    remove(b);
    push_back(b);
  }
  // First block from the front that `skip` does not reject (pinned blocks are skipped).
  template <typename Skip>
  BlockId first_unpinned(Skip skip) const {
    for (BlockId b = head_; b != kNoBlock; b = n_->next_[b])
      if (!skip(b)) return b;
    return kNoBlock;
  }

 private:
  ListNodes* n_;
  int id_;
  BlockId head_ = kNoBlock, tail_ = kNoBlock;
  size_t size_ = 0;
};

}  // namespace kvwise::prefix
