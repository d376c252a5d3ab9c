// H2O (Zhang et al., arXiv:2306.14048): heavy hitters by cumulative attention + a recent window.
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(h2o) {
  registry.add({.name = "h2o",
                .summary = "heavy hitters by cumulative attention + a recent window, one eviction per decode step",
                .paper = "arXiv:2306.14048",
                .group = "eviction",
                .params = {ParamSchema::real("recent", 0.5, 0.0, 1.0, "share of the budget"),
                           ParamSchema::integer("sinks", 0, 0, kMaxPolicyWindow)},
                .build = [](KvPolicy& p, MethodArgs& a) {
                  p.window_fraction = a.real("recent");
                  p.sinks = a.integer("sinks");
                  p.scorer = make_cumulative_scorer();
                  p.decode = make_evict(1);
                  p.needs_every_prompt_query = true;
                  if (p.window_fraction == 0) p.window_fraction = 1e-9;  // ceil gives a one-token recent window
                }});
}

}  // namespace kvwise
