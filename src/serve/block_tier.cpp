#include "serve/block_tier.h"

#include <xxhash.h>

#include <cstring>

namespace kvwise {

BlockRecordHeader block_record_header(const BlockIdentity& id, prefix::BlockKey key, std::span<const uint8_t> payload) {
  BlockRecordHeader h;
  h.model = id.model;
  h.key = key;
  h.block_tokens = id.block_tokens;
  h.kv_tag = id.kv_tag;
  h.n_layers = id.n_layers;
  h.n_kv_heads = id.n_kv_heads;
  h.head_dim = id.head_dim;
  h.row_bytes = id.row_bytes;
  h.payload_bytes = id.payload_bytes;
  h.checksum = XXH3_64bits(payload.data(), payload.size());
  return h;
}

bool block_record_matches(const BlockRecordHeader& header, const BlockIdentity& id, prefix::BlockKey key,
                          std::span<const uint8_t> payload) {
  if (payload.size() != id.payload_bytes) return false;
  const BlockRecordHeader want = block_record_header(id, key, payload);
  return std::memcmp(&header, &want, sizeof header) == 0;
}

std::vector<TierGet> BlockTier::get_many(std::span<const prefix::BlockKey> keys,
                                         std::span<const std::span<uint8_t>> outs, double /*deadline_seconds*/) {
  std::vector<TierGet> r;
  r.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) r.push_back(get(keys[i], outs[i]));
  return r;
}

}  // namespace kvwise
