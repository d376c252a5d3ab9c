#include "prefix/block_hash.h"

#include <xxhash.h>

namespace kvwise::prefix {

BlockKey chain_hash(BlockKey parent, std::span<const int32_t> tokens) {
  return XXH3_64bits_withSeed(tokens.data(), tokens.size_bytes(), parent);
}

uint64_t salt_of(std::string_view name) {
  return name.empty() ? 0 : XXH3_64bits(name.data(), name.size());
}

std::vector<BlockKey> block_keys(std::span<const int32_t> tokens, int block_tokens, uint64_t salt) {
  std::vector<BlockKey> keys;
  BlockKey parent = XXH3_64bits_withSeed(&salt, sizeof salt, 0x6b7677697365ULL);
  for (size_t i = 0; i + static_cast<size_t>(block_tokens) <= tokens.size(); i += static_cast<size_t>(block_tokens)) {
    parent = chain_hash(parent, tokens.subspan(i, static_cast<size_t>(block_tokens)));
    keys.push_back(parent);
  }
  return keys;
}

}  // namespace kvwise::prefix
