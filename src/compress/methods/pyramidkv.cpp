// PyramidKV (Cai et al., arXiv:2406.02069): SnapKV scores with pyramid-shaped layer budgets.
#include "compress/components.h"
#include "compress/method_common.h"
#include "compress/pipeline.h"

namespace kvwise {

KVWISE_METHODS(pyramidkv) {
  std::vector<ParamSchema> params = window_scoring_params(8, 7, "max");
  params.push_back(ParamSchema::real("beta", 20.0, 1.0, 1e6, "top layer keeps mean/beta"));
  registry.add({.name = "pyramidkv",
                .summary = "SnapKV scores with pyramid layer budgets",
                .paper = "arXiv:2406.02069",
                .group = "eviction",
                .params = params,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  apply_window_scoring(p, a);
                  p.layers = make_pyramid_layers(a.real("beta"));
                }});
}

}  // namespace kvwise
