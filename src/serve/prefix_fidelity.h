// What attending to a cached prefix costs when the prefix cache stores its blocks in low precision
// (--prefix-cache-dtype int8/int4): each text segment is computed twice, once in full (the
// reference) and once with its leading blocks captured into a prefix cache of the given dtype and
// loaded back, the rest prefilled after them. The next-token distributions at every position after
// the cached prefix are compared (KL, top-1 agreement) and the teacher-forced NLL of the text.
// Thread-safety: uses the engine exclusively while it runs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "eval/niah.h"
#include "model/forward.h"
#include "serve/live_prefix_cache.h"

namespace kvwise {

struct PrefixFidelityCell {
  std::string dtype;
  int group = 0;
  size_t block_bytes = 0;      // one block in this dtype
  size_t block_bytes_raw = 0;  // the same block as the KV store holds it
  int cached_tokens = 0;       // per segment
  int tokens = 0;              // compared positions, over all segments
  double mean_kl = 0, max_kl = 0, top1_agreement = 0;
  double nll = 0, nll_full = 0;  // mean per predicted token after the cached prefix
};

// segments: token sequences longer than prefix_tokens; prefix_tokens is rounded down to whole
// blocks of options.block_tokens (at least one block). options.memory_blocks is raised to fit.
PrefixFidelityCell measure_prefix_fidelity(Engine& engine, const std::vector<std::vector<int32_t>>& segments,
                                           int prefix_tokens, LivePrefixOptions options);

// Passkey / needle retrieval when the haystack comes from the prefix cache: each case's prompt is
// prefilled once with its blocks captured in this dtype (an earlier request with the same
// document), then answered by a new sequence that loads every whole block but the last token's and
// prefills the rest (the question). Against the same cases answered without a cache.
struct PrefixPasskeyCell {
  std::string dtype;
  int cases = 0, correct = 0, correct_full = 0;
  double cached_tokens = 0;  // mean per case
};
PrefixPasskeyCell measure_prefix_passkey(Engine& engine, const std::vector<NiahCase>& cases, int answer_tokens,
                                         LivePrefixOptions options);

}  // namespace kvwise
