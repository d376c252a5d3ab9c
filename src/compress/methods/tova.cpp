// TOVA (Oren et al., "Transformers are Multi-State RNNs", arXiv:2401.06104): keep the tokens the
// current (last) query attends to most, averaged over every head of the layer, so all heads of a
// layer keep the same tokens; while decoding, one eviction per step keeps the cache at the budget.
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(tova) {
  registry.add({.name = "tova",
                .summary = "last query's attention averaged over the layer's heads, same tokens in every head; "
                           "evicts one token per decode step",
                .paper = "arXiv:2401.06104",
                .group = "eviction",
                .params = {ParamSchema::integer("window", 1, 1, kMaxPolicyWindow, "last tokens always kept"),
                           ParamSchema::integer("sinks", 0, 0, kMaxPolicyWindow),
                           ParamSchema::choice("decode", "evict", {"evict", "grow"})},
                .build = [](KvPolicy& p, MethodArgs& a) {
                  p.window = a.integer("window");
                  p.window_explicit = a.given("window");
                  p.sinks = a.integer("sinks");
                  p.scorer = make_last_query_scorer();
                  p.share_heads = true;
                  p.decode = a.choice("decode") == "evict" ? make_evict(1) : make_grow();
                }});
}

}  // namespace kvwise
