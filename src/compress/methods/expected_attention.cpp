// Expected Attention (Devoto et al., arXiv:2510.00636; kvpress's ExpectedAttentionPress): model the
// queries still to come as a Gaussian fitted to the prompt's pre-RoPE queries (sinks excluded),
// rotated by RoPE averaged over the next n_future positions, and keep the keys with the largest
// expected attention E[exp(q.k / sqrt(d))] ~ exp(mu.k / sqrt(d) + k^T Sigma k / (2 d)), softmaxed over
// the head's candidates, weighted by ||v||_2. Query-agnostic: it needs no question.
#include <algorithm>
#include <cmath>

#include "compress/method_common.h"
#include "compress/pipeline.h"

namespace kvwise {

namespace {

class ExpectedAttentionScorer : public TokenScorer {
 public:
  ExpectedAttentionScorer(int n_future, bool covariance, bool vnorm, double epsilon)
      : n_future_(n_future), covariance_(covariance), vnorm_(vnorm), epsilon_(epsilon) {}
  std::string name() const override { return "expected-attention"; }
  void add_taps(TapConfig&, bool) const override {}
  bool needs_query_stats() const override { return true; }

  void score(const ScoreContext& c, std::span<float> out) const override {
    const int d = c.kv.head_dim();
    const size_t D = static_cast<size_t>(d);
    std::vector<double> mu(D, 0.0), cov(D * D, 0.0);
    if (c.queries != nullptr && c.queries->n > 0) {
      const double n = static_cast<double>(c.queries->n);
      for (size_t i = 0; i < D; ++i) mu[i] = c.queries->sum[i] / n;
      if (covariance_)
        for (size_t i = 0; i < D; ++i)
          for (size_t j = 0; j < D; ++j) cov[i * D + j] = c.queries->outer[i * D + j] / n - mu[i] * mu[j];
    }
    const std::vector<double> R = mean_rotation(c, d);
    std::vector<double> m(D, 0.0), t(D * D, 0.0), s(D * D, 0.0);
    for (size_t i = 0; i < D; ++i)
      for (size_t j = 0; j < D; ++j) m[i] += R[i * D + j] * mu[j];
    if (covariance_) {  // s = R cov R^T
      for (size_t i = 0; i < D; ++i)
        for (size_t k = 0; k < D; ++k)
          if (R[i * D + k] != 0)
            for (size_t j = 0; j < D; ++j) t[i * D + j] += R[i * D + k] * cov[k * D + j];
      for (size_t i = 0; i < D; ++i)
        for (size_t j = 0; j < D; ++j) {
          double a = 0;
          for (size_t k = 0; k < D; ++k) a += t[i * D + k] * R[j * D + k];
          s[i * D + j] = a;
        }
    }
    const std::span<const float> keys = c.kv.keys();
    const double inv_sqrt = 1.0 / std::sqrt(static_cast<double>(d));
    const int lo = std::min(c.cand_lo, c.len);
    std::vector<double> z(out.size(), 0.0);
    double zmax = -1e300;
    std::vector<double> sk(D);
    for (int j = lo; j < c.len; ++j) {
      const float* k = &keys[static_cast<size_t>(j) * D];
      double lin = 0, quad = 0;
      for (size_t i = 0; i < D; ++i) lin += m[i] * k[i];
      if (covariance_) {
        for (size_t i = 0; i < D; ++i) {
          double a = 0;
          for (size_t q = 0; q < D; ++q) a += s[i * D + q] * k[q];
          quad += k[i] * a;
        }
      }
      z[static_cast<size_t>(j)] = lin * inv_sqrt + quad / (2.0 * d);
      zmax = std::max(zmax, z[static_cast<size_t>(j)]);
    }
    double sum = 0;
    for (int j = lo; j < c.len; ++j) sum += std::exp(z[static_cast<size_t>(j)] - zmax);
    const std::span<const float> values = vnorm_ ? c.kv.values() : std::span<const float>{};
    std::fill(out.begin(), out.end(), 0.0f);
    for (int j = lo; j < c.len; ++j) {
      double p = std::exp(z[static_cast<size_t>(j)] - zmax) / sum;
      if (vnorm_) {
        double vn = 0;
        for (size_t i = 0; i < D; ++i) vn += static_cast<double>(values[j * D + i]) * values[j * D + i];
        p = (p + epsilon_) * std::sqrt(vn);
      }
      out[static_cast<size_t>(j)] = static_cast<float>(p);
    }
  }

 private:
  // RoPE's rotation averaged over positions prompt_end .. prompt_end + n_future - 1 (identity on the
  // channels RoPE leaves alone): a d x d row-major matrix.
  std::vector<double> mean_rotation(const ScoreContext& c, int d) const {
    const size_t D = static_cast<size_t>(d);
    std::vector<double> R(D * D, 0.0);
    for (size_t i = 0; i < D; ++i) R[i * D + i] = 1.0;
    if (c.rope == nullptr || c.rope->n_rot == 0) return R;
    const int half = c.rope->n_rot / 2;
    for (int i = 0; i < half; ++i) {
      double cs = 0, sn = 0;
      for (int f = 0; f < n_future_; ++f) {
        const double angle = static_cast<double>(c.prompt_end + f) * c.rope->pos_scale * c.rope->freq(c.layer)[i];
        cs += std::cos(angle);
        sn += std::sin(angle);
      }
      cs /= n_future_;
      sn /= n_future_;
      const size_t a = static_cast<size_t>(c.rope->type == RopeType::Normal ? 2 * i : i);
      const size_t b = static_cast<size_t>(c.rope->type == RopeType::Normal ? 2 * i + 1 : i + half);
      R[a * D + a] = cs;  // x_a' = x_a cos - x_b sin, x_b' = x_a sin + x_b cos
      R[a * D + b] = -sn;
      R[b * D + a] = sn;
      R[b * D + b] = cs;
    }
    return R;
  }

  int n_future_;
  bool covariance_, vnorm_;
  double epsilon_;
};

}  // namespace

KVWISE_METHODS(expected_attention) {
  std::vector<ParamSchema> params = region_params(4, 0);
  for (ParamSchema s :
       {ParamSchema::integer("n_future", 512, 1, 1 << 20, "future positions RoPE is averaged over"),
        ParamSchema::integer("cov", 1, 0, 1, "use the query covariance"),
        ParamSchema::integer("vnorm", 1, 0, 1, "weight by ||v||_2"), ParamSchema::real("epsilon", 0.0, 0.0, 1e6)})
    params.push_back(s);
  registry.add({.name = "expected-attention",
                .summary = "Expected Attention: keys by the attention a Gaussian model of future queries would pay "
                           "them, times ||v|| (query-agnostic)",
                .paper = "arXiv:2510.00636",
                .group = "eviction",
                .params = params,
                .build = [](KvPolicy& p, MethodArgs& a) {
                  apply_regions(p, a);
                  // The query statistics come from every prompt token's own forward pass: a cached
                  // prefix must still be computed to give the same answer.
                  p.needs_every_prompt_query = true;
                  p.scorer = std::make_shared<ExpectedAttentionScorer>(a.integer("n_future"), a.integer("cov") == 1,
                                                                       a.integer("vnorm") == 1, a.real("epsilon"));
                }});
}

}  // namespace kvwise
