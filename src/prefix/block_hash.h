// Keys of prompt blocks: a chain hash of the parent block's key and the block's token ids (XXH3),
// so equal keys mean equal prefixes. A salt isolates tenants (cache_salt) from each other.
#pragma once
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "prefix/block_table.h"

namespace kvwise::prefix {

BlockKey chain_hash(BlockKey parent, std::span<const int32_t> tokens);
// Keys of every full block of `tokens` (block_tokens each); a trailing partial block has no key.
// A tenant's salt from its name (cache_salt of a request); 0 for the empty name.
uint64_t salt_of(std::string_view name);
std::vector<BlockKey> block_keys(std::span<const int32_t> tokens, int block_tokens, uint64_t salt = 0);

}  // namespace kvwise::prefix
