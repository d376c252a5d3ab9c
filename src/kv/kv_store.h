// The KV cache: per (sequence, layer, KV head) a ragged list of token slots in fixed-size pages from
// one pool. Every slot keeps its absolute position; slots stay in ascending position order (the
// attention kernel relies on it for causal masking). Several sequences live in one store.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "kv/page_pool.h"
#include "kv/quant_segment.h"
#include "kv/taps.h"
#include "tensor/dtype.h"

namespace kvwise {

struct KvLayout {
  int n_layers = 0;
  int n_heads = 0;  // query heads (for the statistic taps)
  int n_kv_heads = 0;
  int head_dim = 0;
  DType type = DType::F16;  // F32 or F16
  int page_tokens = 32;
};

using SeqId = int32_t;

class KvStore {
 public:
  explicit KvStore(const KvLayout& layout);

  const KvLayout& layout() const { return layout_; }
  PagePool& pool() { return pool_; }
  const PagePool& pool() const { return pool_; }

  SeqId create_sequence();
  void free_sequence(SeqId seq);
  bool has_sequence(SeqId seq) const { return seqs_.count(seq) != 0; }
  std::vector<SeqId> sequences() const;

  // Next absolute position for the sequence (prompt length + generated tokens so far), independent of
  // how many slots compression kept.
  int32_t next_position(SeqId seq) const;
  void set_next_position(SeqId seq, int32_t pos);

  // Appends one token's key and value (hd floats each, converted to the store type) to a head's list.
  void append(SeqId seq, int layer, int head, const float* k, const float* v, int32_t pos);

  // Raw rows in the store type (head_dim elements each): copies n slots' keys and values out of a head
  // list from slot0 on, or appends n rows with positions pos0, pos0 + 1, ... (the prefix cache moves
  // whole blocks of uncompressed KV this way, without converting).
  void copy_rows(SeqId seq, int layer, int head, int slot0, int n, void* k, void* v) const;
  void append_rows(SeqId seq, int layer, int head, const void* k, const void* v, int n, int32_t pos0);
  size_t row_bytes() const { return row_bytes_; }

  int head_len(SeqId seq, int layer, int head) const;
  const std::vector<uint32_t>& head_pages(SeqId seq, int layer, int head) const;
  // Page accessors: K and V rows are head_dim elements of the store type; positions are int32.
  const void* page_k(uint32_t page) const { return pool_.data(page); }
  const void* page_v(uint32_t page) const { return pool_.data(page) + kv_bytes_; }
  const int32_t* page_pos(uint32_t page) const {
    return reinterpret_cast<const int32_t*>(pool_.data(page) + 2 * kv_bytes_);
  }
  int32_t slot_position(SeqId seq, int layer, int head, int slot) const;
  // One slot's key and value as floats (either may be null).
  void read_slot(SeqId seq, int layer, int head, int slot, float* k, float* v) const;
  // Overwrites one slot's key and position (re-rotated keys of cache-relative positions). The caller
  // keeps positions ascending within the head.
  void rewrite_key(SeqId seq, int layer, int head, int slot, const float* k, int32_t pos);

  // Keeps only the given slots (strictly ascending indices) of one head, compacting them to the front
  // and releasing pages that are no longer needed. Statistic taps of the head's query heads follow.
  void retain(SeqId seq, int layer, int head, std::span<const int> keep);

  // Low precision (issue 5). A head may also hold low-precision segments (kv/quant_segment.h) of
  // tokens moved out of its pages; attention reads them after the pages. They are outside the
  // slot numbering above (policies and taps see the pages only).
  const std::vector<QuantSegment>& segments(SeqId seq, int layer, int head) const;
  // Moves the slots not in `keep` (strictly ascending) into the head's segment of this format, in slot
  // order (the segment is created with `balancer` on first use), then keeps `keep` as retain() does.
  void demote(SeqId seq, int layer, int head, std::span<const int> keep, const QuantFormat& format,
              std::span<const float> balancer = {});
  // Removes the last n slots of a head (a speculative token's row once its attention has run).
  void pop_back(SeqId seq, int layer, int head, int n);
  // Drops the head's leading whole pages whose every slot has a position below `min_pos` (a sliding-
  // window layer's keys that no later query can see); the rest keep their order and page offsets.
  // Returns the slots dropped.
  int drop_before(SeqId seq, int layer, int head, int32_t min_pos);
  // Exact F16 rows standing in for some slots of the head's first segment (SpeCache's prefetched
  // pairs): attention scores and reads these instead of the low-bit rows.
  struct ExactRows {
    std::vector<int> slots;      // ascending segment slots
    std::vector<uint16_t> k, v;  // head_dim F16 values per slot
  };
  void set_exact_rows(SeqId seq, int layer, int head, ExactRows rows);
  const ExactRows& exact_rows(SeqId seq, int layer, int head) const;
  // Tokens a head holds in pages and segments.
  int head_tokens(SeqId seq, int layer, int head) const;

  // Exact accounting: bytes of the pages each list holds, plus its segments and exact rows.
  size_t bytes_head(SeqId seq, int layer, int head) const;
  size_t bytes_layer(SeqId seq, int layer) const;
  size_t bytes_sequence(SeqId seq) const;
  size_t bytes_total() const;
  size_t bytes_per_token_full() const;  // K+V bytes of one token over all layers and heads

  // Statistic taps of a sequence (configured per sequence; empty when disabled).
  void set_taps(SeqId seq, const TapConfig& cfg);
  const TapConfig& tap_config(SeqId seq) const;
  HeadTaps& taps(SeqId seq, int layer, int q_head);
  const HeadTaps& taps(SeqId seq, int layer, int q_head) const;

 private:
  struct HeadList {
    std::vector<uint32_t> pages;
    int len = 0;
    std::vector<QuantSegment> segments;
    ExactRows exact;
  };
  size_t extra_bytes(const HeadList& h) const;
  struct Sequence {
    std::vector<HeadList> heads;  // layer * n_kv_heads + head
    int32_t next_pos = 0;
    TapConfig tap_cfg;
    std::vector<HeadTaps> taps;  // layer * n_heads + q_head
  };
  Sequence& get(SeqId seq);
  const Sequence& get(SeqId seq) const;
  HeadList& list(SeqId seq, int layer, int head);
  const HeadList& list(SeqId seq, int layer, int head) const;
  uint8_t* slot_k(uint32_t page, int i) { return pool_.data(page) + static_cast<size_t>(i) * row_bytes_; }
  uint8_t* slot_v(uint32_t page, int i) { return pool_.data(page) + kv_bytes_ + static_cast<size_t>(i) * row_bytes_; }
  int32_t* slot_pos(uint32_t page) { return reinterpret_cast<int32_t*>(pool_.data(page) + 2 * kv_bytes_); }

  KvLayout layout_;
  size_t row_bytes_;  // one K (or V) row
  size_t kv_bytes_;   // all K rows of a page
  PagePool pool_;
  std::map<SeqId, Sequence> seqs_;
  SeqId next_id_ = 0;
};

}  // namespace kvwise
