// Knorm (Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression",
// arXiv:2406.11430): keys with a low L2 norm draw high attention, so keep the smallest norms.
#include <cmath>

#include "compress/method_common.h"
#include "compress/pipeline.h"

namespace kvwise {

namespace {

class KnormScorer : public TokenScorer {
 public:
  std::string name() const override { return "knorm"; }
  void add_taps(TapConfig&, bool) const override {}
  void score(const ScoreContext& c, std::span<float> out) const override {
    const std::span<const float> k = c.kv.keys();
    const size_t d = static_cast<size_t>(c.kv.head_dim());
    for (size_t j = 0; j < out.size(); ++j) {
      double s = 0;
      for (size_t i = 0; i < d; ++i) s += static_cast<double>(k[j * d + i]) * k[j * d + i];
      out[j] = -static_cast<float>(std::sqrt(s));
    }
  }
};

}  // namespace

KVWISE_METHODS(knorm) {
  registry.add({.name = "knorm",
                .summary = "keeps the keys of smallest L2 norm (query-agnostic, no attention needed)",
                .paper = "arXiv:2406.11430",
                .group = "eviction",
                .params = region_params(0, 0),
                .build = [](KvPolicy& p, MethodArgs& a) {
                  apply_regions(p, a);
                  p.scorer = std::make_shared<KnormScorer>();
                }});
}

}  // namespace kvwise
