// SAGE-KV (arXiv:2503.08879): sinks + one-shot top-k by the last prompt query + a recent FIFO.
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(sagekv) {
  registry.add({.name = "sagekv",
                .summary = "SAGE-KV: sinks + top-k by the last prompt query + recent FIFO",
                .paper = "arXiv:2503.08879",
                .group = "eviction",
                .params = {ParamSchema::integer("sinks", 4, 0, kMaxPolicyWindow),
                           ParamSchema::integer("recent", 32, 0, kMaxPolicyWindow),
                           ParamSchema::choice("gqa", "mean", {"mean", "max", "sum"}),
                           ParamSchema::choice("decode", "fifo", {"fifo", "grow"})},
                .build = [](KvPolicy& p, MethodArgs& a) {
                  p.sinks = a.integer("sinks");
                  p.window = a.integer("recent") + 1;  // + the last prompt token
                  p.window_explicit = a.given("recent");
                  p.reduce = parse_group_reduce(a.choice("gqa"));
                  p.scorer = make_last_query_scorer();
                  p.decode = a.choice("decode") == "fifo" ? make_fifo() : make_grow();
                }});
}

}  // namespace kvwise
