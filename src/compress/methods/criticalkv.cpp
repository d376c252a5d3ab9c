// CriticalKV (Feng et al., "Identify Critical KV Cache in LLM Inference from an Output Perturbation
// Perspective", arXiv:2502.03805), as kvpress's CriticalKVPress: stage 1 keeps the top
// first_stage share of the head's budget by the inner scores; stage 2 ranks the rest by
// (score + epsilon) * ||W_o v||_1, the L1 norm of each value projected by the layer's output
// projection (the GQA group's mean). norm=v uses ||v||_2 instead (cheaper; an approximation).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.h"
#include "compress/pipeline.h"
#include "compress/scorer_wrapper.h"
#include "compress/select.h"

namespace kvwise {

namespace {

class CriticalScorer : public WrappedScorer {
 public:
  CriticalScorer(std::shared_ptr<const TokenScorer> inner, double first_stage, double epsilon, bool wo)
      : WrappedScorer(std::move(inner)), first_stage_(first_stage), epsilon_(epsilon), wo_(wo) {}
  std::string name() const override { return "critical(" + inner_->name() + ")"; }
  bool needs_output_projection() const override { return wo_ || inner_->needs_output_projection(); }

  void rescore(const ScoreContext& c, std::span<float> cand) const override {
    inner_->rescore(c, cand);
    const int n = static_cast<int>(cand.size());
    if (n == 0) return;
    const int k1 = std::clamp(static_cast<int>(c.budget * first_stage_), 0, n);
    const std::vector<int> first = top_k_indices(cand, k1);
    const std::vector<float> norm = wo_ ? projected_norms(c) : value_norms(c);
    for (int j = 0; j < n; ++j)
      cand[static_cast<size_t>(j)] =
          static_cast<float>((cand[static_cast<size_t>(j)] + epsilon_) * norm[static_cast<size_t>(j)]);
    for (int j : first) cand[static_cast<size_t>(j)] = std::numeric_limits<float>::max();
  }

 private:
  // ||v_j||_2 of the candidate slots.
  static std::vector<float> value_norms(const ScoreContext& c) {
    const std::span<const float> v = c.kv.values();
    const size_t d = static_cast<size_t>(c.kv.head_dim());
    std::vector<float> out;
    for (int j = c.cand_lo; j < c.cand_hi; ++j) {
      double s = 0;
      for (size_t i = 0; i < d; ++i) s += static_cast<double>(v[j * d + i]) * v[j * d + i];
      out.push_back(static_cast<float>(std::sqrt(s)));
    }
    return out;
  }

  // Mean over the group's query heads h of ||v_j W_o[:, h]^T||_1, in row blocks (sgemm).
  static std::vector<float> projected_norms(const ScoreContext& c) {
    KV_CHECK(c.wo != nullptr && c.wo->w != nullptr, "criticalkv: no output projection");
    const int d = c.kv.head_dim(), n = c.cand_hi - c.cand_lo;
    const int64_t dim = c.wo->rows, cols = c.wo->cols;
    std::vector<float> out(static_cast<size_t>(n), 0.0f);
    constexpr int kBlock = 256;
    std::vector<float> y(static_cast<size_t>(kBlock * dim));
    const float* v = c.kv.values().data();
    for (int g = 0; g < c.group; ++g) {
      const int qh = c.kv_head * c.group + g;
      KV_CHECK((qh + 1) * static_cast<int64_t>(d) <= cols, "criticalkv: W_o has {} columns", cols);
      for (int b = 0; b < n; b += kBlock) {
        const int m = std::min(kBlock, n - b);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, static_cast<int>(dim), d, 1.0f,
                    v + static_cast<size_t>(c.cand_lo + b) * d, d, c.wo->w + static_cast<size_t>(qh) * d,
                    static_cast<int>(cols), 0.0f, y.data(), static_cast<int>(dim));
        for (int r = 0; r < m; ++r) {
          double s = 0;
          for (int64_t o = 0; o < dim; ++o) s += std::fabs(y[static_cast<size_t>(r * dim + o)]);
          out[static_cast<size_t>(b + r)] += static_cast<float>(s / c.group);
        }
      }
    }
    return out;
  }

  double first_stage_, epsilon_;
  bool wo_;
};

}  // namespace

KVWISE_METHODS(criticalkv) {
  registry.add(
      {.name = "criticalkv",
       .summary = "CriticalKV: half the budget by the inner scores, the rest by score x ||W_o v||_1 "
                  "(default inner snapkv)",
       .paper = "arXiv:2502.03805",
       .group = "wrapper",
       .params = {ParamSchema::real("first_stage", 0.5, 0.0, 1.0, "share of the budget chosen by the inner scores"),
                  ParamSchema::real("epsilon", 1e-4, 0.0, 1e6),
                  ParamSchema::choice("norm", "wo", {"wo", "v"}, "v: ||v||_2, an approximation")},
       .default_inner = "snapkv",
       .budget = BudgetUse::Inherit,
       .build = [](KvPolicy& p, MethodArgs& a) {
         const double first = a.real("first_stage"), eps = a.real("epsilon");
         const bool wo = a.choice("norm") == "wo";
         a.build_inner(p);
         KV_CHECK(p.needs_budget() && p.scorer && p.residual < 0,
                  "criticalkv wraps a scoring eviction policy (snapkv, pyramidkv, adakv, expected-attention, "
                  "...), not {}",
                  p.name);
         p.scorer = std::make_shared<CriticalScorer>(p.scorer, first, eps, wo);
       }});
}

}  // namespace kvwise
