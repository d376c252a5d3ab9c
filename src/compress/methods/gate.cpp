// Attention-Gate (Zeng et al., arXiv:2410.12876): a learned per-token, per-KV-head keep/evict gate.
#include "base/error.h"
#include "compress/components.h"
#include "compress/pipeline.h"
#include "compress/registry.h"

namespace kvwise {

KVWISE_METHODS(gate) {
  registry.add({.name = "gate",
                .summary =
                    "Attention-Gate: a learned gate (side file <model>.gate.gguf) flags each token per KV head when it "
                    "is appended; flagged tokens leave the cache, a budget caps each head by the gate's scores",
                .paper = "arXiv:2410.12876",
                .group = "learned",
                .params = {ParamSchema::real("rate", -1.0, -1.0, 1.0, "target eviction rate; -1: 1 - budget, else 0.5"),
                           ParamSchema::integer("sinks", 4, 0, kMaxPolicyWindow),
                           ParamSchema::integer("window", 16, 0, kMaxPolicyWindow),
                           ParamSchema::text("file", "", "FILE (CLI only)"),
                           ParamSchema::text("name", "", "a gate the server registered")},
                .budget = BudgetUse::Optional,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  auto c = std::make_shared<GateConfig>();
                  c->rate = a.real("rate");
                  KV_CHECK(c->rate == -1.0 || c->rate >= 0.0, "gate: rate={} is outside [0, 1]", c->rate);
                  c->file = a.text("file");
                  if (a.given("name")) {
                    KV_CHECK(c->file.empty(), "gate: give name= or file=, not both");
                    c->file = registered_file(a.source().gates, a.text("name"), "gate", "--gate");
                  }
                  p.sinks = a.integer("sinks");
                  p.window = a.integer("window");
                  p.window_explicit = a.given("window");
                  p.scorer = make_position_scorer();  // unused: the gate's own scores rank tokens
                  p.decode = make_grow();             // the gate itself evicts during decode
                  p.gate = c;
                  p.needs_every_prompt_query = true;
                }});
}

}  // namespace kvwise
