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

// The file a profile= parameter names: on the CLI a path unless it names a registered profile, in a
// request the name of a profile the operator registered (--profile NAME=FILE). Throws when it is
// missing (saying how to write one) or not registered.
std::string profile_path(MethodArgs& a, const std::string& what, const std::string& how_to_write);

// sinks=, window= (always kept) and decode_every= (0: the cache grows while decoding).
std::vector<ParamSchema> region_params(int sinks, int window);
void apply_regions(KvPolicy& p, MethodArgs& a);

}  // namespace kvwise
