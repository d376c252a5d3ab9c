// CAKE (Qin et al., arXiv:2503.12491): layer budgets from attention entropy and variance, cascading.
#include "base/error.h"
#include "compress/components.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(cake) {
  registry.add(
      {.name = "cake",
       .summary = "CAKE: layer budgets from entropy and variance, cascading during prefill, its indicator",
       .paper = "arXiv:2503.12491",
       .group = "eviction",
       .params = {ParamSchema::integer("window", 32, 2, kMaxPolicyWindow), ParamSchema::real("gamma", 200.0, 0.0, 1e9),
                  ParamSchema::integer("kernel", 5, 1, 1001), ParamSchema::real("tau1", 1.0, 0.01, 100.0),
                  ParamSchema::real("tau2", 1.0, 0.01, 100.0), ParamSchema::integer("cascade", 1, 0, 1),
                  ParamSchema::integer("decode_every", 1, 0, 1 << 20)},
       .build = [](KvPolicy& p, MethodArgs& a) {
         p.window_explicit = a.given("window");
         p.window = a.integer("window");
         p.kernel = a.integer("kernel");
         KV_CHECK(p.kernel % 2 == 1, "cake: kernel={} must be odd", p.kernel);
         p.pooling = p.decode_pooling = Pooling::Avg;
         p.decode_kernel = p.kernel;
         p.scorer = make_cake_scorer(p.window, a.real("gamma"));
         p.layers = make_cake_layers(a.real("tau1"), a.real("tau2"), a.integer("cascade") == 1);
         const int every = a.integer("decode_every");
         p.decode = every > 0 ? make_evict(every) : make_grow();
       }});
}

}  // namespace kvwise
