// Ada-KV (Feng et al., arXiv:2407.11550): adaptive head budgets over an inner scorer.
#include "base/error.h"
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(adakv) {
  registry.add({.name = "adakv",
                .summary = "Ada-KV head budgets over an inner scorer (default snapkv(kernel=7,pool=max))",
                .paper = "arXiv:2407.11550",
                .group = "head-budgets",
                .params = {ParamSchema::real("alpha", 0.2, 0.0, 1.0, "safeguard share of the mean budget")},
                .default_inner = "snapkv(kernel=7,pool=max)",
                .budget = BudgetUse::Inherit,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  const double alpha = a.real("alpha");
                  a.build_inner(p);
                  KV_CHECK(p.needs_budget() && p.name != "streamingllm" && p.name != "random" && !p.share_heads,
                           "adakv composes with a per-head scoring policy (snapkv, pyramidkv, cake, sagekv, h2o, "
                           "knorm, keydiff, expected-attention, criticalkv, baklava), not {}",
                           p.name);
                  p.heads = make_adakv_heads(alpha);
                }});
}

}  // namespace kvwise
