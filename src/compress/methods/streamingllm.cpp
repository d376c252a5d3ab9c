// StreamingLLM (Xiao et al., arXiv:2309.17453): attention sinks + a rolling recent window.
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(streamingllm) {
  registry.add({.name = "streamingllm",
                .summary = "attention sinks + the most recent tokens, rolling during decode",
                .paper = "arXiv:2309.17453",
                .group = "eviction",
                .params = {ParamSchema::integer("sinks", 4, 0, kMaxPolicyWindow),
                           ParamSchema::integer("rerotate", 0, 0, 1, "1: cache-relative positions")},
                .build = [](KvPolicy& p, MethodArgs& a) {
                  p.sinks = a.integer("sinks");
                  p.window_fills = true;
                  p.rerotate = a.integer("rerotate") == 1;
                  p.scorer = make_position_scorer();
                  p.decode = make_fifo();
                }});
}

}  // namespace kvwise
