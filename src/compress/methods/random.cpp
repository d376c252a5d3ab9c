// The baseline that must lose: uniformly random prefix tokens plus the recent window.
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(random) {
  registry.add(
      {.name = "random",
       .summary = "random prefix tokens + the window, recent FIFO during decode (a baseline that must lose)",
       .paper = "-",
       .group = "reference",
       .params = {ParamSchema::integer("window", 32, 0, kMaxPolicyWindow),
                  ParamSchema::integer("sinks", 0, 0, kMaxPolicyWindow), ParamSchema::integer("seed", 0, 0, 1 << 30),
                  ParamSchema::choice("decode", "fifo", {"fifo", "grow"})},
       .build = [](KvPolicy& p, MethodArgs& a) {
         p.window_explicit = a.given("window");
         p.window = a.integer("window");
         p.sinks = a.integer("sinks");
         p.scorer = make_random_scorer(static_cast<uint64_t>(a.integer("seed")));
         // Within budget during decode by default (recent FIFO), like the constant-memory methods.
         p.decode = a.choice("decode") == "fifo" ? make_fifo() : make_grow();
       }});
}

}  // namespace kvwise
