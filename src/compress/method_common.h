// Parameter groups that several method files share: observation-window scoring (SnapKV, PyramidKV,
// Ada-KV's default inner) and the protected regions + decode cadence of the scorers that read keys,
// values or query statistics (Knorm, KeyDiff, Expected Attention). Each gives the schema with a
// method's own defaults and the builder step that reads it.
#pragma once
#include <vector>

#include "compress/method.h"

namespace kvwise {

struct KvPolicy;

std::vector<ParamSchema> window_scoring_params(int window, int kernel, const char* pool);
// Reads window=, kernel=, pool=, gqa=, order=, decode_every= into the policy (window scorer).
void apply_window_scoring(KvPolicy& p, MethodArgs& a);

// sinks=, window= (always kept) and decode_every= (0: the cache grows while decoding).
std::vector<ParamSchema> region_params(int sinks, int window);
void apply_regions(KvPolicy& p, MethodArgs& a);

}  // namespace kvwise
