// KeyDiff (Park et al., arXiv:2504.15364): keep the keys least similar (cosine) to the head's mean
// normalised key. The paper's block-wise iteration over a long prompt is not reproduced: kvwise
// scores the whole prompt at once, as kvpress's KeyDiffPress does.
#include <cmath>

#include "compress/method_common.h"
#include "compress/pipeline.h"

namespace kvwise {

namespace {

class KeyDiffScorer : public TokenScorer {
 public:
  std::string name() const override { return "keydiff"; }
  void add_taps(TapConfig&, bool) const override {}
  void score(const ScoreContext& c, std::span<float> out) const override {
    const std::span<const float> k = c.kv.keys();
    const size_t d = static_cast<size_t>(c.kv.head_dim()), n = out.size();
    std::vector<double> norm(n), anchor(d, 0.0);
    for (size_t j = 0; j < n; ++j) {
      double s = 0;
      for (size_t i = 0; i < d; ++i) s += static_cast<double>(k[j * d + i]) * k[j * d + i];
      norm[j] = std::max(std::sqrt(s), 1e-12);
      for (size_t i = 0; i < d; ++i) anchor[i] += k[j * d + i] / norm[j];
    }
    double an = 0;
    for (size_t i = 0; i < d; ++i) an += anchor[i] * anchor[i];
    an = std::max(std::sqrt(an), 1e-12);  // the mean's scale cancels in the cosine
    for (size_t j = 0; j < n; ++j) {
      double dot = 0;
      for (size_t i = 0; i < d; ++i) dot += k[j * d + i] * anchor[i];
      out[j] = -static_cast<float>(dot / (norm[j] * an));
    }
  }
};

}  // namespace

KVWISE_METHODS(keydiff) {
  registry.add({.name = "keydiff",
                .summary = "keeps the keys least cosine-similar to the head's mean key (query-agnostic)",
                .paper = "arXiv:2504.15364",
                .group = "eviction",
                .params = region_params(0, 0),
                .build = [](KvPolicy& p, MethodArgs& a) {
                  apply_regions(p, a);
                  p.scorer = std::make_shared<KeyDiffScorer>();
                }});
}

}  // namespace kvwise
