// MiKV (Yang et al., arXiv:2402.18096): the inner policy's losers are kept at low bits, not dropped.
#include "base/error.h"
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(mikv) {
  registry.add({.name = "mikv",
                .summary = "MiKV: the inner policy's losers (default h2o) are kept at low bits instead of dropped",
                .paper = "arXiv:2402.18096",
                .group = "low-precision",
                .params = {ParamSchema::text("lo", "int2", "precision of the losers"),
                           ParamSchema::text("hi", "f16", "precision of the winners"),
                           ParamSchema::choice("keys", "token", {"token", "channel"}),
                           ParamSchema::integer("group", 32, 8, 4096), ParamSchema::integer("balance", 1, 0, 1)},
                .default_inner = "h2o",
                .budget = BudgetUse::Inherit,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  DemoteOptions o;
                  o.low.key = o.low.value = parse_precision(a.text("lo"));
                  o.low.key_per_channel = a.choice("keys") == "channel";
                  o.low.group = a.integer("group");
                  const KvPrecision hi = parse_precision(a.text("hi"));
                  if (hi != KvPrecision::F16) {
                    QuantFormat h = o.low;
                    h.key = h.value = hi;
                    o.high = h;
                  }
                  o.balance = a.integer("balance") == 1;
                  o.low.validate(o.low.group);
                  a.build_inner(p);
                  KV_CHECK(p.needs_budget() && p.residual < 0 && !p.specache && p.name != "mikv" && !p.gate,
                           "mikv composes with an eviction policy (h2o, snapkv, pyramidkv, adakv, cake, sagekv, "
                           "streamingllm, random, baklava, knorm, keydiff, tova, ...), not {}",
                           p.name);
                  p.disposition = make_demote(o);
                  p.balance = o.balance;
                }});
}

}  // namespace kvwise
