// The storage tiers of the live prefix cache as peers: memory, a directory of files, a Redis server
// or cluster. Each holds whole blocks (one block_tokens-long run of a prompt's KV over every layer
// and head, PrefixBlockCodec's bytes) under the block's chain key, behind the same five operations,
// so that the prefix cache treats them alike and the next store is one class.
//
// A block that leaves the process (disk, Redis) is written as a record: a header that names the
// block's identity (model fingerprint, block size, KV type and layout, chain key) and a checksum of
// its bytes, then the bytes. get() verifies both; anything else (missing, truncated, of another
// model, corrupt) is a miss, counted as such, never loaded.
// Thread-safety: each implementation states its own; BlockTier itself is an interface.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "prefix/block_hash.h"

namespace kvwise {

// What a block is, beyond its chain key: a record of another identity is never taken for it.
struct BlockIdentity {
  uint64_t model = 0;                     // GgufFile::fingerprint()
  uint32_t block_tokens = 0, kv_tag = 0;  // kv_tag: PrefixBlockCodec::tag() (store type, bits, group)
  uint32_t n_layers = 0, n_kv_heads = 0, head_dim = 0, row_bytes = 0;
  uint64_t payload_bytes = 0;
};

// The header of a block record (72 bytes, no padding: compared as bytes).
struct BlockRecordHeader {
  char magic[8] = {'K', 'V', 'W', 'B', 'L', 'O', 'C', 'K'};
  uint32_t version = 1;
  uint32_t header_bytes = sizeof(BlockRecordHeader);
  uint64_t model = 0;
  uint64_t key = 0;
  uint32_t block_tokens = 0, kv_tag = 0;
  uint32_t n_layers = 0, n_kv_heads = 0, head_dim = 0, row_bytes = 0;
  uint64_t payload_bytes = 0;
  uint64_t checksum = 0;  // XXH3 of the payload
};
static_assert(sizeof(BlockRecordHeader) == 72, "no padding: the header is compared as bytes");

// The header a record of block `key` with these bytes carries.
BlockRecordHeader block_record_header(const BlockIdentity& id, prefix::BlockKey key, std::span<const uint8_t> payload);
// True when `header` is exactly what block `key` of this identity with `payload` must carry.
bool block_record_matches(const BlockRecordHeader& header, const BlockIdentity& id, prefix::BlockKey key,
                          std::span<const uint8_t> payload);

enum class TierGet {
  hit,       // out holds the block, verified
  missing,   // the tier does not hold it
  rejected,  // a record was there but did not verify (truncated, another identity, corrupt)
  error,     // the tier failed (I/O error, unreachable, past the deadline)
};

// Counters of one tier; every tier fills what applies to it.
struct TierCounters {
  uint64_t hits = 0, misses = 0, rejected = 0, errors = 0;
  uint64_t puts = 0, put_errors = 0, erases = 0;
  uint64_t bytes_read = 0, bytes_written = 0;
  uint64_t queue_drops = 0;    // writes dropped because the asynchronous queue was full
  uint64_t queue_pending = 0;  // writes waiting in it now
  double get_seconds = 0;      // total time in get(); with gets = hits + misses + rejected + errors
  uint64_t reconnects = 0;     // connections re-established after a failure
  bool healthy = true;         // false while the tier is disabled or unreachable
};

class BlockTier {
 public:
  virtual ~BlockTier() = default;
  virtual const std::string& name() const = 0;
  // Stores a copy of the block; false on failure (counted; the caller treats the block as not stored).
  virtual bool put(prefix::BlockKey key, std::span<const uint8_t> block) = 0;
  // Copies the block into out (out.size() is the block's size) when the tier holds a verified one.
  virtual TierGet get(prefix::BlockKey key, std::span<uint8_t> out) = 0;
  // Several gets at once (a tier may pipeline them), within `deadline_seconds` in all where the tier
  // honours deadlines; outs[i] receives keys[i]. The default calls get() for each key.
  virtual std::vector<TierGet> get_many(std::span<const prefix::BlockKey> keys,
                                        std::span<const std::span<uint8_t>> outs, double deadline_seconds);
  virtual void erase(prefix::BlockKey key) = 0;
  // Bytes of block data the tier holds for this process (for a shared tier: what this process wrote
  // and did not erase; the store may have evicted some of it).
  virtual size_t bytes() const = 0;
  virtual TierCounters counters() const = 0;
};

}  // namespace kvwise
