#include "compress/method_common.h"

#include "base/error.h"
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

std::vector<ParamSchema> window_scoring_params(int window, int kernel, const char* pool) {
  return {ParamSchema::integer("window", window, 1, kMaxPolicyWindow, "observation window"),
          ParamSchema::integer("kernel", kernel, 1, 1001, "odd pooling kernel"),
          ParamSchema::choice("pool", pool, {"none", "avg", "max"}),
          ParamSchema::choice("gqa", "mean", {"mean", "max", "sum"}),
          ParamSchema::choice("order", "reduce_first", {"reduce_first", "pool_first"}),
          ParamSchema::integer("decode_every", 0, 0, 1 << 20, "0: the cache grows while decoding")};
}

void apply_window_scoring(KvPolicy& p, MethodArgs& a) {
  p.window_explicit = a.given("window");
  p.window = a.integer("window");
  p.kernel = a.integer("kernel");
  KV_CHECK(p.kernel % 2 == 1, "{}: kernel={} must be odd", a.spec().name, p.kernel);
  p.pooling = parse_pooling(a.choice("pool"));
  p.reduce = parse_group_reduce(a.choice("gqa"));
  p.pool_first = a.choice("order") == "pool_first";
  p.scorer = make_window_scorer(p.window);
  p.decode_pooling = p.pooling;
  p.decode_kernel = p.kernel;
  const int every = a.integer("decode_every");
  p.decode = every > 0 ? make_evict(every) : make_grow();
}

std::string profile_path(MethodArgs& a, const std::string& what, const std::string& how_to_write) {
  const PolicySource& src = a.source();
  const std::string given = a.text("profile");
  KV_CHECK(!given.empty(), "{} needs profile={}", a.spec().name,
           src.trusted ? "FILE (write one with `" + how_to_write + "`)" : "NAME (a profile the operator registered)");
  return src.trusted && !src.profiles.count(given) ? given
                                                   : registered_file(src.profiles, given, what.c_str(), "--profile");
}

std::vector<ParamSchema> region_params(int sinks, int window) {
  return {ParamSchema::integer("sinks", sinks, 0, kMaxPolicyWindow, "first tokens always kept"),
          ParamSchema::integer("window", window, 0, kMaxPolicyWindow, "last tokens always kept"),
          ParamSchema::integer("decode_every", 0, 0, 1 << 20, "0: the cache grows while decoding")};
}

void apply_regions(KvPolicy& p, MethodArgs& a) {
  p.sinks = a.integer("sinks");
  p.window = a.integer("window");
  p.window_explicit = a.given("window");
  const int every = a.integer("decode_every");
  p.decode = every > 0 ? make_evict(every) : make_grow();
}

}  // namespace kvwise
