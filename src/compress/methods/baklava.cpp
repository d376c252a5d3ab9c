// BaKlaVa (arXiv:2502.13176): static per-head budgets from a one-time profile (`kvwise profile`).
#include "compress/baklava.h"

#include "base/error.h"
#include "compress/components.h"
#include "compress/method_common.h"
#include "compress/pipeline.h"
#include "compress/registry.h"

namespace kvwise {

KVWISE_METHODS(baklava) {
  registry.add({.name = "baklava",
                .summary = "BaKlaVa static head budgets from `kvwise profile` over an inner selector (default snapkv)",
                .paper = "arXiv:2502.13176",
                .group = "head-budgets",
                .params = {ParamSchema::text("profile", "", "FILE (CLI) or NAME (registered on the server)"),
                           ParamSchema::real("theta", -1.0, -1.0, 100.0, "-1: the profile's")},
                .default_inner = "snapkv",
                .example = "",  // needs a profile file
                .budget = BudgetUse::Inherit,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  const std::string path = profile_path(a, "BaKlaVa profile", "kvwise profile");
                  const double theta = a.real("theta");
                  a.build_inner(p);
                  KV_CHECK(p.needs_budget() && !p.layers->adaptive() && !p.share_heads,
                           "baklava composes with snapkv, sagekv, h2o, streamingllm, random, knorm, keydiff or "
                           "expected-attention");
                  BaklavaProfile prof = BaklavaProfile::load(path);
                  if (theta >= 0) prof.set_theta(theta);
                  std::vector<double> layer_w;
                  for (const auto& row : prof.weights) {
                    double s = 0;
                    for (double w : row) s += w;
                    layer_w.push_back(s);
                  }
                  p.layers = make_weighted_layers(layer_w, "baklava");
                  p.heads = make_weighted_heads(prof.weights, "baklava");
                }});
}

}  // namespace kvwise
